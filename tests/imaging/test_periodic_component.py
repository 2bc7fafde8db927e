"""Subtracting the smooth (border) component frame by frame equals the stack's Ŝ."""

from __future__ import annotations

import numpy as np

from tomopilot.imaging.periodic_component import FrameEdges


def test_subtract_from_removes_each_frames_smooth_component() -> None:
    rng = np.random.default_rng(0)
    frames = rng.random((3, 48, 40)).astype(np.float32)
    edges = FrameEdges.from_frames(frames)
    fy = np.fft.fftfreq(48)[np.r_[0:12, 36:48]]  # a Fourier crop of the frames' grid
    fx = np.fft.rfftfreq(40)[:11]
    spectra = rng.random((3, fy.size, fx.size)).astype(np.complex64)
    expected = spectra - edges.smooth_spectra(fy, fx)
    edges.subtract_from(spectra, fy, fx)
    np.testing.assert_allclose(spectra, expected, rtol=1e-6, atol=1e-5)
