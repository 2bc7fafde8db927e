"""Locating a cross-correlation peak with sub-pixel precision.

:func:`locate_peak` finds the highest sample of a correlation map within a radius of the origin
and refines it by a three-point fit on each axis (:func:`refine_axis`: a Gaussian through the
three samples, a parabola when they are not all positive). :func:`local_ccf` evaluates a
correlation exactly at nine points around the origin from its rfft2-layout spectrum, which is
much cheaper than a full inverse transform when only the peak's neighbourhood matters.

Examples
--------
>>> abs(refine_axis(0.5, 1.0, 0.5)), round(refine_axis(0.4, 1.0, 0.6), 3)
(0.0, 0.142)
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray


def refine_axis(left: float, centre: float, right: float) -> float:
    """Sub-pixel offset of a peak from three samples (Gaussian fit, parabola as fallback)."""
    if left > 0 and centre > 0 and right > 0:
        la, lc, lr = math.log(left), math.log(centre), math.log(right)
        denom = la + lr - 2.0 * lc
        if denom < 0:
            return float(np.clip(0.5 * (la - lr) / denom, -0.5, 0.5))
    denom = left + right - 2.0 * centre
    if denom < 0:
        return float(np.clip(0.5 * (left - right) / denom, -0.5, 0.5))
    return 0.0


def locate_peak(ccf: NDArray[np.floating], radius_px: float) -> tuple[float, float]:
    """The (x, y) position of the highest peak within ``radius_px`` of the origin (unshifted)."""
    ny, nx = ccf.shape
    r = max(1, min(math.ceil(radius_px), ny // 2 - 2, nx // 2 - 2))
    window = np.fft.fftshift(ccf)[
        ny // 2 - r - 1 : ny // 2 + r + 2, nx // 2 - r - 1 : nx // 2 + r + 2
    ]
    inner = window[1:-1, 1:-1]
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    masked = np.where(xx * xx + yy * yy <= r * r, inner, -np.inf)
    iy, ix = np.unravel_index(int(np.argmax(masked)), masked.shape)
    cy, cx = iy + 1, ix + 1
    dx = refine_axis(float(window[cy, cx - 1]), float(window[cy, cx]), float(window[cy, cx + 1]))
    dy = refine_axis(float(window[cy - 1, cx]), float(window[cy, cx]), float(window[cy + 1, cx]))
    return float(ix - r) + dx, float(iy - r) + dy


def local_ccf(
    products: NDArray[np.complex64],
    fy_per_px: NDArray[np.float64],
    fx_per_px: NDArray[np.float64],
    step_px: float,
) -> NDArray[np.float64]:
    """Correlation values at (−h, 0, +h)² original-pixel offsets from rfft2-layout products.

    Evaluates the real inverse transform at nine points only, by two small matrix products;
    the Hermitian half-plane is folded in with weight 2 for the columns it stands for twice.
    """
    offsets = np.array([-step_px, 0.0, step_px])
    ky = np.exp(2j * np.pi * offsets[:, None] * fy_per_px[None, :]).astype(np.complex64)
    kx = np.exp(2j * np.pi * fx_per_px[:, None] * offsets[None, :]).astype(np.complex64)
    fold = np.full(fx_per_px.size, 2.0, np.float32)
    fold[0] = 1.0
    if fx_per_px.size > 1 and fx_per_px[-1] > 0 and np.isclose(fx_per_px[-1], -np.min(fy_per_px)):
        fold[-1] = 1.0
    values = np.matmul(np.matmul(ky, products), kx * fold[:, None])
    return np.asarray(values.real, dtype=np.float64)
