"""Tilt-aware CTF fit: defocus varies linearly across a tilted specimen.

On a specimen tilted by θ the defocus changes by tan θ per unit distance perpendicular to the tilt
axis, so the Thon rings of a large image are smeared. As in ctfplotter and CTFFIND5, the image is
cut into overlapping tiles whose defocus is modelled as

    d(tile) = d₀ + g · (r_tile · n(ψ)) · pixel,

with d₀ the defocus at the image centre, g the gradient (tan θ) and n(ψ) the unit vector of the
steepest change. (d₀, g, ψ) are found from the tiles' rotationally averaged ring profiles: a scan
of ψ at the nominal gradient, then a simplex refinement of all three. Each tile's spectrum is
then rescaled radially so that its rings fall where they would at d₀, the rescaled spectra are
summed, and the astigmatic fit of :mod:`~tomopilot.imaging.fit_ctf` runs on the sum. The
direction ψ is measured from the data, so no tilt-axis or handedness convention is assumed; the
nominal tilt only sets the starting gradient.

Examples
--------
See ``tests/preprocessing/test_ctf.py`` for recoveries on tilted twin images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import map_coordinates
from scipy.optimize import minimize

from tomopilot.imaging.ctf import CtfOptics
from tomopilot.imaging.errors import DefocusFitError
from tomopilot.imaging.fit_ctf import (
    CtfFit,
    centred_frequencies,
    fit_ctf_spectrum,
    prepare_spectrum,
    tile_power_spectra,
)


@dataclass(frozen=True)
class TiltedCtfFit:
    """A tilt-aware fit: the astigmatic fit at the image centre and the defocus gradient.

    Attributes
    ----------
    fit
        CTF at the image centre, fitted on the tilt-corrected spectrum.
    gradient
        Defocus change per unit distance (tan of the specimen tilt).
    direction_deg
        Direction of increasing defocus value (less underfocus), counter-clockwise from x.
    """

    fit: CtfFit
    gradient: float
    direction_deg: float

    @property
    def specimen_tilt_deg(self) -> float:
        """The specimen tilt the gradient corresponds to."""
        return math.degrees(math.atan(self.gradient))

    def defocus_at_px(
        self,
        x_px: NDArray[np.floating],
        y_px: NDArray[np.floating],
        shape: tuple[int, int],
        pixel_size_a: float,
    ) -> NDArray[np.float64]:
        """Mean defocus (µm) at image positions, from the centre defocus and the gradient."""
        h, w = shape
        psi = math.radians(self.direction_deg)
        along = (np.asarray(x_px) - w / 2) * math.cos(psi) + (np.asarray(y_px) - h / 2) * math.sin(
            psi
        )
        return np.asarray(self.fit.defocus_um + self.gradient * along * pixel_size_a * 1e-4)


def _offsets_um(
    centres: NDArray[np.float64], shape: tuple[int, int], pixel_size_a: float, psi_rad: float
) -> NDArray[np.float64]:
    h, w = shape
    along = (centres[:, 0] - w / 2) * math.cos(psi_rad) + (centres[:, 1] - h / 2) * math.sin(
        psi_rad
    )
    return np.asarray(along * pixel_size_a * 1e-4)


def _joint_score(
    d0_um: float,
    gradient: float,
    k: NDArray[np.float64],
    profiles: NDArray[np.float64],
    offsets: NDArray[np.float64],
    optics: CtfOptics,
) -> float:
    lam = optics.wavelength_a
    defocus = d0_um + gradient * offsets
    dz = -1e4 * defocus[:, None]
    k2 = (k * k)[None, :]
    chi = np.pi * lam * dz * k2 - 0.5 * np.pi * optics.cs_mm * 1e7 * lam**3 * k2 * k2
    model = -np.cos(2.0 * (chi + optics.amplitude_phase_rad))
    m = model - model.mean(axis=1, keepdims=True)
    p = profiles - profiles.mean(axis=1, keepdims=True)
    denom = float(np.sqrt(np.sum(m * m) * np.sum(p * p)))
    return float(np.sum(m * p) / denom) if denom > 0 else 0.0


def _scan_scores(
    grid: NDArray[np.float64],
    gradient: float,
    offsets: NDArray[np.float64],
    k: NDArray[np.float64],
    data: NDArray[np.float64],
    optics: CtfOptics,
) -> NDArray[np.float64]:
    """Joint ring correlation of every tile profile for each centre defocus of ``grid``."""
    lam = optics.wavelength_a
    k2 = (k * k)[None, None, :]
    cs_term = 0.5 * np.pi * optics.cs_mm * 1e7 * lam**3 * k2 * k2
    defocus = grid[:, None] + gradient * offsets[None, :]  # (d, tiles)
    chi = -1e4 * np.pi * lam * defocus[:, :, None] * k2 - cs_term
    model = np.cos(2.0 * (chi + optics.amplitude_phase_rad)).astype(np.float32)
    model -= model.mean(axis=2, keepdims=True)
    numerator = -np.einsum("dtk,tk->d", model, data.astype(np.float32))
    denominator = np.sqrt(np.einsum("dtk,dtk->d", model, model)) * float(np.linalg.norm(data))
    return np.asarray(numerator / np.maximum(denominator, 1e-30), np.float64)


def _scan(
    k: NDArray[np.float64],
    profiles: NDArray[np.float64],
    centres: NDArray[np.float64],
    shape: tuple[int, int],
    pixel_size_a: float,
    optics: CtfOptics,
    defocus_range_um: tuple[float, float],
    tilt_deg: float,
    n_directions: int,
) -> tuple[float, float, float, float]:
    """Search (centre defocus, gradient, direction) on the tiles' ring profiles.

    A coarse pass uses the lower half of the frequency band (wider rings allow a coarser
    defocus grid), then the three best candidates are refined on the full band. The gradient is
    tried at the nominal tilt and ±15° around it (lamellae add their milling angle). Returns
    (score, defocus, gradient, direction in rad).
    """
    low, high = defocus_range_um
    lam = optics.wavelength_a
    data = profiles - profiles.mean(axis=1, keepdims=True)
    half = k <= 0.5 * (float(k.min()) + float(k.max()))
    coarse_step = max(0.01, 1.0 / (8.0 * lam * float(k[half].max()) ** 2) * 1e-4)
    fine_step = max(0.005, 1.0 / (8.0 * lam * float(k.max()) ** 2) * 1e-4)
    coarse_grid = np.arange(low, high + coarse_step, coarse_step)
    angles = [abs(tilt_deg) + delta for delta in (-15.0, 0.0, 15.0)]
    gradients = [math.tan(math.radians(a)) for a in angles if 0.0 <= a < 80.0]
    candidates: list[tuple[float, float, float, float]] = []
    for psi in np.linspace(0.0, 2 * math.pi, n_directions, endpoint=False):
        offsets = _offsets_um(centres, shape, pixel_size_a, float(psi))
        for gradient in gradients:
            scores = _scan_scores(coarse_grid, gradient, offsets, k[half], data[:, half], optics)
            index = int(np.argmax(scores))
            candidates.append((float(scores[index]), float(coarse_grid[index]), gradient, psi))
    candidates.sort(reverse=True)
    best = (-2.0, low, gradients[0], 0.0)
    for _, d, gradient, psi in candidates[:3]:
        offsets = _offsets_um(centres, shape, pixel_size_a, float(psi))
        grid = np.arange(d - coarse_step, d + coarse_step + fine_step, fine_step)
        scores = _scan_scores(grid, gradient, offsets, k, data, optics)
        index = int(np.argmax(scores))
        if scores[index] > best[0]:
            best = (float(scores[index]), float(grid[index]), gradient, float(psi))
    return best


def _rescale_tile(
    spectrum: NDArray[np.float32],
    pixel_size_a: float,
    optics: CtfOptics,
    from_um: float,
    to_um: float,
) -> NDArray[np.float32]:
    """Resample a centred tile spectrum so that its rings at ``from_um`` sit as at ``to_um``."""
    size = spectrum.shape[0]
    k, _ = centred_frequencies(size, pixel_size_a)
    lam = optics.wavelength_a
    cs = optics.cs_mm * 1e7
    target_dz, source_dz = -1e4 * to_um, -1e4 * from_um
    chi = np.pi * lam * target_dz * k * k - 0.5 * np.pi * cs * lam**3 * k**4
    a = 0.5 * np.pi * cs * lam**3
    b = np.pi * lam * source_dz
    disc = np.maximum(b * b - 4 * a * chi, 0.0)
    u = (b - np.sqrt(disc)) / (2 * a)  # k'² of the same phase at the source defocus
    scale = np.where(k > 0, np.sqrt(np.maximum(u, 0.0)) / np.maximum(k, 1e-12), 1.0)
    centre = size // 2
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    coords = np.stack([centre + (yy - centre) * scale, centre + (xx - centre) * scale])
    return np.asarray(map_coordinates(spectrum, coords, order=1, mode="nearest"), np.float32)


def fit_ctf_tilted(
    image: NDArray[np.floating],
    pixel_size_a: float,
    optics: CtfOptics,
    *,
    tilt_deg: float,
    defocus_range_um: tuple[float, float] = (-10.0, -0.3),
    tile_px: int = 512,
    k_min_a_inv: float = 1 / 40.0,
    k_max_a_inv: float = 1 / 5.0,
    max_astigmatism_um: float = 0.5,
    n_directions: int = 24,
) -> TiltedCtfFit:
    """Fit the CTF at the centre of a tilted image (see the module docstring).

    Parameters
    ----------
    image
        The (motion-corrected) image.
    pixel_size_a
        Its pixel size (Å).
    optics
        Voltage, Cs, amplitude contrast.
    tilt_deg
        Nominal stage tilt; sets the starting gradient tan θ.
    defocus_range_um
        Bounds of the centre defocus.
    tile_px
        Tile size of the local spectra.
    n_directions
        Directions ψ scanned before refinement.
    """
    spectra, centres = tile_power_spectra(image, tile_px)
    shape = (int(image.shape[0]), int(image.shape[1]))
    low, high = sorted(defocus_range_um)

    def fit(spectrum: NDArray[np.floating], search: tuple[float, float], minimum: float) -> CtfFit:
        return fit_ctf_spectrum(
            spectrum,
            pixel_size_a,
            optics,
            defocus_range_um=search,
            k_min_a_inv=k_min_a_inv,
            k_max_a_inv=k_max_a_inv,
            max_astigmatism_um=max_astigmatism_um,
            min_score=minimum,
        )

    gradient0 = abs(math.tan(math.radians(tilt_deg)))
    if gradient0 < math.tan(math.radians(3.0)) or len(spectra) < 4:
        plain = fit(spectra.mean(axis=0), (low, high), 0.02)
        return TiltedCtfFit(plain, 0.0, 0.0)
    prepared = [prepare_spectrum(s, pixel_size_a, k_min_a_inv, k_max_a_inv) for s in spectra]
    k = prepared[0].k_profile
    profiles = np.stack([p.profile for p in prepared])
    best = _scan(
        k, profiles, centres, shape, pixel_size_a, optics, (low, high), tilt_deg, n_directions
    )

    def cost(params: NDArray[np.float64]) -> float:
        d, g, psi = (float(v) for v in params)
        offsets = _offsets_um(centres, shape, pixel_size_a, psi)
        return -_joint_score(d, abs(g), k, profiles, offsets, optics)

    start = np.array(best[1:])
    simplex = start + np.vstack([np.zeros(3), np.diag([0.03, 0.1, 0.15])])
    result = minimize(
        cost,
        start,
        method="Nelder-Mead",
        options={"initial_simplex": simplex, "xatol": 1e-4, "fatol": 1e-7},
    )
    d0, gradient, psi = float(result.x[0]), abs(float(result.x[1])), float(result.x[2])
    offsets = _offsets_um(centres, shape, pixel_size_a, psi)
    corrected = np.zeros_like(spectra[0], dtype=np.float64)
    for spectrum, offset in zip(spectra, offsets, strict=True):
        corrected += _rescale_tile(spectrum, pixel_size_a, optics, d0 + gradient * offset, d0)
    try:
        centre_fit = fit(corrected, (max(low, d0 - 0.25), min(high, d0 + 0.25)), 0.0)
    except DefocusFitError:
        score = -float(result.fun)
        centre_fit = CtfFit(d0, d0, 0.0, score, 1.0 / k_min_a_inv)
    direction = math.degrees(psi) % 360.0
    return TiltedCtfFit(centre_fit, gradient, direction)
