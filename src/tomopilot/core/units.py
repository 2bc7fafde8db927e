"""Physical constants and unit helpers shared across layers.

Internal units (DESIGN.md §3): µm on the specimen and stage, Å for pixels and wavelengths,
degrees at API boundaries, seconds, e⁻/Å² for dose, kV for the high tension.

Examples
--------
>>> round(electron_wavelength_a(300.0), 5)
0.01969
"""

from __future__ import annotations

import math

PLANCK_J_S = 6.62607015e-34
ELECTRON_MASS_KG = 9.1093837015e-31
ELEMENTARY_CHARGE_C = 1.602176634e-19
SPEED_OF_LIGHT_M_S = 299792458.0

UM_PER_A = 1e-4
A_PER_UM = 1e4
NM_PER_UM = 1e3


def electron_wavelength_a(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Å for an accelerating voltage in kV.

    λ = h / sqrt(2 m e V (1 + e V / (2 m c²))).
    """
    if voltage_kv <= 0:
        raise ValueError(f"the accelerating voltage must be positive, got {voltage_kv} kV")
    volts = voltage_kv * 1e3
    energy_j = ELEMENTARY_CHARGE_C * volts
    momentum = math.sqrt(
        2.0
        * ELECTRON_MASS_KG
        * energy_j
        * (1.0 + energy_j / (2.0 * ELECTRON_MASS_KG * SPEED_OF_LIGHT_M_S**2))
    )
    return PLANCK_J_S / momentum * 1e10


def relativistic_interaction_constant_rad_per_v_a(voltage_kv: float) -> float:
    """Interaction constant σ (rad / (V·Å)) relating projected potential to phase."""
    volts = voltage_kv * 1e3
    rest_energy_ev = ELECTRON_MASS_KG * SPEED_OF_LIGHT_M_S**2 / ELEMENTARY_CHARGE_C
    wavelength = electron_wavelength_a(voltage_kv)
    return (
        2.0
        * math.pi
        / (wavelength * volts)
        * (rest_energy_ev + volts)
        / (2 * rest_energy_ev + volts)
    )
