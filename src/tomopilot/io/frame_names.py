"""Movie-frame file names as SerialEM and PACEtomo make them, and crash-safe frame writing.

PACEtomo sets SerialEM's frame base name to ``<ts stem>_tilt_<NNN>_angle`` before each
Record; SerialEM then appends the tilt angle (one decimal) and the month, day and time, as in
``s_mmm_00993_33.0_Oct08_07.39.05.tif``. ``NNN`` is the 0-based place of the exposure in the
tilt series in acquisition order (its ZValue before any sorting), as SerialEM numbers its own
frame files (``TS_01_000_0.0.mrc``). The mdoc's ``SubFramePath`` names the file relative to
the mdoc's folder, with forward slashes (``frames/<name>``), so that RELION 5, Warp and
AreTomo find it by its base name.

Examples
--------
>>> from datetime import datetime
>>> frame_file_name("L03_ts_001", 5, -9.0049, datetime(2023, 8, 11, 17, 45, 44), ".tif")
'L03_ts_001_tilt_005_angle_-9.0_Aug11_17.45.44.tif'
>>> sub_frame_path("L03_ts_001_tilt_005_angle_-9.0_Aug11_17.45.44.tif")
'frames/L03_ts_001_tilt_005_angle_-9.0_Aug11_17.45.44.tif'
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tomopilot.core.files import fsync_dir
from tomopilot.io.frames import write_frames

FRAMES_FOLDER = "frames"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_PARTIAL = ".partial"


def frame_base_name(ts_stem: str, tilt_index: int) -> str:
    """PACEtomo's frame base name for one exposure: ``<ts stem>_tilt_<NNN>_angle``."""
    if tilt_index < 0:
        raise ValueError("tilt_index must be >= 0")
    return f"{ts_stem}_tilt_{tilt_index:03d}_angle"


def frame_file_name(
    ts_stem: str, tilt_index: int, tilt_deg: float, when: datetime, suffix: str = ".tif"
) -> str:
    """The frame file name SerialEM makes from PACEtomo's base name.

    Parameters
    ----------
    ts_stem
        Tilt-series stem (``L03_ts_001``).
    tilt_index
        0-based exposure number in acquisition order.
    tilt_deg
        Stage tilt, written with one decimal (``-0.0`` for a small negative tilt).
    when
        Time of the exposure (``Aug11_17.45.44``).
    suffix
        ``.tif``, ``.mrc`` or ``.eer``.
    """
    if not suffix.startswith("."):
        raise ValueError(f"suffix must start with a dot: {suffix!r}")
    stamp = f"{_MONTHS[when.month - 1]}{when.day:02d}_{when:%H.%M.%S}"
    return f"{frame_base_name(ts_stem, tilt_index)}_{tilt_deg:.1f}_{stamp}{suffix}"


def sub_frame_path(name: str, folder: str = FRAMES_FOLDER) -> str:
    """The ``SubFramePath`` written into the mdoc: relative, with forward slashes."""
    return f"{folder}/{name}" if folder else name


def frame_files_of(frames_dir: Path, ts_stem: str, first_index: int = 0) -> list[Path]:
    """Frame files (and leftover partial writes) of exposures ``first_index`` and later."""
    pattern = re.compile(rf"\.?{re.escape(ts_stem)}_tilt_(\d{{3,}})_angle_")
    found = []
    if frames_dir.is_dir():
        for path in frames_dir.iterdir():
            match = pattern.match(path.name)
            if match and int(match.group(1)) >= first_index:
                found.append(path)
    return sorted(found)


def _as_counts(frames: NDArray[Any]) -> NDArray[Any]:
    """Whole non-negative float counts as uint8/uint16; anything else unchanged."""
    if frames.dtype.kind != "f" or frames.size == 0:
        return frames
    low, high = float(frames.min()), float(frames.max())
    if low < 0 or high > 65535 or not np.array_equal(frames, np.floor(frames)):
        return frames
    return frames.astype(np.uint8 if high <= 255 else np.uint16)


def write_tilt_frames(
    frames_dir: Path | str,
    name: str,
    frames: NDArray[Any],
    *,
    pixel_size_a: float | None = None,
    seed: int = 0,
) -> Path:
    """Write one exposure's frames to ``frames_dir/name`` atomically and durably.

    Float frames holding whole non-negative counts are stored as uint8 or uint16 (the
    smallest that holds them, as a counting camera saves frames); other frames as given.
    The frames go to a hidden partial file with the same suffix (so the format is the one
    ``name`` asks for), are fsync'd, and are renamed into place: a crash leaves no torn
    movie under the final name.
    """
    folder = Path(frames_dir)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / name
    partial = folder / f".{final.stem}{_PARTIAL}{final.suffix}"
    try:
        write_frames(partial, _as_counts(frames), pixel_size_a=pixel_size_a, seed=seed)
        fd = os.open(partial, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(partial, final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    fsync_dir(folder)
    return final


def link_tilt_frames(frames_dir: Path | str, name: str, source: Path | str) -> Path:
    """Put a movie another program already saved into ``frames_dir/name`` without copying it.

    SerialEM saves each Record's frames itself; writing them again would double the disk
    traffic of a session. The file is hard-linked (same file system: the frames stay even if
    the original is moved or deleted), else symbolically linked by absolute path. The link is
    made under a hidden partial name and renamed into place, so a crash leaves no half-made
    entry under the final name. ``name`` should keep the source's suffix (its format).

    Raises
    ------
    FileNotFoundError
        If ``source`` is not a file.
    """
    folder = Path(frames_dir)
    origin = Path(source).absolute()
    if not origin.is_file():
        raise FileNotFoundError(f"the saved frames are not at {origin}")
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / name
    partial = folder / f".{final.stem}{_PARTIAL}{final.suffix}"
    partial.unlink(missing_ok=True)
    try:
        os.link(origin, partial)
    except OSError:  # another file system, or links not allowed there
        os.symlink(origin, partial)
    os.replace(partial, final)
    fsync_dir(folder)
    return final
