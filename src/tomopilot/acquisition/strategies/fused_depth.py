"""``fused``'s depth learning: each target's depth from its Records.

A target's depth z (relative to target 1, which the autofocus puts at F0) is predicted by
turning it about the tilt axis (``fused_axis``: the axis's place from target 1's lateral track,
each other target's depth relative to target 1 from its lateral offset from it). Its Record's
Thon rings, where they are inside Nyquist, measure it: the fitted defocus is focus + z. The
common part of these measurements (``TiltRound.depth``) corrects the focus of the targets still
to be imaged at the same tilt. A fit below its score, or more than ``CTF_MAX_INNOVATION_UM``
from the prediction, is ignored (the rings were misread).
"""

from __future__ import annotations

from tomopilot.acquisition.record_ctf import record_defocus_um
from tomopilot.instrument.types import Image

PRIOR_DEPTH_SIGMA_UM = 0.5
CTF_MAX_INNOVATION_UM = 1.0
CTF_NOISE_UM = 0.15


def measure_depth_um(image: Image, focus_um: float) -> float | None:
    """The depth a Record's Thon rings give (µm from the focus plane), or None (no fit)."""
    defocus = record_defocus_um(image, focus_um)
    return None if defocus is None else defocus - image.defocus_um


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
    "measure_depth_um",
]
