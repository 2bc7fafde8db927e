"""Fourier-space helpers: frequency grids, power spectra, radial averages, shifts, crops.

Arrays are indexed (row, column) = (y, x). Spatial frequencies are in 1/Å when a pixel size in Å
is given, else in cycles per pixel.

Examples
--------
>>> import numpy as np
>>> k = frequency_grid((4, 4), pixel_size_a=2.0)
>>> float(k.max())  # the corner: sqrt(2) * Nyquist (0.25 1/Å)
0.3535533905932738
"""

from __future__ import annotations

import os

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray

from tomopilot.imaging.errors import ImagingError

FloatArray = NDArray[np.floating]

WORKERS = max(1, min(os.cpu_count() or 1, 8))


def frequency_axes(
    shape: tuple[int, int], pixel_size_a: float = 1.0, *, real: bool = False
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Frequencies along y and x (1/Å) for an FFT of ``shape``; ``real`` for ``rfft2``."""
    ny, nx = shape
    fy = np.fft.fftfreq(ny, d=pixel_size_a).astype(np.float64)
    fx = np.fft.rfftfreq(nx, d=pixel_size_a) if real else np.fft.fftfreq(nx, d=pixel_size_a)
    return fy, fx.astype(np.float64)


def frequency_grid(
    shape: tuple[int, int], pixel_size_a: float = 1.0, *, real: bool = False
) -> NDArray[np.float64]:
    """Magnitude of the spatial frequency (1/Å) at every FFT sample, unshifted layout."""
    fy, fx = frequency_axes(shape, pixel_size_a, real=real)
    return np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def taper_mask(shape: tuple[int, int], width_px: int) -> NDArray[np.float32]:
    """A mask that is 1 inside and falls to 0 at the border with a cosine edge."""
    ny, nx = shape
    if width_px <= 0:
        return np.ones(shape, np.float32)

    def edge(n: int) -> NDArray[np.float32]:
        w = min(width_px, n // 2)
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(w) + 0.5) / w)
        profile = np.ones(n, np.float32)
        profile[:w] = ramp
        profile[n - w :] = ramp[::-1]
        return profile

    return np.outer(edge(ny), edge(nx)).astype(np.float32)


def power_spectrum(
    image: FloatArray, *, tile_px: int | None = None, overlap: float = 0.5
) -> NDArray[np.float64]:
    """The power spectrum |F|², unshifted, averaged over tiles (Welch) when ``tile_px`` is set.

    Each tile is mean-subtracted and tapered, which removes the edge cross and lowers the noise
    of the estimate at the cost of frequency resolution.
    """
    data = np.asarray(image, dtype=np.float32)
    if data.ndim != 2:
        raise ImagingError(f"power_spectrum needs a 2D image, got shape {data.shape}")
    if tile_px is None:
        centred = (data - data.mean()) * taper_mask(data.shape, max(4, min(data.shape) // 16))
        return np.abs(sfft.rfft2(centred, workers=WORKERS)).astype(np.float64) ** 2
    ny, nx = data.shape
    if tile_px > min(ny, nx):
        raise ImagingError(f"tile of {tile_px} px is larger than the {ny}×{nx} image")
    step = max(1, int(tile_px * (1 - overlap)))
    window = taper_mask((tile_px, tile_px), tile_px // 8)
    tiles = [
        data[y : y + tile_px, x : x + tile_px]
        for y in range(0, ny - tile_px + 1, step)
        for x in range(0, nx - tile_px + 1, step)
    ]
    stack = np.stack(tiles)
    stack = (stack - stack.mean(axis=(1, 2), keepdims=True)) * window
    spectra = np.abs(sfft.rfft2(stack, axes=(1, 2), workers=WORKERS)) ** 2
    return np.asarray(spectra.mean(axis=0), dtype=np.float64)


def radial_average(
    spectrum_rfft: FloatArray,
    shape: tuple[int, int],
    pixel_size_a: float,
    n_bins: int | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Rotational average of an ``rfft2``-layout spectrum of an image of ``shape``.

    Returns
    -------
    k_a_inv, mean
        Bin centres (1/Å), from 0 to Nyquist, and the mean value in each bin.
    """
    k = frequency_grid(shape, pixel_size_a, real=True)
    nyquist = 0.5 / pixel_size_a
    n_bins = n_bins or min(shape) // 2
    edges = np.linspace(0.0, nyquist, n_bins + 1)
    index = np.digitize(k.ravel(), edges) - 1
    valid = (index >= 0) & (index < n_bins)
    sums = np.bincount(
        index[valid], weights=np.asarray(spectrum_rfft).ravel()[valid], minlength=n_bins
    )
    counts = np.bincount(index[valid], minlength=n_bins)
    centres = 0.5 * (edges[:-1] + edges[1:])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return centres, mean


def fourier_shift(image: FloatArray, shift_x_px: float, shift_y_px: float) -> NDArray[np.float32]:
    """Translate an image by a sub-pixel amount (periodic boundary): out(x) = in(x − shift)."""
    data = np.asarray(image, dtype=np.float32)
    fy, fx = frequency_axes(data.shape, 1.0, real=True)
    phase = np.exp(-2j * np.pi * (fy[:, None] * shift_y_px + fx[None, :] * shift_x_px))
    spectrum = sfft.rfft2(data, workers=WORKERS) * phase.astype(np.complex64)
    return np.asarray(sfft.irfft2(spectrum, s=data.shape, workers=WORKERS), dtype=np.float32)


def fourier_crop(image: FloatArray, factor: float) -> NDArray[np.float32]:
    """Downsample by ``factor`` (≥ 1) by cropping the Fourier transform (no aliasing)."""
    data = np.asarray(image, dtype=np.float32)
    if factor < 1:
        raise ImagingError(f"Fourier cropping needs a factor ≥ 1, got {factor}")
    ny, nx = data.shape
    my, mx = round(ny / factor) // 2 * 2, round(nx / factor) // 2 * 2
    if my < 2 or mx < 2:
        raise ImagingError(f"cannot crop a {ny}×{nx} image by {factor}")
    spectrum = sfft.rfft2(data, workers=WORKERS)
    cropped = np.concatenate(
        [spectrum[: my // 2, : mx // 2 + 1], spectrum[ny - my // 2 :, : mx // 2 + 1]]
    )
    out = sfft.irfft2(cropped, s=(my, mx), workers=WORKERS) * (my * mx) / (ny * nx)
    return np.asarray(out, dtype=np.float32)


def gaussian_bandpass(
    shape: tuple[int, int],
    *,
    low_px: float | None = None,
    high_px: float | None = None,
) -> NDArray[np.float32]:
    """An ``rfft2``-layout Gaussian band-pass: keeps detail between ``high_px`` and ``low_px``.

    ``low_px`` is the period (pixels) below which detail is removed (a low-pass), ``high_px``
    the period above which it is removed (a high-pass). Either may be omitted.
    """
    k = frequency_grid(shape, 1.0, real=True)
    out = np.ones(k.shape, np.float64)
    if low_px:
        out *= np.exp(-0.5 * (k * low_px / 1.5) ** 2)
    if high_px:
        out *= 1.0 - np.exp(-0.5 * (k * high_px) ** 2)
    return out.astype(np.float32)
