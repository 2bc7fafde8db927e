"""Autocorrelation of an image and the positions of its peaks (for periodic specimens).

:func:`autocorrelate` returns the linear (zero-padded) autocorrelation of the mean-subtracted,
tapered image, normalised at every lag by the overlap of the taper with itself, so that peaks
far from the origin are not pulled towards it. :func:`find_peaks` picks maxima by repeated
arg-max with suppression, and :func:`refine_peak` locates one to a fraction of a pixel.

Examples
--------
>>> import numpy as np
>>> y, x = np.mgrid[0:128, 0:128]
>>> lattice = np.cos(2 * np.pi * x / 16) + np.cos(2 * np.pi * y / 16)
>>> ac = autocorrelate(lattice, normalise=False)
>>> peaks = find_peaks(ac, n=3, suppress_px=6)
>>> sorted(abs(round(float(v))) for p in peaks[1:] for v in p)
[0, 0, 16, 16]
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray

from tomopilot.imaging.errors import ImagingError
from tomopilot.imaging.fourier import WORKERS, taper_mask


def autocorrelate(
    image: NDArray[np.floating],
    *,
    taper_px: int | None = None,
    min_overlap: float = 0.25,
    normalise: bool = True,
) -> NDArray[np.float64]:
    """Linear autocorrelation divided by the image's energy.

    The result has shape (2·ny − 1, 2·nx − 1) with zero lag at (ny − 1, nx − 1). With
    ``normalise`` every lag is divided by the taper's overlap with itself there (unbiased peak
    positions) and lags overlapping by less than ``min_overlap`` are set to 0; without it the
    peaks fade with distance, which suits picking the nearest ones.
    """
    data = np.asarray(image, np.float64)
    if data.ndim != 2 or min(data.shape) < 8:
        raise ImagingError(f"autocorrelate needs a 2D image of at least 8×8, got {data.shape}")
    ny, nx = data.shape
    taper = taper_mask(data.shape, taper_px if taper_px is not None else max(2, min(ny, nx) // 16))
    taper = taper.astype(np.float64)
    centred = (data - np.sum(data * taper) / np.sum(taper)) * taper
    shape = (sfft.next_fast_len(2 * ny - 1), sfft.next_fast_len(2 * nx - 1))

    def auto(a: NDArray[np.float64]) -> NDArray[np.float64]:
        f = sfft.rfft2(a, s=shape, workers=WORKERS)
        full = sfft.irfft2(np.abs(f) ** 2, s=shape, workers=WORKERS)
        rolled = np.roll(full, (ny - 1, nx - 1), axis=(0, 1))
        return np.asarray(rolled[: 2 * ny - 1, : 2 * nx - 1])

    signal = auto(centred)
    overlap = auto(np.asarray(taper, np.float64) ** 2)
    peak_overlap = float(overlap[ny - 1, nx - 1])
    energy = float(np.sum(centred**2)) or 1.0
    valid = overlap > min_overlap * peak_overlap
    if not normalise:
        return np.asarray(signal / energy)
    out = np.zeros_like(signal)
    out[valid] = signal[valid] / energy * (peak_overlap / overlap[valid])
    return out


def refine_peak(
    surface: NDArray[np.floating], row: int, col: int, radius: int = 2
) -> tuple[float, float]:
    """Sub-pixel (row, col) of a maximum by a quadratic fit over a (2r+1)² neighbourhood."""
    ny, nx = surface.shape
    r0, r1 = max(row - radius, 0), min(row + radius + 1, ny)
    c0, c1 = max(col - radius, 0), min(col + radius + 1, nx)
    patch = np.asarray(surface[r0:r1, c0:c1], np.float64)
    if patch.shape[0] < 3 or patch.shape[1] < 3:
        return float(row), float(col)
    yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float64)
    yy -= row
    xx -= col
    design = np.stack(
        [
            np.ones(patch.size),
            xx.ravel(),
            yy.ravel(),
            xx.ravel() ** 2,
            yy.ravel() ** 2,
            (xx * yy).ravel(),
        ],
        axis=1,
    )
    coef, *_ = np.linalg.lstsq(design, patch.ravel(), rcond=None)
    _, bx, by, axx, ayy, axy = coef
    hessian = np.array([[2 * axx, axy], [axy, 2 * ayy]])
    if np.linalg.det(hessian) <= 0 or hessian[0, 0] >= 0:
        return float(row), float(col)
    dx, dy = np.linalg.solve(hessian, -np.array([bx, by]))
    if abs(dx) > radius or abs(dy) > radius:
        return float(row), float(col)
    return float(row + dy), float(col + dx)


def find_peaks(
    autocorrelation: NDArray[np.floating], *, n: int, suppress_px: float
) -> list[tuple[float, float]]:
    """The ``n`` highest peaks as (x, y) lags from the origin, origin first, sub-pixel.

    After each arg-max a box of ±``suppress_px`` around it is cleared (PACEtomo's method).
    """
    work = np.array(autocorrelation, dtype=np.float64)
    ny, nx = work.shape
    cy, cx = (ny - 1) // 2, (nx - 1) // 2
    half = max(1, round(suppress_px))
    out: list[tuple[float, float]] = []
    for _ in range(n):
        row, col = np.unravel_index(int(np.argmax(work)), work.shape)
        if work[row, col] <= 0:
            break
        r, c = refine_peak(
            np.asarray(autocorrelation), int(row), int(col), radius=max(2, half // 3)
        )
        out.append((c - cx, r - cy))
        work[max(0, row - half) : row + half + 1, max(0, col - half) : col + half + 1] = -np.inf
    return out
