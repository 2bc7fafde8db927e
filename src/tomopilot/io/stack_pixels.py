"""Pixels of MRC stack sections: data types, conversion rules and running statistics.

A stack stores int16 (MRC mode 1), float32 (mode 2) or uint16 (mode 6) pixels.
:func:`to_stack_dtype` converts an image with explicit rules (float32 keeps values; integer
types round half to even and clip, counting the clipped pixels; NaN and infinity are refused).
:func:`section_stats` and :func:`pool_stats` give the header's min / max / mean / RMS in
float64 without holding a float64 copy of a whole image.

Examples
--------
>>> import numpy as np
>>> data, clipped = to_stack_dtype(np.array([[1.5, 2.5, 4e4]]), np.int16)
>>> data.tolist(), clipped
([[2, 2, 32767]], 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from tomopilot.io.errors import FormatError, LossyConversionError

MODES: dict[int, np.dtype[Any]] = {
    1: np.dtype("<i2"),
    2: np.dtype("<f4"),
    6: np.dtype("<u2"),
}
_STAT_ROWS = 256  # rows per chunk when computing float64 statistics of a section


@dataclass(frozen=True)
class SectionStats:
    """Statistics of one section as stored (SerialEM's ``MinMaxMean`` plus the variance).

    Attributes
    ----------
    min, max, mean
        Of the stored values.
    m2
        Sum of squared deviations from ``mean`` (for pooling into the header RMS).
    n_pixels
        Pixels in the section.
    """

    min: float
    max: float
    mean: float
    m2: float
    n_pixels: int


def section_stats(data: NDArray[Any]) -> SectionStats:
    """Min, max, mean and sum of squared deviations in float64, in bounded memory."""
    if data.size == 0:
        raise ValueError("cannot take statistics of an empty image")
    rows = data.reshape(-1, data.shape[-1])
    n, mean, m2 = 0, 0.0, 0.0
    for start in range(0, rows.shape[0], _STAT_ROWS):
        block = rows[start : start + _STAT_ROWS].astype(np.float64)
        n_b, mean_b = block.size, float(block.mean())
        m2_b = float(np.square(block - mean_b).sum())
        n, mean, m2 = pool_stats(n, mean, m2, n_b, mean_b, m2_b)
    return SectionStats(float(data.min()), float(data.max()), mean, m2, n)


def pool_stats(
    n_a: int, mean_a: float, m2_a: float, n_b: int, mean_b: float, m2_b: float
) -> tuple[int, float, float]:
    """Pool counts, means and M2 of two sets (Chan et al.), stable for any sizes."""
    n = n_a + n_b
    if n_a == 0:
        return n_b, mean_b, m2_b
    delta = mean_b - mean_a
    return n, mean_a + delta * n_b / n, m2_a + m2_b + delta * delta * n_a * n_b / n


def to_stack_dtype(
    image: ArrayLike, dtype: DTypeLike, *, path: Path | str | None = None
) -> tuple[NDArray[Any], int]:
    """Convert an image to a stack data type, returning it and the number of clipped pixels.

    Rules: float32 keeps values (float64 is rounded to float32); int16 and uint16 round to the
    nearest integer (half to even) and clip to the type's range, counting the clipped pixels.
    Non-finite values are refused for every type.

    Raises
    ------
    LossyConversionError
        If the image holds NaN or infinity, or is not real-valued.
    """
    target = np.dtype(dtype).newbyteorder("<")
    array = np.asarray(image)
    if array.dtype.kind not in "biuf":
        raise LossyConversionError(f"cannot store {array.dtype} pixels in a stack", path=path)
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise LossyConversionError("the image holds NaN or infinite pixels", path=path)
    if target.kind == "f":
        return np.ascontiguousarray(array, dtype=target), 0
    info = np.iinfo(target)
    if array.dtype.kind == "f":
        array = np.rint(array)
    low, high = array < info.min, array > info.max
    n_clipped = int(np.count_nonzero(low) + np.count_nonzero(high))
    if n_clipped:
        array = np.clip(array, info.min, info.max)
    return np.ascontiguousarray(array, dtype=target), n_clipped


def mode_of(dtype: DTypeLike) -> int:
    """The MRC mode of a stack data type (1 int16, 2 float32, 6 uint16)."""
    wanted = np.dtype(dtype).newbyteorder("<")
    for mode, candidate in MODES.items():
        if candidate == wanted:
            return mode
    raise FormatError(f"a stack stores int16, float32 or uint16 pixels, not {np.dtype(dtype)}")
