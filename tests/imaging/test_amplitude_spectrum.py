"""The amplitude-spectrum sums (RELION's ``_PS`` images) computed by row bands on threads give
the numbers of the frame-by-frame accumulation, and the resampling is the plain bin mean."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.fft as sfft

from tomopilot.imaging.amplitude_spectrum import (
    AmplitudeAccumulator,
    SpectrumGeometry,
    amplitude_spectrum,
    block_amplitudes,
)


def _spectra(n: int, shape: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = rng.poisson(3.0, (n, *shape)).astype(np.float32)
    return np.ascontiguousarray(sfft.rfft2(frames).astype(np.complex64))


@pytest.mark.parametrize(
    ("n", "per_block", "pixel_a", "threads"),
    [(10, 4, 2.0, 1), (10, 4, 2.0, 2), (7, 3, 0.8, 2), (5, 1, 1.0, 3), (6, 8, 0.7, 1)],
)
def test_banded_block_amplitudes_equal_the_frame_by_frame_sums(
    n: int, per_block: int, pixel_a: float, threads: int
) -> None:
    shape = (192, 160)
    spectra = _spectra(n, shape, n + per_block)
    geometry = SpectrumGeometry.for_frames(shape, pixel_a, size=64)
    accumulator = AmplitudeAccumulator(geometry, per_block)
    for spectrum in spectra:
        accumulator.add(spectrum)
    accumulator._close_block()
    expected = accumulator._amplitude
    with ThreadPoolExecutor(threads) as pool:
        got = block_amplitudes(spectra, geometry, per_block, pool, threads, band_rows=16)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    # The spectrum with the rows summed band by band: the resampled sums, for any threads.
    with ThreadPoolExecutor(threads) as pool:
        power = amplitude_spectrum(spectra, geometry, per_block, pool, threads, band_rows=16)
    np.testing.assert_allclose(power, geometry.finish(expected), rtol=1e-6)
    np.testing.assert_array_equal(power, amplitude_spectrum(spectra, geometry, per_block))


@pytest.mark.parametrize(
    ("shape", "pixel_a", "size"), [((192, 160), 2.0, 64), ((128, 128), 0.7, 96)]
)
def test_resampling_is_the_mean_of_each_frequency_bin(
    shape: tuple[int, int], pixel_a: float, size: int
) -> None:
    """Reference: every input sample goes to the output bin its frequency rounds to."""
    geometry = SpectrumGeometry.for_frames(shape, pixel_a, size=size)
    rng = np.random.default_rng(3)
    amplitude = rng.random((geometry.rows.size, geometry.columns)).astype(np.float32)
    fy = np.fft.fftfreq(shape[0], d=pixel_a)[geometry.rows]
    fx = np.fft.rfftfreq(shape[1], d=pixel_a)[: geometry.columns]
    step = 1.0 / (size * geometry.pixel_size_a)
    iy = np.clip(np.round(fy / step).astype(int) + size // 2, 0, size - 1)
    ix = np.clip(np.round(fx / step).astype(int), 0, size // 2)
    sums = np.zeros((size, size // 2 + 1))
    counts = np.zeros_like(sums)
    np.add.at(sums, (iy[:, None], ix[None, :]), amplitude.astype(np.float64))
    np.add.at(counts, (iy[:, None], ix[None, :]), 1.0)
    result = geometry.finish(amplitude)
    centre = size // 2
    filled = counts > 0
    half = result[:, centre:]  # k_x ≥ 0 half, as resampled
    expected = np.where(filled, sums / np.maximum(counts, 1), np.nan)[:, : size - centre]
    known = filled[:, : size - centre]
    assert known.sum() > 0.3 * known.size and np.isfinite(result).all()
    np.testing.assert_allclose(half[known], expected[known], rtol=1e-6)
