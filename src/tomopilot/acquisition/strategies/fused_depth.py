"""``fused``'s depth learning: each target's depth from its Records.

Two measurements feed one Kalman estimate of a target's depth z (relative to target 1, which
the autofocus puts at F0):

- its lateral residual: what the rotation and the common step did not explain at a tilt step
  Δθ means a depth error −r / sin Δθ at the previous tilt;
- its Record's Thon rings: the fitted defocus is focus + z. The common part of these
  measurements (``TiltRound.depth``) corrects the focus of the targets still to be imaged at
  the same tilt. A fit below its score, or more than ``CTF_MAX_INNOVATION_UM`` from the
  prediction, is ignored (the rings were misread).
"""

from __future__ import annotations

import math

import numpy as np

from tomopilot.acquisition.record_ctf import record_defocus_um
from tomopilot.acquisition.strategies.fused_state import FusedBranch
from tomopilot.instrument.types import Image

PRIOR_DEPTH_SIGMA_UM = 0.5
CTF_MAX_INNOVATION_UM = 1.0
LATERAL_MAX_INDIVIDUAL_UM = 0.1
LATERAL_NOISE_UM = 0.01
CTF_NOISE_UM = 0.15


def measure_depth_um(image: Image, focus_um: float) -> float | None:
    """The depth a Record's Thon rings give (µm from the focus plane), or None (no fit)."""
    defocus = record_defocus_um(image, focus_um)
    return None if defocus is None else defocus - image.defocus_um


def lateral_depth_update(
    state: FusedBranch, tilt_deg: float, common_y_um: float, unexplained: np.ndarray
) -> None:
    """Turn the individual lateral residual into a depth correction (Kalman)."""
    individual = float(unexplained[1] - common_y_um)
    if abs(individual) > LATERAL_MAX_INDIVIDUAL_UM:
        return  # an alignment failure or a jump, not a depth error
    sin_step = math.sin(math.radians(tilt_deg - state.last_tilt_deg))
    if abs(sin_step) < 1e-3:
        return
    meas = -individual / sin_step  # depth error at the previous tilt
    meas_var = (LATERAL_NOISE_UM / sin_step) ** 2
    gain = state.z_var_um2 / (state.z_var_um2 + meas_var)
    state.z_um += gain * meas * math.cos(math.radians(tilt_deg - state.last_tilt_deg))
    state.z_var_um2 *= 1 - gain


def ctf_depth_update(
    depth_um: float, z_var_um2: float, innovation_um: float
) -> tuple[float, float]:
    """Depth and its variance after one CTF measurement's innovation (Kalman)."""
    gain = z_var_um2 / (z_var_um2 + CTF_NOISE_UM**2)
    return depth_um + gain * innovation_um, z_var_um2 * (1 - gain)


__all__ = [
    "CTF_MAX_INNOVATION_UM",
    "PRIOR_DEPTH_SIGMA_UM",
    "ctf_depth_update",
    "lateral_depth_update",
    "measure_depth_um",
]
