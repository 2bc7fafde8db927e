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
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

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

    def row_bins(self) -> NDArray[np.intp]:
        """Output row of each kept frequency row, in the cropped layout's order."""
        ny = self.frame_shape[0]
        fy = np.fft.fftfreq(ny, d=self.frame_pixel_a)[self.rows]
        step = 1.0 / (self.size * self.pixel_size_a)
        return np.clip(np.round(fy / step).astype(np.intp) + self.size // 2, 0, self.size - 1)

    def _column_runs(self) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        """Where each run of kept columns with one output column starts, and that column."""
        fx = np.fft.rfftfreq(self.frame_shape[1], d=self.frame_pixel_a)[: self.columns]
        step = 1.0 / (self.size * self.pixel_size_a)
        ix = np.clip(np.round(fx / step).astype(np.intp), 0, self.size // 2)
        return _runs(ix)

    def row_sums(
        self, amplitude: NDArray[np.floating], first_row: int = 0
    ) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
        """Sums of consecutive rows that share an output row, for rows from ``first_row`` of the
        cropped layout: (output rows, sums), float64. Add them up with :meth:`add_row_sums`."""
        bins = self.row_bins()[first_row : first_row + amplitude.shape[0]]
        starts, values = _runs(bins)
        return values, np.add.reduceat(amplitude, starts, axis=0, dtype=np.float64)

    def add_row_sums(
        self, total: NDArray[np.float64], rows: NDArray[np.intp], sums: NDArray[np.float64]
    ) -> None:
        """Add :meth:`row_sums` into ``total`` (size × columns)."""
        np.add.at(total, rows, sums)

    def finish(self, amplitude: NDArray[np.floating]) -> NDArray[np.float32]:
        """Resample accumulated amplitudes (cropped layout) to the centred square spectrum.

        Each output bin is the mean of the input samples whose frequency rounds to it. The
        bins are separable (an output row per input row, an output column per input column),
        so the sums are two reductions over runs of rows and of columns, in float64.
        """
        total = np.zeros((self.size, self.columns))
        self.add_row_sums(total, *self.row_sums(amplitude))
        return self.finish_rows(total)

    def finish_rows(self, row_totals: NDArray[np.float64]) -> NDArray[np.float32]:
        """:meth:`finish` from the amplitudes already summed into output rows (size × columns)."""
        column_starts, out_columns = self._column_runs()
        sums_small = np.add.reduceat(row_totals, column_starts, axis=1)
        row_counts = np.bincount(self.row_bins(), minlength=self.size).astype(np.float64)
        column_counts = np.diff(np.append(column_starts, self.columns))
        half = self.size // 2 + 1
        sums = np.zeros((self.size, half))
        counts = np.zeros((self.size, half))
        sums[:, out_columns] = sums_small
        counts[:, out_columns] = np.multiply.outer(row_counts, column_counts)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
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


def _runs(values: NDArray[np.intp]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Starts of the runs of equal values in a non-decreasing array, and the runs' values."""
    starts = np.flatnonzero(np.diff(values, prepend=values[0] - 1))
    return starts, values[starts]


def _band_amplitude(
    spectra: NDArray[np.complex64],
    geometry: SpectrumGeometry,
    frames_per_block: int,
    top: int,
    end: int,
) -> NDArray[np.float32]:
    """Rows ``top:end`` (cropped layout) of Σ over blocks of |Σ_{frames in block} F|."""
    n = spectra.shape[0]
    g = max(1, frames_per_block)
    rows = geometry.rows
    n_low = int(np.searchsorted(rows, geometry.frame_shape[0] // 2))
    high_start = int(rows[n_low]) if rows.size > n_low else 0
    columns = geometry.columns
    # Output rows top:end come from spectrum rows top:end (low) or shifted (high).
    pieces = []
    if top < n_low:
        pieces.append((top, min(end, n_low), top))
    if end > n_low:
        a = max(top, n_low)
        pieces.append((a, end, high_start + a - n_low))
    amplitude = np.zeros((end - top, columns), np.float32)
    block = np.empty((end - top, columns), np.complex64)
    for first in range(0, n, g):
        for o0, o1, s0 in pieces:
            target = block[o0 - top : o1 - top]
            np.copyto(target, spectra[first, s0 : s0 + o1 - o0, :columns])
            for i in range(first + 1, min(first + g, n)):
                target += spectra[i, s0 : s0 + o1 - o0, :columns]
        amplitude += np.abs(block)
    return amplitude


def _map_bands(
    n_rows: int, band_rows: int, work: Any, pool: Executor | None, threads: int
) -> list[Any]:
    """``[work(top, end) for each band]`` in band order, on the pool's threads if any."""
    tops = range(0, n_rows, band_rows)
    if pool is None or threads <= 1:
        return [work(top, min(top + band_rows, n_rows)) for top in tops]
    futures = [pool.submit(work, top, min(top + band_rows, n_rows)) for top in tops]
    return [future.result() for future in futures]


def block_amplitudes(
    spectra: NDArray[np.complex64],
    geometry: SpectrumGeometry,
    frames_per_block: int,
    pool: Executor | None = None,
    threads: int = 1,
    band_rows: int = 64,
) -> NDArray[np.float32]:
    """Σ over blocks of |Σ_{frames in block} F| on the rows and columns the output uses.

    The same numbers as :class:`AmplitudeAccumulator` fed the frames in order, computed a band
    of rows at a time (the block sums stay in cache) on ``threads`` threads of ``pool``.
    """
    amplitude = np.zeros((geometry.rows.size, geometry.columns), np.float32)

    def band(top: int, end: int) -> None:
        amplitude[top:end] = _band_amplitude(spectra, geometry, frames_per_block, top, end)

    _map_bands(geometry.rows.size, band_rows, band, pool, threads)
    return amplitude


def amplitude_spectrum(
    spectra: NDArray[np.complex64],
    geometry: SpectrumGeometry,
    frames_per_block: int,
    pool: Executor | None = None,
    threads: int = 1,
    band_rows: int = 64,
) -> NDArray[np.float32]:
    """The centred amplitude spectrum of a movie's frame spectra (RELION's ``_PS`` image).

    ``geometry.finish(block_amplitudes(...))``, with the rows of each band summed into output
    rows while the band is in cache, on the threads; the bands' sums are added in band order,
    so the result does not depend on ``threads``.
    """

    def band(top: int, end: int) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
        amplitude = _band_amplitude(spectra, geometry, frames_per_block, top, end)
        return geometry.row_sums(amplitude, top)

    total = np.zeros((geometry.size, geometry.columns))
    for rows, sums in _map_bands(geometry.rows.size, band_rows, band, pool, threads):
        geometry.add_row_sums(total, rows, sums)
    return geometry.finish_rows(total)
