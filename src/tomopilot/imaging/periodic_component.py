"""The smooth component of an image's Fourier transform (Moisan's periodic + smooth split).

The discrete Fourier transform treats an image as periodic, so the jump between its opposite
borders becomes a bright cross in the spectrum. In a movie that cross sits still while the
specimen moves, and it pulls frame alignment towards zero shift (badly so when a lamella edge or
a thick region lies across the image). Moisan (2011, J. Math. Imaging Vis. 39:161) splits an
image u into a periodic part p and a smooth part s whose discrete Laplacian is the border jump
image v; s has the closed-form spectrum

    Ŝ(k) = V̂(k) / (2 cos 2πk_x + 2 cos 2πk_y − 4),   Ŝ(0) = 0,

and V̂ needs only the four border lines. :class:`FrameEdges` keeps those lines for every frame and
evaluates Ŝ at any frequencies, so that alignment can use p̂ = û − ŝ on a cropped grid for the
cost of two small matrix products.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> frames = rng.normal(size=(1, 32, 32)) + np.linspace(0, 8, 32)[None, :, None]
>>> edges = FrameEdges.from_frames(frames)
>>> fy, fx = np.fft.fftfreq(32), np.fft.rfftfreq(32)
>>> smooth = np.fft.irfft2(edges.smooth_spectra(fy, fx)[0], s=(32, 32))
>>> periodic = frames[0] - smooth
>>> bool(abs(periodic[0] - periodic[-1]).mean() < abs(frames[0, 0] - frames[0, -1]).mean() / 5)
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class FrameEdges:
    """The border lines of a stack of frames, and the frame geometry they came from.

    Attributes
    ----------
    jump_rows
        (n, width): last row minus first row of each frame.
    jump_columns
        (n, height): last column minus first column of each frame.
    pixel_factors
        (y, x) original pixels per pixel of the grid the spectra live on (binning).
    amplitude
        Factor the spectra were scaled by (binning keeps the mean per pixel).
    """

    jump_rows: NDArray[np.float64]
    jump_columns: NDArray[np.float64]
    pixel_factors: tuple[float, float] = (1.0, 1.0)
    amplitude: float = 1.0

    @classmethod
    def from_frames(
        cls,
        frames: NDArray[np.floating],
        *,
        pixel_factors: tuple[float, float] = (1.0, 1.0),
        amplitude: float = 1.0,
    ) -> FrameEdges:
        """Border jumps of (n, h, w) frames."""
        data = np.asarray(frames)
        rows = data[:, -1, :].astype(np.float64) - data[:, 0, :]
        columns = data[:, :, -1].astype(np.float64) - data[:, :, 0]
        return cls(rows, columns, pixel_factors, amplitude)

    @classmethod
    def empty(cls, n: int, shape: tuple[int, int]) -> FrameEdges:
        """Edges to be filled frame by frame with :meth:`set_frame`."""
        return cls(np.zeros((n, shape[1])), np.zeros((n, shape[0])))

    def set_frame(self, index: int, frame: NDArray[np.floating]) -> None:
        """Record the border jumps of one frame."""
        self.set_borders(index, frame[0, :], frame[-1, :], frame[:, 0], frame[:, -1])

    def set_borders(
        self,
        index: int,
        top: NDArray[np.floating],
        bottom: NDArray[np.floating],
        left: NDArray[np.floating],
        right: NDArray[np.floating],
    ) -> None:
        """Record the border jumps of one frame from its first and last rows and columns."""
        self.jump_rows[index] = bottom.astype(np.float64) - top
        self.jump_columns[index] = right.astype(np.float64) - left

    def with_grid(self, pixel_factors: tuple[float, float], amplitude: float) -> FrameEdges:
        """The same edges for spectra on a binned grid."""
        return FrameEdges(self.jump_rows, self.jump_columns, pixel_factors, amplitude)

    def _grid_terms(
        self, fy_per_px: NDArray[np.floating], fx_per_px: NDArray[np.floating]
    ) -> tuple[
        NDArray[np.intp],
        NDArray[np.intp],
        NDArray[np.complex64],
        NDArray[np.complex64],
        NDArray[np.float32],
    ]:
        """What Ŝ needs of the grid alone: DFT indices of the border lines, the two edge
        factors and 1 / (2 cos 2πfx + 2 cos 2πfy − 4) × amplitude (0 at the origin)."""
        fy = np.asarray(fy_per_px, np.float64) / self.pixel_factors[0]
        fx = np.asarray(fx_per_px, np.float64) / self.pixel_factors[1]
        width = self.jump_rows.shape[1]
        height = self.jump_columns.shape[1]
        column_index = np.round(fx * width).astype(np.intp) % width
        row_index = np.round(fy * height).astype(np.intp) % height
        ey = (1.0 - np.exp(2j * np.pi * fy)).astype(np.complex64)
        ex = (1.0 - np.exp(2j * np.pi * fx)).astype(np.complex64)
        denominator = 2 * np.cos(2 * np.pi * fx)[None, :] + 2 * np.cos(2 * np.pi * fy)[:, None] - 4
        at_zero = np.abs(denominator) < 1e-12
        inverse = np.where(at_zero, 0.0, 1.0 / np.where(at_zero, 1.0, denominator))
        return column_index, row_index, ey, ex, (inverse * self.amplitude).astype(np.float32)

    def smooth_spectra(
        self, fy_per_px: NDArray[np.floating], fx_per_px: NDArray[np.floating]
    ) -> NDArray[np.complex64]:
        """Ŝ (n, len(fy), len(fx)) at frequencies in cycles per pixel of the spectra's grid.

        The frequencies must lie on the original frames' DFT grid (any Fourier crop of it).
        """
        column_index, row_index, ey, ex, inverse = self._grid_terms(fy_per_px, fx_per_px)
        # The border lines' DFTs at the requested grid frequencies, by FFT and indexing.
        row_part = np.fft.fft(self.jump_rows, axis=1)[:, column_index].astype(np.complex64)
        column_part = np.fft.fft(self.jump_columns, axis=1)[:, row_index].astype(np.complex64)
        spectrum = row_part[:, None, :] * ey[None, :, None]
        spectrum += column_part[:, :, None] * ex[None, None, :]
        spectrum *= inverse[None]
        return np.asarray(spectrum, dtype=np.complex64)

    def subtract_from(
        self,
        spectra: NDArray[np.complex64],
        fy_per_px: NDArray[np.floating],
        fx_per_px: NDArray[np.floating],
    ) -> None:
        """Subtract Ŝ from (n, len(fy), len(fx)) spectra in place, one frame at a time.

        The grid's terms are computed once for all frames; each frame costs two products and a
        sum over the grid (the same numbers as :meth:`smooth_spectra`, frame by frame).
        """
        subtract = self.subtractor(fy_per_px, fx_per_px)
        for index in range(spectra.shape[0]):
            subtract(index, spectra[index])

    def subtractor(
        self, fy_per_px: NDArray[np.floating], fx_per_px: NDArray[np.floating]
    ) -> Callable[[int, NDArray[np.complex64]], None]:
        """``subtract(index, spectrum)``: Ŝ of frame ``index`` taken from one (len(fy),
        len(fx)) spectrum in place, as :meth:`subtract_from` does (frames may be done on
        different threads)."""
        column_index, row_index, ey, ex, inverse = self._grid_terms(fy_per_px, fx_per_px)
        row_parts = np.fft.fft(self.jump_rows, axis=1)[:, column_index].astype(np.complex64)
        column_parts = np.fft.fft(self.jump_columns, axis=1)[:, row_index].astype(np.complex64)

        def subtract(index: int, spectrum: NDArray[np.complex64]) -> None:
            smooth = np.multiply(row_parts[index][None, :], ey[:, None])
            smooth += column_parts[index][:, None] * ex[None, :]
            smooth *= inverse
            spectrum -= smooth

        return subtract
