"""Files the monitor serves: only from inside a session's folder, and thumbnails of sections.

A requested name is joined to the session folder, resolved (symbolic links followed) and served
only if the result still lies inside the resolved folder: ``..``, absolute paths, encoded
separators and links that point out all end in :class:`OutsideSessionError`.
"""

from __future__ import annotations

from pathlib import Path

import imagecodecs
import mrcfile
import numpy as np

THUMB_PX = 160


class OutsideSessionError(Exception):
    """A requested path is not a file inside the session folder."""


def session_file(run_dir: str | Path, name: str) -> Path:
    """The file ``name`` inside ``run_dir``, or :class:`OutsideSessionError`."""
    root = Path(run_dir).resolve()
    if not name or "\x00" in name or Path(name).is_absolute() or "\\" in name:
        raise OutsideSessionError(name)
    candidate = (root / name).resolve()
    if not candidate.is_relative_to(root) or candidate == root or not candidate.is_file():
        raise OutsideSessionError(name)
    return candidate


def read_section(stack: Path, section: int) -> np.ndarray:
    """One image of an MRC stack, read through a memory map (the file may still be growing)."""
    with mrcfile.mmap(stack, mode="r", permissive=True) as mrc:
        data = mrc.data
        if data is None:
            raise ValueError(f"{stack}: no data")
        if data.ndim == 2:
            if section != 0:
                raise IndexError(section)
            return np.array(data, dtype=np.float32)
        if not 0 <= section < data.shape[0]:
            raise IndexError(section)
        return np.array(data[section], dtype=np.float32)


def thumbnail_png(image: np.ndarray, size_px: int = THUMB_PX) -> bytes:
    """An 8-bit PNG of ``image`` binned to at most ``size_px`` and scaled to its 1–99 % range."""
    height, width = image.shape
    factor = max(1, int(np.ceil(max(height, width) / size_px)))
    h, w = height // factor * factor, width // factor * factor
    binned = image[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
    finite = binned[np.isfinite(binned)]
    low, high = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
    scaled = np.clip((binned - low) / (high - low if high > low else 1.0), 0, 1)
    pixels = np.nan_to_num(scaled * 255).astype(np.uint8)
    return bytes(imagecodecs.png_encode(pixels))


def tilt_angle_text(names_and_tilts: list[tuple[int, float]]) -> str:
    """The tilt-angle file (IMOD's .tlt): one angle per line, in stack order.

    >>> tilt_angle_text([(1, -3.0), (0, 0.0)])
    '0.00\\n-3.00\\n'
    """
    return "".join(f"{tilt:.2f}\n" for _, tilt in sorted(names_and_tilts))
