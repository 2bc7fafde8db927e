"""Holes of a holey film: a disc template, matched filtering, hole detection and centring.

Holes may look brighter or darker than the film (thin or thick ice), so matching is done with
a zero-mean disc of either sign and the stronger response wins.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray
from scipy import ndimage

from tomopilot.imaging.autocorrelation import refine_peak
from tomopilot.imaging.fourier import WORKERS


def disc_image(
    shape: tuple[int, int],
    radius_px: float,
    *,
    centre_px: tuple[float, float] | None = None,
    edge_px: float = 1.0,
) -> NDArray[np.float32]:
    """A soft-edged disc (1 inside, 0 outside) at ``centre_px`` (x, y; default the centre)."""
    ny, nx = shape
    cx, cy = centre_px if centre_px is not None else (nx / 2, ny / 2)
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float64)
    r = np.hypot(x + 0.5 - cx, y + 0.5 - cy)
    disc = 0.5 - 0.5 * np.tanh((r - radius_px) / max(edge_px, 1e-3))
    return np.asarray(disc, dtype=np.float32)


def match_disc(image: NDArray[np.floating], radius_px: float) -> tuple[NDArray[np.float64], int]:
    """Matched-filter response to a disc, normalised, and its sign (+1 bright holes, −1 dark).

    Response (rows, cols) at pixel p is the correlation of the image with a zero-mean disc
    centred at p's centre.
    """
    data = np.asarray(image, np.float64)
    data = (data - data.mean()) / (data.std() or 1.0)
    ny, nx = data.shape
    size = int(np.ceil(radius_px * 2.6)) | 1
    kernel = disc_image((size, size), radius_px, centre_px=(size / 2, size / 2)).astype(np.float64)
    ring = disc_image((size, size), radius_px * 1.3, centre_px=(size / 2, size / 2)) - kernel
    kernel = kernel / kernel.sum() - ring / max(float(ring.sum()), 1e-9)
    shape = (sfft.next_fast_len(ny + size), sfft.next_fast_len(nx + size))
    f = sfft.rfft2(data, s=shape, workers=WORKERS) * sfft.rfft2(
        kernel[::-1, ::-1], s=shape, workers=WORKERS
    )
    full = sfft.irfft2(f, s=shape, workers=WORKERS)
    h = size // 2
    response = full[h : h + ny, h : h + nx]
    sign = 1 if response.max() >= -response.min() else -1
    return np.asarray(response * sign), sign


def _noise_level(image: NDArray[np.floating], radius_px: float) -> float:
    """Standard deviation of the matched-filter response to the image's pixel noise alone."""
    data = np.asarray(image, np.float64)
    data = (data - data.mean()) / (data.std() or 1.0)
    sigma = 1.4826 * float(np.median(np.abs(np.diff(data, axis=1)))) / np.sqrt(2.0)
    size = int(np.ceil(radius_px * 2.6)) | 1
    kernel = disc_image((size, size), radius_px, centre_px=(size / 2, size / 2)).astype(np.float64)
    ring = disc_image((size, size), radius_px * 1.3, centre_px=(size / 2, size / 2)) - kernel
    kernel = kernel / kernel.sum() - ring / max(float(ring.sum()), 1e-9)
    return float(sigma * np.sqrt(np.sum(kernel**2)))


def find_holes(
    image: NDArray[np.floating], radius_px: float, *, threshold: float = 0.5, whole: bool = True
) -> NDArray[np.float64]:
    """Centres (n, 2) as continuous (x, y) pixels of holes of radius ``radius_px``.

    Peaks of the matched filter at least a diameter apart, well above the noise (8 robust σ)
    and above ``threshold`` × the typical strong peak (so a few dark contamination blobs do not
    raise the bar); with ``whole`` only holes entirely inside the image are kept.
    """
    response, _ = match_disc(image, radius_px)
    size = max(3, round(radius_px * 2) | 1)
    peaks = response == ndimage.maximum_filter(response, size=size)
    noise = _noise_level(image, radius_px)
    strong = response[peaks & (response > 8.0 * noise)]
    if strong.size == 0:
        return np.zeros((0, 2))
    typical = float(np.median(np.sort(strong)[strong.size // 2 :]))
    maxima = peaks & (response > max(8.0 * noise, threshold * typical))
    rows, cols = np.nonzero(maxima)
    out = []
    ny, nx = response.shape
    for r, c in zip(rows, cols, strict=True):
        rr, cc = refine_peak(response, int(r), int(c), radius=max(2, int(radius_px // 4)))
        x, y = cc + 0.5, rr + 0.5
        if whole and not (radius_px <= x <= nx - radius_px and radius_px <= y <= ny - radius_px):
            continue
        out.append((x, y))
    return np.array(out, dtype=np.float64).reshape(-1, 2)
