"""Summed amplitude spectra of movie frames, for CTF estimation (RELION's ``_PS`` images).

Following RELION, frames are grouped in blocks of ``g`` consecutive frames (about 4 e⁻/Å² per
block gives the best Thon rings, McMullan et al. 2015); the amplitude of each block's summed
Fourier transform is accumulated. The result is resampled onto a square ``size`` × ``size`` grid
whose pixel is about 1.4 Å (or the movie's pixel, if coarser) by averaging the input samples
that fall into each output frequency bin, and written centred (zero frequency at size/2).

Examples
--------
>>> geometry = SpectrumGeometry.for_frames((4096, 4096), pixel_size_a=1.0)
>>> round(geometry.pixel_size_a, 3), geometry.size
(1.4, 512)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray


@dataclass
class SpectrumGeometry:
    """How frame spectra map onto the output amplitude spectrum.

    Attributes
    ----------
    frame_shape
        (ny, nx) of the frames.
    frame_pixel_a
        Pixel size of the frames (Å).
    size
        Side of the square output spectrum.
    pixel_size_a
        Pixel size the output spectrum represents (its Nyquist is 1 / (2 · pixel_size_a)).
    rows, columns
        The rfft2 rows and columns of the frames that the output uses.
    """

    frame_shape: tuple[int, int]
    frame_pixel_a: float
    size: int
    pixel_size_a: float
    rows: NDArray[np.intp] = field(repr=False)
    columns: int = 0
    _bins: NDArray[np.intp] | None = field(default=None, repr=False)
    _counts: NDArray[np.float64] | None = field(default=None, repr=False)

    @classmethod
    def for_frames(
        cls,
        frame_shape: tuple[int, int],
        pixel_size_a: float,
        *,
        size: int = 512,
        target_pixel_a: float = 1.4,
    ) -> SpectrumGeometry:
        """Geometry for frames of ``frame_shape`` with pixel ``pixel_size_a``."""
        ny, nx = frame_shape
        n = min(ny, nx)
        keep = n if pixel_size_a >= target_pixel_a else math.ceil(n * pixel_size_a / target_pixel_a)
        keep = min(n, keep + keep % 2)
        out_pixel = pixel_size_a * n / keep
        nyquist_out = 0.5 / out_pixel
        fy = np.fft.fftfreq(ny, d=pixel_size_a)
        rows = np.flatnonzero(np.abs(fy) <= nyquist_out + 1e-12)
        fx = np.fft.rfftfreq(nx, d=pixel_size_a)
        columns = int(np.count_nonzero(fx <= nyquist_out + 1e-12))
        return cls(frame_shape, pixel_size_a, size, out_pixel, rows, columns)

    def crop(self, spectrum: NDArray[np.complexfloating]) -> NDArray[np.complex64]:
        """The part of one rfft2 frame spectrum the output needs."""
        ny = self.frame_shape[0]
        rows = self.rows
        # The kept rows are the low ones and the high (negative-frequency) ones: two slices.
        split = int(np.searchsorted(rows, ny // 2))
        low, high = rows[:split], rows[split:]
        parts = [spectrum[: low.size, : self.columns]]
        if high.size:
            parts.append(spectrum[high[0] :, : self.columns])
        return np.concatenate(parts, axis=0).astype(np.complex64, copy=False)

    def _binning(self) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
        if self._bins is None or self._counts is None:
            ny, nx = self.frame_shape
            fy = np.fft.fftfreq(ny, d=self.frame_pixel_a)[self.rows]
            fx = np.fft.rfftfreq(nx, d=self.frame_pixel_a)[: self.columns]
            step = 1.0 / (self.size * self.pixel_size_a)
            iy = np.clip(np.round(fy / step).astype(np.intp) + self.size // 2, 0, self.size - 1)
            ix = np.clip(np.round(fx / step).astype(np.intp), 0, self.size // 2)
            bins = (iy[:, None] * (self.size // 2 + 1) + ix[None, :]).ravel()
            counts = np.bincount(bins, minlength=self.size * (self.size // 2 + 1))
            self._bins, self._counts = bins, counts.astype(np.float64)
        return self._bins, self._counts

    def finish(self, amplitude: NDArray[np.floating]) -> NDArray[np.float32]:
        """Resample accumulated amplitudes (cropped layout) to the centred square spectrum."""
        bins, counts = self._binning()
        half = self.size // 2 + 1
        sums = np.bincount(
            bins, weights=np.asarray(amplitude, np.float64).ravel(), minlength=counts.size
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).reshape(
                self.size, half
            )
        # Empty bins (when the output grid is finer than the input) take their row's neighbours.
        if np.isnan(mean).any():
            filled = np.where(np.isnan(mean), 0.0, mean)
            weight = (~np.isnan(mean)).astype(np.float64)
            from scipy.ndimage import uniform_filter

            num = uniform_filter(filled, 3, mode="nearest")
            den = uniform_filter(weight, 3, mode="nearest")
            mean = np.where(np.isnan(mean), num / np.maximum(den, 1e-12), mean)
        full = np.zeros((self.size, self.size), np.float64)
        centre = self.size // 2
        full[:, centre:] = mean[:, : self.size - centre]
        # Hermitian symmetry: A(−k) = A(k).
        mirrored = mean[::-1, 1 : centre + 1][:, ::-1]
        mirrored = np.roll(mirrored, 1, axis=0)
        full[:, :centre] = mirrored
        return full.astype(np.float32)


class AmplitudeAccumulator:
    """Σ over blocks of |Σ_{frames in block} F|, accumulated frame by frame (no frame kept).

    Parameters
    ----------
    geometry
        Which part of each frame spectrum is used.
    frames_per_block
        g: consecutive frames summed before taking the amplitude.
    """

    def __init__(self, geometry: SpectrumGeometry, frames_per_block: int) -> None:
        self.geometry = geometry
        self.frames_per_block = max(1, frames_per_block)
        self._block: NDArray[np.complex64] | None = None
        self._amplitude: NDArray[np.float32] | None = None
        self._in_block = 0

    def add(self, spectrum: NDArray[np.complexfloating]) -> None:
        """Add one frame's rfft2 spectrum."""
        rows = self.geometry.rows
        split = int(np.searchsorted(rows, self.geometry.frame_shape[0] // 2))
        low, high = rows[:split], rows[split:]
        columns = self.geometry.columns
        if self._block is None:
            self._block = np.zeros((rows.size, columns), np.complex64)
            self._amplitude = np.zeros((rows.size, columns), np.float32)
        self._block[: low.size] += spectrum[: low.size, :columns]
        if high.size:
            self._block[low.size :] += spectrum[high[0] :, :columns]
        self._in_block += 1
        if self._in_block == self.frames_per_block:
            self._close_block()

    def _close_block(self) -> None:
        if self._block is not None and self._amplitude is not None and self._in_block:
            self._amplitude += np.abs(self._block)
            self._block[...] = 0
        self._in_block = 0

    def result(self) -> NDArray[np.float32]:
        """The centred amplitude spectrum of everything added (a partial last block counts)."""
        self._close_block()
        if self._amplitude is None:
            raise ValueError("no frame was added")
        return self.geometry.finish(self._amplitude)
