"""Is a correlation shift real, or its alias one field away?

A circular cross-correlation cannot tell a shift s from s − N (N the field size). When a
shift is a large fraction of the field, both candidates are scored by the Pearson correlation
of the band-passed images over their actual overlap, and the better one is kept.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from tomopilot.acquisition.strategies.base import Toolkit
from tomopilot.instrument.types import Image

# Beyond this fraction of the field both candidates are tried on the images' actual overlap.
ALIAS_CHECK_FRACTION = 0.3
ALIAS_MIN_OVERLAP_PX = 48


def _bandpass(data: NDArray[np.floating]) -> NDArray[np.float64]:
    """Features of a few pixels to a few tens of pixels (for overlap correlations)."""
    x = np.asarray(data, np.float64)
    return np.asarray(ndimage.gaussian_filter(x, 1.5) - ndimage.gaussian_filter(x, 12.0))


def _overlap_correlation(
    ref: NDArray[np.float64], img: NDArray[np.float64], dy: int, dx: int
) -> float:
    """Pearson correlation of ``ref`` at p with ``img`` at p + (dy, dx), over their overlap."""
    ny, nx = ref.shape
    if ny - abs(dy) < ALIAS_MIN_OVERLAP_PX or nx - abs(dx) < ALIAS_MIN_OVERLAP_PX:
        return -1.0
    a = ref[max(0, -dy) : ny - max(0, dy), max(0, -dx) : nx - max(0, dx)]
    b = img[max(0, dy) : ny + min(0, dy), max(0, dx) : nx + min(0, dx)]
    a = a - a.mean()
    b = b - b.mean()
    denominator = math.sqrt(float(np.sum(a * a)) * float(np.sum(b * b)))
    return float(np.sum(a * b)) / denominator if denominator > 0 else -1.0


def unalias_shift(
    toolkit: Toolkit,
    reference: Image,
    image: Image,
    shift_um: NDArray[np.float64],
    *,
    check_fraction: float = ALIAS_CHECK_FRACTION,
) -> NDArray[np.float64]:
    """The shift, or its alias one field away, whichever the images' overlap supports.

    Only a shift beyond ``check_fraction`` of the field (along either camera axis) is checked:
    a true shift of (1 − f) fields shows its peak at f.
    """
    if reference.data.shape != image.data.shape or not math.isclose(
        reference.pixel_size_a, image.pixel_size_a, rel_tol=1e-3
    ):
        return shift_um
    matrix = toolkit.camera_matrix(image)
    shift_px = matrix @ np.asarray(shift_um, np.float64)  # (x, y) camera pixels
    ny, nx = image.data.shape
    options_x = [shift_px[0]]
    options_y = [shift_px[1]]
    if abs(shift_px[0]) > check_fraction * nx:
        options_x.append(shift_px[0] - math.copysign(nx, shift_px[0]))
    if abs(shift_px[1]) > check_fraction * ny:
        options_y.append(shift_px[1] - math.copysign(ny, shift_px[1]))
    if len(options_x) == 1 and len(options_y) == 1:
        return shift_um
    ref = _bandpass(reference.data)
    img = _bandpass(image.data)
    best = (-2.0, shift_px)
    for sx in options_x:
        for sy in options_y:
            score = _overlap_correlation(ref, img, round(sy), round(sx))
            if score > best[0]:
                best = (score, np.array([sx, sy]))
    return np.asarray(np.linalg.solve(matrix, best[1]), np.float64)
