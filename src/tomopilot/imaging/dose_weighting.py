"""Exposure (dose) weighting of movie frames after Grant & Grigorieff (2015, eLife 4:e06980).

Radiation damage fades high-resolution signal first. The critical exposure at spatial frequency k
(1/Å) is N_e(k) = a·k^b + c with a = 0.245, b = −1.665, c = 2.81 e⁻/Å² at 300 kV, and a frame
that was exposed to D e⁻/Å² at its end keeps exp(−D / (2 N_e)) of its amplitude. Frames are summed
with these weights and divided by the root of the summed squared weights, which keeps the noise
power flat. As RELION does, doses are divided by 0.8 at 200 kV and by 0.64 at 100 kV.

Examples
--------
>>> round(float(critical_exposure_e_a2(1 / 10.0)), 2)  # at 10 Å: about 14 e/Å²
14.14
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from tomopilot.imaging.errors import ImagingError
from tomopilot.imaging.fourier import frequency_grid

CRITICAL_A = 0.245
CRITICAL_B = -1.665
CRITICAL_C = 2.81
_VOLTAGE_FACTORS = {300: 1.0, 200: 0.8, 100: 0.64}


def voltage_dose_factor(voltage_kv: float) -> float:
    """Factor that divides the dose at this voltage (1 at 300 kV, 0.8 at 200, 0.64 at 100)."""
    for nominal, factor in _VOLTAGE_FACTORS.items():
        if abs(voltage_kv - nominal) < 1.0:
            return factor
    raise ImagingError(f"dose weighting is calibrated at 300, 200 and 100 kV, not {voltage_kv} kV")


def critical_exposure_e_a2(k_a_inv: NDArray[np.floating] | float) -> NDArray[np.float64]:
    """Critical exposure N_e(k) in e⁻/Å² at 300 kV."""
    k = np.maximum(np.asarray(k_a_inv, dtype=np.float64), 1e-6)
    return np.asarray(CRITICAL_A * k**CRITICAL_B + CRITICAL_C, dtype=np.float64)


def frame_end_doses_e_a2(
    n_frames: int, dose_per_frame_e_a2: float, pre_exposure_e_a2: float = 0.0
) -> NDArray[np.float64]:
    """Accumulated exposure at the end of each frame: pre-exposure + dose · (i + 1)."""
    return np.asarray(
        pre_exposure_e_a2 + dose_per_frame_e_a2 * (np.arange(n_frames) + 1.0), np.float64
    )


def dose_weight_half_life(
    shape: tuple[int, int], pixel_size_a: float, voltage_kv: float = 300.0
) -> NDArray[np.float32]:
    """The rfft2-layout factor q(k) = 1 / (2 N_e(k)) so that a frame's weight is exp(−D·q)."""
    k = frequency_grid(shape, pixel_size_a, real=True)
    critical = critical_exposure_e_a2(k) * voltage_dose_factor(voltage_kv)
    return (0.5 / critical).astype(np.float32)


def dose_weights(
    shape: tuple[int, int],
    pixel_size_a: float,
    doses_e_a2: NDArray[np.floating],
    voltage_kv: float = 300.0,
) -> NDArray[np.float32]:
    """Normalised weights (n, ny, nx//2 + 1): exp(−D_i q) / sqrt(Σ_j exp(−2 D_j q))."""
    q = dose_weight_half_life(shape, pixel_size_a, voltage_kv)
    doses = np.asarray(doses_e_a2, dtype=np.float32)
    raw = np.exp(-doses[:, None, None] * q[None])
    norm = np.sqrt(np.sum(raw * raw, axis=0))
    return np.asarray(raw / np.maximum(norm, 1e-30)[None], dtype=np.float32)
