"""Astigmatic CTF fit of a power spectrum: defocus U/V, astigmatism angle, score, resolution.

The spectrum (centred, square) is turned into amplitudes, divided by a smooth rotationally
symmetric background and equalised ring by ring, which leaves the Thon-ring oscillation D(k).
D is matched against −cos 2(χ(k) + arcsin A), the oscillating part of CTF², by normalised
correlation over a band of frequencies. A 1D search on the rotational average within the
allowed defocus range gives a start; a simplex refinement over (mean defocus, astigmatism as a
2-vector) finds U, V and the angle. The fit resolution is where the correlation, computed in
rings one Thon period wide after mapping every pixel to its equivalent-phase frequency, drops
below a threshold.

Conventions: defoci in µm, negative = underfocus (DESIGN.md §3); U is the defocus along the
direction ``angle_deg`` (counter-clockwise from the x axis), V perpendicular to it, |U| ≥ |V|.
RELION's DefocusU/V are −1e4 × these values (Å, positive underfocus).

Examples
--------
>>> import numpy as np
>>> from tomopilot.imaging.ctf import CtfOptics
>>> optics = CtfOptics()
>>> spectrum = model_power_spectrum(256, 1.5, optics, -2.5, -2.3, 30.0)
>>> fit = fit_ctf_spectrum(spectrum, 1.5, optics, defocus_range_um=(-4.0, -1.0))
>>> round(fit.defocus_u_um, 2), round(fit.defocus_v_um, 2), round(fit.angle_deg)
(-2.5, -2.3, 30)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray
from scipy.optimize import minimize

from tomopilot.imaging.ctf import CtfOptics
from tomopilot.imaging.errors import DefocusFitError
from tomopilot.imaging.fourier import taper_mask

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class CtfFit:
    """An astigmatic CTF fit.

    Attributes
    ----------
    defocus_u_um, defocus_v_um
        Defocus along and across ``angle_deg`` (µm, negative = underfocus), |U| ≥ |V|.
    angle_deg
        Direction of U, counter-clockwise from the x axis, in (−90, 90].
    score
        Normalised correlation of data and model over the fit band (figure of merit).
    resolution_a
        Fit resolution: the finest detail (Å) up to which the rings match the model.
    """

    defocus_u_um: float
    defocus_v_um: float
    angle_deg: float
    score: float
    resolution_a: float

    @property
    def defocus_um(self) -> float:
        """Mean defocus (µm)."""
        return 0.5 * (self.defocus_u_um + self.defocus_v_um)

    @property
    def astigmatism_um(self) -> float:
        """|U − V| (µm)."""
        return abs(self.defocus_u_um - self.defocus_v_um)


def centred_frequencies(size: int, pixel_size_a: float) -> tuple[FloatArray, FloatArray]:
    """|k| (1/Å) and azimuth (rad) on a centred ``size`` × ``size`` spectrum grid."""
    f = (np.arange(size) - size // 2) / (size * pixel_size_a)
    ky, kx = np.meshgrid(f, f, indexing="ij")
    return np.hypot(kx, ky), np.arctan2(ky, kx)


def chi_map_rad(
    k_a_inv: FloatArray, underfocus_a: FloatArray | float, optics: CtfOptics
) -> FloatArray:
    """χ(k) for a positive-underfocus defocus in Å that may vary per sample."""
    lam = optics.wavelength_a
    k2 = k_a_inv * k_a_inv
    return np.asarray(
        np.pi * lam * underfocus_a * k2 - 0.5 * np.pi * optics.cs_mm * 1e7 * lam**3 * k2 * k2
    )


def astigmatic_underfocus_a(
    theta_rad: FloatArray, mean_um: float, half_astig_x_um: float, half_astig_y_um: float
) -> FloatArray:
    """Positive-underfocus (Å) at each azimuth for a mean defocus and astigmatism 2-vector."""
    return np.asarray(
        -1e4
        * (
            mean_um
            + half_astig_x_um * np.cos(2 * theta_rad)
            + half_astig_y_um * np.sin(2 * theta_rad)
        )
    )


def model_power_spectrum(
    size: int,
    pixel_size_a: float,
    optics: CtfOptics,
    defocus_u_um: float,
    defocus_v_um: float,
    angle_deg: float,
) -> NDArray[np.float32]:
    """A noise-free centred CTF² spectrum on a falling background (for tests and examples)."""
    k, theta = centred_frequencies(size, pixel_size_a)
    mean = 0.5 * (defocus_u_um + defocus_v_um)
    half = 0.5 * (defocus_u_um - defocus_v_um)
    a = math.radians(angle_deg)
    dz = astigmatic_underfocus_a(theta, mean, half * math.cos(2 * a), half * math.sin(2 * a))
    ctf2 = np.sin(chi_map_rad(k, dz, optics) + optics.amplitude_phase_rad) ** 2
    background = 1.0 / (1.0 + (k * 40.0) ** 2)
    return (background * (0.2 + ctf2)).astype(np.float32)


def tile_power_spectra(
    image: NDArray[np.floating], tile_px: int, overlap: float = 0.5
) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
    """Centred power spectra of overlapping tapered tiles, and the tiles' centres (x, y) in px."""
    data = np.asarray(image, np.float32)
    ny, nx = data.shape
    tile = min(tile_px, ny, nx) // 2 * 2
    step = max(1, int(tile * (1 - overlap)))
    window = taper_mask((tile, tile), max(4, tile // 8))
    starts_y = list(range(0, ny - tile + 1, step))
    starts_x = list(range(0, nx - tile + 1, step))
    tiles = np.stack([data[y : y + tile, x : x + tile] for y in starts_y for x in starts_x])
    tiles = (tiles - tiles.mean(axis=(1, 2), keepdims=True)) * window
    spectra = np.abs(sfft.fft2(tiles, axes=(1, 2))) ** 2
    centres = np.array([(x + tile / 2, y + tile / 2) for y in starts_y for x in starts_x])
    return np.fft.fftshift(spectra, axes=(1, 2)).astype(np.float32), centres


@dataclass
class PreparedSpectrum:
    """A spectrum ready for fitting: the band's pixels and their normalised oscillation.

    Attributes
    ----------
    k, theta, data
        |k| (1/Å), azimuth (rad) and normalised oscillation of the band pixels.
    k_profile, profile
        The rotational average of ``data`` (for 1D searches).
    mask
        Where the band pixels sit in the 2D spectrum.
    """

    k: FloatArray
    theta: FloatArray
    data: FloatArray
    k_profile: FloatArray
    profile: FloatArray
    mask: NDArray[np.bool_]


def prepare_spectrum(
    spectrum: NDArray[np.floating],
    pixel_size_a: float,
    k_min_a_inv: float,
    k_max_a_inv: float,
    *,
    is_amplitude: bool = False,
) -> PreparedSpectrum:
    """Background-normalised Thon-ring oscillation in the fit band of a centred spectrum."""
    data = np.asarray(spectrum, np.float64)
    amplitude = data if is_amplitude else np.sqrt(np.maximum(data, 0.0))
    size = amplitude.shape[0]
    k, theta = centred_frequencies(size, pixel_size_a)
    nyquist = 0.5 / pixel_size_a
    k_max = min(k_max_a_inv, 0.95 * nyquist)
    band = (k >= k_min_a_inv) & (k <= k_max) & np.isfinite(amplitude)
    if band.sum() < 200:
        raise DefocusFitError("too few frequencies in the fit band for a CTF fit")
    n_bins = max(16, size // 2)
    edges = np.linspace(0.0, nyquist, n_bins + 1)
    index = np.clip(np.digitize(k, edges) - 1, 0, n_bins - 1)
    log_a = np.log(np.maximum(amplitude, 1e-30))
    sums = np.bincount(index[band], weights=log_a[band], minlength=n_bins)
    counts = np.bincount(index[band], minlength=n_bins)
    centres = 0.5 * (edges[:-1] + edges[1:])
    valid = counts > 0
    x = (centres[valid] - k_min_a_inv) / (k_max - k_min_a_inv) * 2 - 1
    coefficients = np.polynomial.chebyshev.chebfit(x, sums[valid] / counts[valid], 5)
    xb = (k[band] - k_min_a_inv) / (k_max - k_min_a_inv) * 2 - 1
    ratio = amplitude[band] / np.exp(np.polynomial.chebyshev.chebval(xb, coefficients)) - 1.0
    # Equalise the ring amplitude, which the envelopes damp towards high frequency.
    sq = np.bincount(index[band], weights=ratio * ratio, minlength=n_bins)
    rms = np.sqrt(
        np.convolve(sq, np.ones(9), "same") / np.maximum(np.convolve(counts, np.ones(9), "same"), 1)
    )
    normalised = ratio / np.maximum(rms[index[band]], 1e-12)
    profile_sum = np.bincount(index[band], weights=normalised, minlength=n_bins)
    profile = np.where(counts > 0, profile_sum / np.maximum(counts, 1), 0.0)
    return PreparedSpectrum(k[band], theta[band], normalised, centres[valid], profile[valid], band)


def _correlation(model: FloatArray, data: FloatArray) -> float:
    m = model - model.mean()
    d = data - data.mean()
    denom = float(np.sqrt(np.dot(m, m) * np.dot(d, d)))
    return float(np.dot(m, d) / denom) if denom > 0 else 0.0


def _model(k: FloatArray, underfocus_a: FloatArray | float, optics: CtfOptics) -> FloatArray:
    return -np.cos(2.0 * (chi_map_rad(k, underfocus_a, optics) + optics.amplitude_phase_rad))


def search_defocus_1d(
    prepared: PreparedSpectrum, optics: CtfOptics, low_um: float, high_um: float
) -> tuple[float, float]:
    """Best mean defocus (µm) and its score on the rotational average, by exhaustive search."""
    k = prepared.k_profile
    lam = optics.wavelength_a
    step_um = max(0.002, 1.0 / (8.0 * lam * float(k.max()) ** 2) * 1e-4)
    grid = np.arange(low_um, high_um + step_um, step_um)
    scores = np.array([_correlation(_model(k, -1e4 * d, optics), prepared.profile) for d in grid])
    best = int(np.argmax(scores))
    return float(grid[best]), float(scores[best])


class _AstigmaticModel:
    """Fast evaluation of the correlation with an astigmatic model on the band pixels.

    χ = π λ k² Δz(θ) − ½ π Cs λ³ k⁴ with Δz(θ) = −10⁴ (mean + ax cos 2θ + ay sin 2θ) is linear
    in (mean, ax, ay), so three precomputed maps and one cosine per pixel suffice.
    """

    def __init__(self, prepared: PreparedSpectrum, optics: CtfOptics) -> None:
        lam = optics.wavelength_a
        k2 = prepared.k * prepared.k
        factor = -1e4 * np.pi * lam
        self._k2 = (factor * k2).astype(np.float32)
        self._k2c = (factor * k2 * np.cos(2 * prepared.theta)).astype(np.float32)
        self._k2s = (factor * k2 * np.sin(2 * prepared.theta)).astype(np.float32)
        constant = -0.5 * np.pi * optics.cs_mm * 1e7 * lam**3 * k2 * k2 + optics.amplitude_phase_rad
        self._constant = (2.0 * constant).astype(np.float32)
        data = prepared.data - prepared.data.mean()
        self._data = (data / max(float(np.linalg.norm(data)), 1e-30)).astype(np.float32)

    def score(self, mean_um: float, ax_um: float, ay_um: float) -> float:
        """Normalised correlation of the data with −cos 2(χ + arcsin A)."""
        phase = self._k2 * np.float32(2 * mean_um)
        phase += self._k2c * np.float32(2 * ax_um)
        phase += self._k2s * np.float32(2 * ay_um)
        phase += self._constant
        model = np.cos(phase)
        model -= model.mean()
        norm = float(np.linalg.norm(model))
        return -float(np.dot(model, self._data)) / norm if norm > 0 else 0.0


def fit_ctf_spectrum(
    spectrum: NDArray[np.floating],
    pixel_size_a: float,
    optics: CtfOptics,
    *,
    defocus_range_um: tuple[float, float] = (-10.0, -0.3),
    k_min_a_inv: float = 1 / 40.0,
    k_max_a_inv: float = 1 / 5.0,
    max_astigmatism_um: float = 0.5,
    is_amplitude: bool = False,
    min_score: float = 0.02,
) -> CtfFit:
    """Fit defocus U/V and the astigmatism angle to a centred power (or amplitude) spectrum.

    Parameters
    ----------
    spectrum
        Square, centred (zero frequency at size/2) power spectrum, or amplitude spectrum with
        ``is_amplitude``.
    pixel_size_a
        Pixel size the spectrum's Nyquist frequency corresponds to.
    optics
        Voltage, Cs and amplitude contrast.
    defocus_range_um
        Bounds of the mean defocus (µm, negative = underfocus).
    k_min_a_inv, k_max_a_inv
        Fit band (1/Å).
    max_astigmatism_um
        Astigmatism |U − V| beyond which the fit is penalised.
    min_score
        Below this correlation the fit is refused with :class:`DefocusFitError`.
    """
    prepared = prepare_spectrum(
        spectrum, pixel_size_a, k_min_a_inv, k_max_a_inv, is_amplitude=is_amplitude
    )
    low, high = sorted(defocus_range_um)
    start, _ = search_defocus_1d(prepared, optics, low, high)
    model = _AstigmaticModel(prepared, optics)

    def cost(params: NDArray[np.float64]) -> float:
        mean, ax, ay = (float(v) for v in params)
        score = model.score(mean, ax, ay)
        astig = 2.0 * math.hypot(ax, ay)
        penalty = max(0.0, astig - max_astigmatism_um) ** 2 * 10.0
        outside = max(0.0, low - mean, mean - high) * 10.0
        return -score + penalty + outside

    best = None
    for direction in (0.0, 0.25 * math.pi):
        x0 = np.array([start, 0.02 * math.cos(direction), 0.02 * math.sin(direction)])
        result = minimize(
            cost,
            x0,
            method="Nelder-Mead",
            options={"xatol": 2e-4, "fatol": 1e-6, "initial_simplex": _simplex(x0), "maxiter": 300},
        )
        if best is None or result.fun < best.fun:
            best = result
    assert best is not None
    mean, ax, ay = (float(v) for v in best.x)
    score = -float(best.fun)
    if score < min_score:
        raise DefocusFitError(
            f"the Thon rings are too weak for a CTF fit (correlation {score:.3f})"
        )
    half = math.hypot(ax, ay)
    angle = 0.5 * math.degrees(math.atan2(ay, ax))
    # U is the more underfocused direction: the one where the (negative) defocus is lowest.
    u, v = mean - half, mean + half
    angle = angle + 90.0
    angle = (angle + 90.0) % 180.0 - 90.0
    if angle <= -90.0:
        angle += 180.0
    resolution = fit_resolution_a(prepared, optics, mean, ax, ay)
    return CtfFit(u, v, angle, score, resolution)


def _simplex(x0: NDArray[np.float64]) -> NDArray[np.float64]:
    steps = np.array([0.05, 0.03, 0.03])
    return np.vstack([x0, *(x0 + np.diag(steps)[i] for i in range(3))])


def fit_resolution_a(
    prepared: PreparedSpectrum,
    optics: CtfOptics,
    mean_um: float,
    ax_um: float,
    ay_um: float,
    z_threshold: float = 3.0,
) -> float:
    """Finest detail (Å) up to which the Thon rings match the fit significantly.

    Pixels are grouped by Thon ring (one period of the fitted phase 2χ); each ring's
    correlation with the model, times the square root of its pixel count, is a z-score that
    noise alone keeps near 0 ± 1. Averaged over three neighbouring rings, the last ring above
    ``z_threshold`` before two failures in a row sets the resolution.
    """
    k, theta, data = prepared.k, prepared.theta, prepared.data
    dz = -1e4 * (mean_um + ax_um * np.cos(2 * theta) + ay_um * np.sin(2 * theta))
    chi = chi_map_rad(k, dz, optics)
    ring = np.floor((chi + optics.amplitude_phase_rad) / math.pi).astype(int)
    model = _model(k, dz, optics)
    numbers = list(range(max(int(ring.min()), 0), int(ring.max()) + 1))
    scores, edges = [], []
    for number in numbers:
        inside = ring == number
        if inside.sum() < 20:
            continue
        scores.append(_correlation(model[inside], data[inside]) * math.sqrt(float(inside.sum())))
        edges.append(float(k[inside].max()))
    if not scores:
        return 1.0 / max(float(k.max()), 1e-6)
    z = np.convolve(np.asarray(scores), np.ones(3) / math.sqrt(3.0), mode="same")
    last_good = float(k.min())
    misses = 0
    for value, edge in zip(z, edges, strict=True):
        if value >= z_threshold:
            last_good = edge
            misses = 0
        else:
            misses += 1
            if misses >= 2:
                break
    return 1.0 / max(last_good, 1e-6)
