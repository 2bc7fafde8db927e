"""Image maths: sub-pixel alignment, Fourier helpers, CTF zeros and the defocus estimator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft as sfft
from hypothesis import given, settings
from hypothesis import strategies as st

from tomopilot.imaging.ctf import CtfOptics, ctf, ctf_zero_frequencies_a_inv
from tomopilot.imaging.errors import DefocusFitError, NoCorrelationPeakError
from tomopilot.imaging.estimate_defocus import estimate_defocus
from tomopilot.imaging.fourier import fourier_crop, fourier_shift, frequency_grid
from tomopilot.imaging.xcorr import align

OPTICS = CtfOptics(voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.1)


def _texture(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, n)).astype(np.float32)


@settings(max_examples=25, deadline=None)
@given(
    dx=st.floats(-20, 20, allow_nan=False),
    dy=st.floats(-20, 20, allow_nan=False),
    seed=st.integers(0, 1000),
)
def test_align_recovers_subpixel_shifts(dx: float, dy: float, seed: int) -> None:
    ref = _texture(128, seed)
    result = align(ref, fourier_shift(ref, dx, dy))
    assert result.shift_x_px == pytest.approx(dx, abs=0.05)
    assert result.shift_y_px == pytest.approx(dy, abs=0.05)


def test_align_in_noise_and_with_a_search_limit() -> None:
    rng = np.random.default_rng(4)
    ref = _texture(256, 1)
    moved = fourier_shift(ref, 6.3, -2.7)
    noisy_ref = ref + rng.normal(scale=1.0, size=ref.shape)
    noisy_mov = moved + rng.normal(scale=1.0, size=ref.shape)
    result = align(noisy_ref, noisy_mov, low_pass_px=3.0)
    assert (result.shift_x_px, result.shift_y_px) == pytest.approx((6.3, -2.7), abs=0.15)
    limited = align(noisy_ref, noisy_mov, max_shift_px=3.0)
    assert np.hypot(limited.shift_x_px, limited.shift_y_px) <= 3.0 + 1.0  # sub-pixel refinement
    assert limited.peak < result.peak
    with pytest.raises(NoCorrelationPeakError):
        align(ref, moved, max_shift_px=5.0, expected_shift_px=(500.0, 0.0))


def test_fourier_crop_keeps_mean_and_band() -> None:
    image = _texture(256, 2) + 10.0
    cropped = fourier_crop(image, 2.0)
    assert cropped.shape == (128, 128)
    assert cropped.mean() == pytest.approx(image.mean(), rel=1e-5)


def _wavelength_a(voltage_kv: float) -> float:
    """The test's own relativistic wavelength, from CODATA 2018 constants (not the library's)."""
    h, m, e, c = 6.62607015e-34, 9.1093837015e-31, 1.602176634e-19, 299792458.0
    volts = voltage_kv * 1e3
    return h / math.sqrt(2 * m * e * volts * (1 + e * volts / (2 * m * c * c))) * 1e10


@pytest.mark.parametrize("defocus_um", [-0.8, -3.0, -6.0])
def test_ctf_zeros_are_the_first_phase_crossings(defocus_um: float) -> None:
    """CTF = −sin(χ + arcsin A) with χ = π λ Δz k² − ½ π Cs λ³ k⁴ (Δz > 0 underfocus): its n-th
    zero is where χ = nπ − arcsin A, and no other zero lies below the sixth."""
    zeros = ctf_zero_frequencies_a_inv(OPTICS, defocus_um, n_zeros=6)
    lam, dz_a, cs_a = _wavelength_a(300.0), -defocus_um * 1e4, 2.7e7
    chi = math.pi * lam * dz_a * zeros**2 - 0.5 * math.pi * cs_a * lam**3 * zeros**4
    np.testing.assert_allclose(chi, np.arange(1, 7) * math.pi - math.asin(0.1), rtol=1e-6)
    k = np.linspace(1e-4, zeros[-1] + 0.25 * (zeros[-1] - zeros[-2]), 200_001)
    values = ctf(k, OPTICS, defocus_um, with_envelope=False)
    crossings = k[np.flatnonzero(np.diff(np.sign(values)) != 0)]
    assert crossings.size == 6
    np.testing.assert_allclose(crossings, zeros, atol=2 * (k[1] - k[0]))
    assert np.max(np.abs(ctf(zeros, OPTICS, defocus_um, with_envelope=False))) < 1e-9
    # Cs slows the phase at high k: every zero lies beyond its Cs-free place √(χ_n / (π λ Δz)).
    cs_free = np.sqrt((np.arange(1, 7) * math.pi - math.asin(0.1)) / (math.pi * lam * dz_a))
    assert np.all(zeros > cs_free)


def _ctf_image(defocus_um: float, n: int = 1024, px: float = 2.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = frequency_grid((n, n), px, real=True)
    spectrum = sfft.rfft2(rng.normal(size=(n, n)))
    contrast = sfft.irfft2(spectrum * ctf(k, OPTICS, defocus_um), s=(n, n))
    expected = 30.0 * (1.0 + 0.15 * contrast / contrast.std())
    return rng.poisson(np.clip(expected, 0, None)).astype(np.float32)


@pytest.mark.parametrize("defocus_um", [-1.5, -3.0, -5.0])
def test_estimate_defocus_recovers_the_truth(defocus_um: float) -> None:
    fit = estimate_defocus(_ctf_image(defocus_um), 2.0, OPTICS)
    assert fit.defocus_um == pytest.approx(defocus_um, abs=0.02)
    assert fit.score > 0.5


def test_estimate_defocus_refuses_pure_noise() -> None:
    noise = np.random.default_rng(3).poisson(30.0, size=(1024, 1024)).astype(np.float32)
    with pytest.raises(DefocusFitError):
        estimate_defocus(noise, 2.0, OPTICS, min_score=0.3)


def _rim_field(shift_px: tuple[float, float], seed: int) -> np.ndarray:
    """Particles in ice beside a bright, featureless region (a hole's rim), seen shifted."""
    rng = np.random.default_rng(seed)
    n = 256
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    sx, sy = shift_px
    radius = np.hypot(xx - sx - 40, yy - sy - 300)
    vacuum = 1.0 / (1.0 + np.exp(-(radius - 230.0) / 1.5))  # a smooth rim, then vacuum
    field = 1.0 + 1.5 * vacuum
    particles = np.random.default_rng(99).uniform(0, n, size=(120, 2))
    for px, py in particles:
        field -= 0.4 * np.exp(-((xx - px - sx) ** 2 + (yy - py - sy) ** 2) / 8.0) * (1 - vacuum)
    return rng.poisson(field * 200.0).astype(np.float32)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_flattening_finds_a_shift_across_a_bright_rim(seed: int) -> None:
    """The taper prints the frame onto a rim's bright background; flattening first avoids it."""
    shift = (23.4, -31.7)
    ref, moved = _rim_field((0.0, 0.0), seed), _rim_field(shift, seed + 10)
    flat = align(ref, moved, flatten_px=6.0)
    assert abs(flat.shift_x_px - shift[0]) < 0.3 and abs(flat.shift_y_px - shift[1]) < 0.3
    plain = align(ref, moved)
    assert flat.significance > plain.significance
