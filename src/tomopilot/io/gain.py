"""Gain references and camera defects, with RELION's / MotionCor2's orientation codes.

Orientation codes (RELION ``--gain_rot``/``--gain_flip``, MotionCor2 ``-RotGain``/``-FlipGain``):

- rotation ``r`` ∈ {0, 1, 2, 3}: ``r`` × 90° *clockwise* with row 0 displayed at the top (as
  relion_display shows it), which is MotionCor2's "counter-clockwise" with y pointing up;
  i.e. ``numpy.rot90(gain, k=-r)``;
- flip ``f`` ∈ {0, 1, 2}: 0 none, 1 upside down (rows reversed), 2 left-right (columns reversed);
- the rotation is applied first, then the flip.

Defects: a MotionCor2 text file holds one ``x y w h`` rectangle per line (pixels, movie
coordinates before binning); any other file is a defect map image where non-zero marks a bad
pixel. SerialEM's own defect text format is recognised and refused, as RELION does.

TIFF rows: RELION reads a TIFF gain reference or defect map through the same TIFF reader as
TIFF movie frames, which reverses the rows (TIFF stores them top-down, MRC bottom-up; see
:mod:`tomopilot.io.frames`), so a TIFF gain saved beside TIFF movies in the camera's
orientation matches them, and an MRC gain for the same movies is that TIFF upside down (as
IMOD's ``tif2mrc`` writes it). Measured with ``relion_run_motioncorr`` 3.1.3 (``--use_own``):
a TIFF movie with a gain pattern corrected by the TIFF gain saved in the movie's orientation is
flat; by the same gain as an MRC written as stored, the pattern doubles; by that MRC upside
down, flat. A TIFF defect map likewise. The exception is an EER movie's ``.gain`` TIFF, which
RELION reads with its EER code in stored order, as the EER frames themselves.

Examples
--------
>>> import numpy as np
>>> g = np.arange(6.0).reshape(2, 3)
>>> orient_gain(g, rotation=1, flip=0).tolist()  # 90° clockwise
[[3.0, 0.0], [4.0, 1.0], [5.0, 2.0]]
>>> undo = unorient_gain(orient_gain(g, rotation=3, flip=1), rotation=3, flip=1)
>>> bool(np.array_equal(undo, g))
True
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tomopilot.core.input_files import check_input_path
from tomopilot.io.errors import FormatError
from tomopilot.io.frames import PLAIN_MRC_MODES, read_plain_mrc
from tomopilot.io.mrc_header import looks_like_mrc, mrc_header_info

_SERIALEM_DEFECT_KEYS = re.compile(r"^\s*(CameraSize|RotationAndFlip|K2Type|Bad\w*)\b", re.M)


def orient_gain(gain: NDArray[Any], *, rotation: int = 0, flip: int = 0) -> NDArray[Any]:
    """Bring a gain reference into the movie's orientation (rotate first, then flip)."""
    if rotation not in (0, 1, 2, 3):
        raise ValueError(f"gain rotation must be 0, 1, 2 or 3, got {rotation}")
    if flip not in (0, 1, 2):
        raise ValueError(f"gain flip must be 0, 1 or 2, got {flip}")
    out = np.rot90(np.asarray(gain), k=-rotation)
    if flip == 1:
        out = out[::-1, :]
    elif flip == 2:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def unorient_gain(gain: NDArray[Any], *, rotation: int = 0, flip: int = 0) -> NDArray[Any]:
    """The inverse of :func:`orient_gain`: how the camera software would have stored ``gain``."""
    out = np.asarray(gain)
    if flip == 1:
        out = out[::-1, :]
    elif flip == 2:
        out = out[:, ::-1]
    return np.ascontiguousarray(np.rot90(out, k=rotation))


_MRC_SUFFIXES = (".mrc", ".mrcs", ".map", ".st")


def read_image(path: Path | str, *, tiff_as_stored: bool = False) -> NDArray[np.float32]:
    """Read a single 2D image (gain or defect map) from MRC or TIFF as float32.

    A TIFF's rows are reversed, as RELION's TIFF reader (and :mod:`tomopilot.io.frames`) does,
    unless ``tiff_as_stored`` (an EER movie's ``.gain``). MRC rows are kept as stored.
    """
    path = Path(path)
    check_input_path(path, what="image", error=FormatError)
    suffix = path.suffix.lower()
    if suffix == ".dm4":
        raise FormatError(
            "DM4 gain references are not supported; convert with IMOD's dm2mrc "
            "(and check the orientation: DM4 gains are usually upside down)",
            path=path,
        )
    with path.open("rb") as handle:
        head = handle.read(1024)
    is_mrc = looks_like_mrc(head) or suffix in _MRC_SUFFIXES
    if not is_mrc and head[:4] not in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        raise FormatError(
            f"neither MRC (no 'MAP ' stamp at byte 208) nor TIFF (first bytes "
            f"{head[:4].hex(' ') or 'none'}): not a gain reference or defect map",
            path=path,
        )
    try:
        if is_mrc:
            import mrcfile

            info = mrc_header_info(path)
            if info.mode in PLAIN_MRC_MODES:  # read straight into a numpy array, on threads
                data = read_plain_mrc(path).astype(np.float32, copy=False)
            else:
                with mrcfile.open(path, mode="r", permissive=True) as mrc:
                    if mrc.data is None:
                        raise FormatError("MRC file holds no data", path=path)
                    data = np.array(mrc.data, dtype=np.float32)
        else:
            import tifffile

            data = np.asarray(tifffile.imread(path), dtype=np.float32)
            if not tiff_as_stored and data.ndim >= 2:
                data = np.ascontiguousarray(data[..., ::-1, :])  # top-down rows: MRC order
    except FormatError:
        raise
    except Exception as exc:
        raise FormatError(f"cannot read image: {exc}", path=path) from exc
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise FormatError(f"expected a 2D image, got shape {data.shape}", path=path)
    return data


