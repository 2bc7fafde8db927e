"""The contrast transfer function of a weak-phase object.

Sign convention (DESIGN.md §3): ``defocus_um`` is negative for underfocus, as SerialEM reports
it. With Δz = −defocus (Å, positive underfocus) the phase aberration is

    χ(k) = π λ Δz k² − ½ π Cs λ³ k⁴,

and the CTF of an object with amplitude-contrast fraction A is

    CTF(k) = −[√(1 − A²) sin χ + A cos χ] · E(k),

with E the temporal- and spatial-coherence envelopes. Its zeros fall where χ + arcsin A = nπ.

Examples
--------
>>> optics = CtfOptics(voltage_kv=300, cs_mm=2.7, amplitude_contrast=0.1)
>>> k0 = ctf_zero_frequencies_a_inv(optics, defocus_um=-3.0, n_zeros=1)[0]
>>> round(1 / k0, 1)  # first zero at about 25 Å
24.7
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tomopilot.core.units import electron_wavelength_a


@dataclass(frozen=True)
class CtfOptics:
    """The microscope constants the CTF depends on.

    Attributes
    ----------
    voltage_kv, cs_mm, amplitude_contrast
        High tension, spherical aberration and amplitude-contrast fraction.
    cc_mm, energy_spread_ev
        Chromatic aberration and energy spread, for the temporal envelope.
    illumination_semiangle_mrad
        Beam convergence, for the spatial envelope.
    """

    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.1
    cc_mm: float = 2.7
    energy_spread_ev: float = 0.8
    illumination_semiangle_mrad: float = 0.01

    @property
    def wavelength_a(self) -> float:
        """Relativistic electron wavelength (Å)."""
        return electron_wavelength_a(self.voltage_kv)

    @property
    def amplitude_phase_rad(self) -> float:
        """The phase equivalent of the amplitude contrast, arcsin A."""
        return math.asin(self.amplitude_contrast)


def chi_rad(
    k_a_inv: NDArray[np.floating] | float, optics: CtfOptics, defocus_um: float
) -> NDArray[np.float64]:
    """Phase aberration χ(k) in radians (defocus negative = underfocus)."""
    k2 = np.square(np.asarray(k_a_inv, dtype=np.float64))
    lam = optics.wavelength_a
    dz_a = -defocus_um * 1e4
    cs_a = optics.cs_mm * 1e7
    return np.pi * lam * dz_a * k2 - 0.5 * np.pi * cs_a * lam**3 * k2 * k2


def envelope(
    k_a_inv: NDArray[np.floating] | float, optics: CtfOptics, defocus_um: float
) -> NDArray[np.float64]:
    """Temporal × spatial coherence envelope."""
    k = np.asarray(k_a_inv, dtype=np.float64)
    lam = optics.wavelength_a
    cc_a = optics.cc_mm * 1e7
    delta_a = cc_a * optics.energy_spread_ev / (optics.voltage_kv * 1e3)
    temporal = np.exp(-0.5 * (np.pi * lam * delta_a) ** 2 * k**4)
    alpha = optics.illumination_semiangle_mrad * 1e-3
    dz_a = -defocus_um * 1e4
    cs_a = optics.cs_mm * 1e7
    spatial = np.exp(-((np.pi * alpha / lam) ** 2) * (cs_a * lam**3 * k**3 - dz_a * lam * k) ** 2)
    return temporal * spatial


def ctf(
    k_a_inv: NDArray[np.floating] | float,
    optics: CtfOptics,
    defocus_um: float,
    *,
    with_envelope: bool = True,
) -> NDArray[np.float64]:
    """The CTF at spatial frequencies ``k_a_inv`` (1/Å)."""
    chi = chi_rad(k_a_inv, optics, defocus_um) + optics.amplitude_phase_rad
    value = -np.sin(chi)
    if with_envelope:
        value = value * envelope(k_a_inv, optics, defocus_um)
    return np.asarray(value, dtype=np.float64)


def ctf_zero_frequencies_a_inv(
    optics: CtfOptics, defocus_um: float, n_zeros: int, *, k_max_a_inv: float | None = None
) -> NDArray[np.float64]:
    """The first ``n_zeros`` spatial frequencies (1/Å) where the CTF vanishes, k > 0.

    Solves ½ π Cs λ³ k⁴ − π λ Δz k² + (nπ − arcsin A) = 0 for k², n = 1, 2, ...
    (underfocus only; the Cs term is kept exactly).
    """
    if defocus_um >= 0:
        raise ValueError("zeros are tabulated for underfocus (negative defocus) only")
    lam = optics.wavelength_a
    dz_a = -defocus_um * 1e4
    cs_a = optics.cs_mm * 1e7
    a = 0.5 * np.pi * cs_a * lam**3
    b = -np.pi * lam * dz_a
    zeros: list[float] = []
    n = 1
    while len(zeros) < n_zeros:
        c = n * np.pi - optics.amplitude_phase_rad
        disc = b * b - 4 * a * c
        if disc < 0:
            break
        k2 = (-b - math.sqrt(disc)) / (2 * a)
        k = math.sqrt(k2)
        if k_max_a_inv is not None and k > k_max_a_inv:
            break
        zeros.append(k)
        n += 1
    return np.asarray(zeros, dtype=np.float64)
