"""Defocus from the Thon rings of one image (rotationally averaged, no astigmatism).

The image's power spectrum is averaged over overlapping tiles and rings, a smooth background is
divided out, and the remaining oscillation is matched against CTF² = ½[1 − cos 2(χ + arcsin A)]
over a band of frequencies. A coarse grid over the defocus range is refined with a bounded scalar
search. This estimator is independent of the twin: it sees only pixels and the optics.

Examples
--------
See ``tests/imaging/test_estimate_defocus.py`` for a recovery on a simulated image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize_scalar

from tomopilot.imaging.ctf import CtfOptics, chi_rad
from tomopilot.imaging.errors import DefocusFitError
from tomopilot.imaging.fourier import power_spectrum, radial_average


@dataclass(frozen=True)
class DefocusFit:
    """Result of a defocus fit.

    Attributes
    ----------
    defocus_um
        Fitted defocus (negative = underfocus).
    score
        Normalised correlation between the measured and modelled ring pattern (−1…1).
    k_a_inv, oscillation
        The background-normalised radial power spectrum the fit used, for plots and checks.
    """

    defocus_um: float
    score: float
    k_a_inv: NDArray[np.float64]
    oscillation: NDArray[np.float64]


def radial_oscillation(
    image: NDArray[np.floating],
    pixel_size_a: float,
    *,
    tile_px: int = 512,
    k_min_a_inv: float = 1 / 60.0,
    k_max_a_inv: float | None = None,
    background_degree: int = 6,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The rotationally averaged power spectrum divided by its smooth background, minus one."""
    data = np.asarray(image, dtype=np.float32)
    tile = min(tile_px, *data.shape)
    tile -= tile % 2
    spectrum = power_spectrum(data, tile_px=tile)
    k, mean = radial_average(spectrum, (tile, tile), pixel_size_a, n_bins=tile)
    nyquist = 0.5 / pixel_size_a
    k_max = min(k_max_a_inv or 0.9 * nyquist, 0.9 * nyquist)
    band = (k >= k_min_a_inv) & (k <= k_max) & np.isfinite(mean) & (mean > 0)
    if band.sum() < 3 * background_degree:
        raise DefocusFitError("too few frequencies in the fitting band to estimate the defocus")
    kb, pb = k[band], mean[band]
    x = (kb - kb.min()) / (kb.max() - kb.min()) * 2 - 1
    log_p = np.log(pb)
    coeffs = np.polynomial.chebyshev.chebfit(x, log_p, background_degree)
    background = np.exp(np.polynomial.chebyshev.chebval(x, coeffs))
    oscillation = pb / background - 1.0
    # Equalise the ring amplitude, which the envelopes damp towards high frequency.
    window = max(5, len(kb) // 12)
    rms = np.sqrt(np.convolve(oscillation**2, np.ones(window) / window, mode="same"))
    oscillation = oscillation / np.maximum(rms, 1e-12)
    return kb, oscillation


def _score(
    defocus_um: float, k: NDArray[np.float64], osc: NDArray[np.float64], optics: CtfOptics
) -> float:
    model = -np.cos(2.0 * (chi_rad(k, optics, defocus_um) + optics.amplitude_phase_rad))
    model -= model.mean()
    denom = float(np.linalg.norm(model) * np.linalg.norm(osc - osc.mean()))
    return float(np.dot(model, osc - osc.mean()) / denom) if denom > 0 else 0.0


def estimate_defocus(
    image: NDArray[np.floating],
    pixel_size_a: float,
    optics: CtfOptics,
    *,
    defocus_range_um: tuple[float, float] = (-10.0, -0.3),
    tile_px: int = 512,
    k_min_a_inv: float = 1 / 40.0,
    k_max_a_inv: float | None = 1 / 5.0,
    min_score: float = 0.1,
) -> DefocusFit:
    """Estimate the defocus of an image from its Thon rings.

    Parameters
    ----------
    image
        A 2D image (counts), ideally ≥ 512 px on a side.
    pixel_size_a
        Pixel size on the specimen (Å).
    optics
        Voltage, Cs and amplitude contrast.
    defocus_range_um
        (most underfocused, least underfocused) bounds of the search, negative = underfocus.
    min_score
        Below this ring correlation the fit is refused with :class:`DefocusFitError`.
    """
    low, high = sorted(defocus_range_um)
    k, osc = radial_oscillation(
        image, pixel_size_a, tile_px=tile_px, k_min_a_inv=k_min_a_inv, k_max_a_inv=k_max_a_inv
    )
    # The ring period at the highest frequency sets how fine the grid must be.
    lam = optics.wavelength_a
    step_um = max(0.002, 0.25 / (np.pi * lam * k.max() ** 2 * 1e4))
    grid = np.arange(low, high + step_um, step_um)
    scores = np.array([_score(d, k, osc, optics) for d in grid])
    best = int(np.argmax(scores))
    lo = grid[max(best - 1, 0)]
    hi = grid[min(best + 1, len(grid) - 1)]
    result = minimize_scalar(
        lambda d: -_score(float(d), k, osc, optics),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-4},
    )
    defocus = float(result.x)
    score = -float(result.fun)
    if score < min_score:
        raise DefocusFitError(
            f"the Thon rings are too weak for a defocus fit (ring correlation {score:.2f})"
        )
    return DefocusFit(defocus_um=defocus, score=score, k_a_inv=k, oscillation=osc)
