"""Leginon's tracking correlation between consecutive images of a tilt series (leginon.md §2).

Each image is cropped to its central square, binned to about 512 px (:func:`tracking_binning`),
made zero-mean, tapered at its border by a raised cosine, and stretched by 1/cos α across the
tilt axis about its centre ("untilt"); the two images are phase-correlated, the zero-shift pixel
of the map is cleared (it holds the fixed-pattern noise of the camera), the map is low-passed by
a Gaussian of σ = 1.5 px, and the highest pixel is refined by a separable quadratic fitted to
its 5 × 5 neighbourhood. Unlike Leginon, which leaves the shift in the untilted frame, the shift
is mapped back through the current image's stretch, so it is the displacement seen on the
camera.

Examples
--------
>>> import numpy as np
>>> from tomopilot.imaging.fourier import fourier_shift
>>> rng = np.random.default_rng(1)
>>> a = rng.normal(size=(600, 600)).astype(np.float32)
>>> b = fourier_shift(a, 6.0, -4.0)
>>> r = tracking_shift(a, b, 0.0, 0.0, (1.0, 0.0))
>>> r.binning, round(r.shift_x_px), round(r.shift_y_px)
(2, 6, -4)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray
from scipy import ndimage

from tomopilot.imaging.errors import NoCorrelationPeakError
from tomopilot.imaging.fourier import WORKERS

TARGET_PX = 512
MIN_PX = 256
LOW_PASS_SIGMA_PX = 1.5
UNTILT_MIN_RAD = 0.02
PEAK_BOX = 5

FloatImage = NDArray[np.float32]


@dataclass(frozen=True)
class TrackingShift:
    """Displacement of the current image's content from the previous image's (camera px).

    ``shift_x_px``/``shift_y_px`` are in unbinned pixels of the input images (column, row);
    ``binning`` is the factor used; ``peak`` the low-passed phase-correlation maximum and
    ``significance`` its height above the map's mean in standard deviations.
    """

    shift_x_px: float
    shift_y_px: float
    binning: int
    peak: float
    significance: float


def tracking_binning(side_px: int) -> tuple[int, int]:
    """(binning, cropped side): the smallest b with N/b ≤ 512 that divides N and keeps
    N/b ≥ 256, else b = ⌈N/512⌉ and N cropped to a multiple of b (Leginon's examples: 4096 → 8,
    3710 → 10).

    >>> tracking_binning(4096), tracking_binning(3710), tracking_binning(512), tracking_binning(300)
    ((8, 4096), (10, 3710), (1, 512), (1, 300))
    """
    n = int(side_px)
    if n < 1:
        raise ValueError(f"an image side must be positive, not {side_px}")
    b = max(1, math.ceil(n / TARGET_PX))
    while b <= n and n // b >= MIN_PX:
        if n % b == 0:
            return b, n
        b += 1
    b = max(1, math.ceil(n / TARGET_PX))
    return b, (n // b) * b


def prepare(image: NDArray[np.floating]) -> tuple[FloatImage, int]:
    """Central square, binned (block mean), zero-mean float32, with its binning."""
    rows, cols = image.shape
    side = min(rows, cols)
    b, side = tracking_binning(side)
    r0, c0 = (rows - side) // 2, (cols - side) // 2
    square = np.asarray(image[r0 : r0 + side, c0 : c0 + side], dtype=np.float32)
    if b > 1:
        square = square.reshape(side // b, b, side // b, b).mean(axis=(1, 3), dtype=np.float32)
    square = square - np.float32(square.mean())
    return np.asarray(square, dtype=np.float32), b


def edge_window(side_px: int) -> FloatImage:
    """Square raised-cosine taper over a border band of width side/32 (1 inside, 0 at edge)."""
    width = max(1, side_px // 32)
    d = np.minimum(np.arange(side_px), np.arange(side_px)[::-1]).astype(np.float64)
    ramp = np.where(d >= width, 1.0, 0.5 * (1.0 - np.cos(np.pi * d / width)))
    return np.asarray(np.outer(ramp, ramp), dtype=np.float32)


def stretch_matrix(tilt_deg: float, axis_px: tuple[float, float]) -> NDArray[np.float64]:
    """(column, row) matrix stretching by 1/cos α across the axis (identity below 0.02 rad)."""
    alpha = math.radians(tilt_deg)
    if abs(alpha) < UNTILT_MIN_RAD:
        return np.eye(2)
    a = np.asarray(axis_px, dtype=np.float64)
    a = a / np.linalg.norm(a)
    n = np.array([-a[1], a[0]])
    return np.eye(2) + (1.0 / math.cos(alpha) - 1.0) * np.outer(n, n)


def untilt(image: FloatImage, matrix: NDArray[np.float64]) -> FloatImage:
    """Apply a (column, row) stretch about the centre; outside pixels get the edge mean."""
    if np.allclose(matrix, np.eye(2)):
        return image
    inverse = np.linalg.inv(matrix)[::-1, ::-1]  # ndimage works in (row, column)
    centre = (np.array(image.shape, dtype=np.float64) - 1) / 2.0
    fill = float(np.mean(np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])))
    out = ndimage.affine_transform(
        image, inverse, offset=centre - inverse @ centre, order=1, mode="constant", cval=fill
    )
    return np.asarray(out, dtype=np.float32)


def phase_correlation(previous: FloatImage, current: FloatImage) -> NDArray[np.float64]:
    """Real phase-correlation map (zero shift at [0, 0]), zero pixel cleared, low-passed."""
    f_prev = sfft.fft2(previous, workers=WORKERS)
    f_cur = sfft.fft2(current, workers=WORKERS)
    cross = np.asarray(np.conj(f_prev) * f_cur, dtype=np.complex128)
    magnitude = np.abs(cross)
    if np.all(magnitude > 0):
        cross = cross / magnitude
    corr = np.real(sfft.ifft2(cross, workers=WORKERS))
    corr[0, 0] = 0.0
    kernel = _gaussian_kernel_spectrum(corr.shape, LOW_PASS_SIGMA_PX)
    return np.asarray(
        np.real(sfft.ifft2(sfft.fft2(corr, workers=WORKERS) * kernel, workers=WORKERS)),
        dtype=np.float64,
    )


def _gaussian_kernel_spectrum(shape: tuple[int, ...], sigma: float) -> NDArray[np.complex128]:
    """Spectrum of a (2⌊5σ⌋+1)² Gaussian normalised by 1/(2πσ²), centred on [0, 0] (circular)."""
    half = int(5 * sigma)
    r = np.arange(-half, half + 1)
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2)) / (2 * np.pi * sigma**2)
    kernel = np.zeros(shape)
    for dy, row in zip(r, g, strict=True):
        for dx, value in zip(r, row, strict=True):
            kernel[dy % shape[0], dx % shape[1]] += value
    return np.asarray(sfft.fft2(kernel), dtype=np.complex128)


def subpixel_peak(corr: NDArray[np.float64]) -> tuple[float, float, float]:
    """(row, column, value) of the maximum refined by a separable 5×5 quadratic fit.

    a r² + b r + c q² + d q + e is fitted by least squares over the wrapped 5×5 box; the vertex
    (−b/2a, −d/2c) is used if it lies inside the box, else the integer peak is kept.
    """
    ny, nx = corr.shape
    iy, ix = np.unravel_index(int(np.argmax(corr)), corr.shape)
    half = PEAK_BOX // 2
    offs = np.arange(-half, half + 1)
    box = corr[np.ix_((iy + offs) % ny, (ix + offs) % nx)]
    rr, qq = np.meshgrid(offs, offs, indexing="ij")
    design = np.column_stack(
        [rr.ravel() ** 2, rr.ravel(), qq.ravel() ** 2, qq.ravel(), np.ones(rr.size)]
    )
    coef, *_ = np.linalg.lstsq(design, box.ravel(), rcond=None)
    a, b, c, d, _ = coef
    row, col = float(iy), float(ix)
    with np.errstate(divide="ignore", invalid="ignore"):
        r0, q0 = -b / (2 * a), -d / (2 * c)
    if np.isfinite(r0) and np.isfinite(q0) and abs(r0) <= half and abs(q0) <= half:
        row, col = row + float(r0), col + float(q0)
    return row, col, float(corr[iy, ix])


def tracking_shift(
    previous: NDArray[np.floating],
    current: NDArray[np.floating],
    previous_tilt_deg: float,
    current_tilt_deg: float,
    axis_px: tuple[float, float],
) -> TrackingShift:
    """Shift of ``current``'s content relative to ``previous`` (see module docstring).

    ``axis_px`` is the direction of the tilt axis on the camera (column, row). Raises
    :class:`~tomopilot.imaging.errors.NoCorrelationPeakError` when the map is flat.
    """
    prev, b_prev = prepare(previous)
    cur, b_cur = prepare(current)
    if prev.shape != cur.shape or b_prev != b_cur:
        raise ValueError(f"images differ in size: {previous.shape} and {current.shape}")
    window = edge_window(prev.shape[0])
    s_prev = stretch_matrix(previous_tilt_deg, axis_px)
    s_cur = stretch_matrix(current_tilt_deg, axis_px)
    corr = phase_correlation(untilt(prev * window, s_prev), untilt(cur * window, s_cur))
    std = float(corr.std())
    if not std > 0:
        raise NoCorrelationPeakError("the tracking correlation map is flat")
    row, col, value = subpixel_peak(corr)
    n = corr.shape[0]
    row = row - n if row > n / 2 else row
    col = col - n if col > n / 2 else col
    shift = np.linalg.solve(s_cur, np.array([col, row])) * b_cur  # back to the camera frame
    return TrackingShift(
        float(shift[0]),
        float(shift[1]),
        b_cur,
        value,
        (value - float(corr.mean())) / std,
    )