def read_gain(
    path: Path | str, *, rotation: int = 0, flip: int = 0, for_eer: bool = False
) -> NDArray[np.float32]:
    """Read a gain reference and return it as a *multiplicative* gain in movie orientation.

    Pixels with gain 0 stay 0 (they mark defects). A TIFF gain's rows are reversed as RELION
    reads them (see the module docstring), except an EER movie's TIFF ``.gain``. For EER
    movies RELION's conventions hold: an MRC gain divides the frames (so it is inverted here,
    mean/gain), a TIFF ``.gain`` multiplies them.
    """
    path = Path(path)
    data = read_image(path, tiff_as_stored=for_eer)
    low, high = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    if not (np.isfinite(low) and np.isfinite(high)):  # min and max propagate NaN
        raise FormatError("the gain reference holds NaN or infinite values", path=path)
    if low < 0:
        raise FormatError("the gain reference holds negative values", path=path)
    if for_eer and _is_mrc_file(path):
        good = data > 0
        if not good.any():
            raise FormatError("the gain reference is zero everywhere", path=path)
        mean = float(data[good].mean())
        data = np.where(good, mean / np.where(good, data, 1.0), 0.0).astype(np.float32)
    return orient_gain(data, rotation=rotation, flip=flip).astype(np.float32, copy=False)


def _is_mrc_file(path: Path) -> bool:
    with path.open("rb") as handle:
        return looks_like_mrc(handle.read(1024)) or path.suffix.lower() in _MRC_SUFFIXES


def resample_gain_for_eer(gain: NDArray[np.float32], shape: tuple[int, int]) -> NDArray[Any]:
    """Match a gain to an EER rendering grid: replicate pixels up, or sum 2×2 blocks down."""
    gh, gw = gain.shape
    h, w = shape
    if (gh, gw) == (h, w):
        return gain
    if h % gh == 0 and w % gw == 0 and h // gh == w // gw:
        f = h // gh
        return np.repeat(np.repeat(gain, f, axis=0), f, axis=1)
    if gh % h == 0 and gw % w == 0 and gh // h == gw // w:
        f = gh // h
        blocks = gain.reshape(h, f, w, f)
        zero = (blocks == 0).any(axis=(1, 3))
        return np.where(zero, 0.0, blocks.mean(axis=(1, 3))).astype(np.float32)
    return gain


def read_defect_text(path: Path | str) -> list[tuple[int, int, int, int]]:
    """Parse a MotionCor2 defect file: one ``x y w h`` rectangle per non-empty line.

    Raises
    ------
    FormatError
        Naming the line, for SerialEM defect files or lines that are not four integers ≥ 0
        (with w, h ≥ 1).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise FormatError(f"cannot read defect file: {exc.strerror}", path=path) from exc
    match = _SERIALEM_DEFECT_KEYS.search(text)
    if match:
        line = text.count("\n", 0, match.start()) + 1
        raise FormatError(
            "this is a SerialEM defect file, which RELION and MotionCor2 do not read; "
            "convert it to a defect map with IMOD's clip defect",
            path=path,
            line=line,
        )
    rectangles: list[tuple[int, int, int, int]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.split("#", 1)[0].strip()
        if not stripped:
            continue
        fields = stripped.replace(",", " ").split()
        try:
            values = [int(float(v)) for v in fields]
        except ValueError:
            raise FormatError(
                f"expected four numbers 'x y w h', got {raw.strip()!r}", path=path, line=number
            ) from None
        if len(values) != 4:
            raise FormatError(
                f"expected four numbers 'x y w h', got {len(values)}", path=path, line=number
            )
        x, y, w, h = values
        if x < 0 or y < 0 or w < 1 or h < 1:
            raise FormatError(
                "a defect rectangle needs x, y ≥ 0 and w, h ≥ 1", path=path, line=number
            )
        rectangles.append((x, y, w, h))
    return rectangles


def defect_mask(
    shape: tuple[int, int],
    *,
    rectangles: list[tuple[int, int, int, int]] | None = None,
    defect_map: NDArray[Any] | None = None,
) -> NDArray[np.bool_]:
    """A boolean mask of bad pixels (True = bad) from rectangles and/or a defect map."""
    mask = np.zeros(shape, bool)
    for x, y, w, h in rectangles or []:
        mask[y : y + h, x : x + w] = True
    if defect_map is not None:
        if defect_map.shape != shape:
            raise ValueError(f"defect map is {defect_map.shape}, frames are {shape}")
        mask |= np.asarray(defect_map) != 0
    return mask


def read_defects(path: Path | str, shape: tuple[int, int]) -> NDArray[np.bool_]:
    """Read a defect file (``.txt`` rectangles, else a defect map) into a mask of ``shape``."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        rects = read_defect_text(path)
        for line, (x, y, _, _) in enumerate(rects, start=1):
            if x >= shape[1] or y >= shape[0]:
                raise FormatError(
                    f"defect rectangle {line} starts outside the {shape[1]}×{shape[0]} frame",
                    path=path,
                )
        return defect_mask(shape, rectangles=rects)
    image = read_image(path)
    if image.shape != shape:
        raise FormatError(
            f"defect map is {image.shape[1]}×{image.shape[0]} px but the movie frames are "
            f"{shape[1]}×{shape[0]}",
            path=path,
        )
    return defect_mask(shape, defect_map=image)
