"""PACEtomo's rigid-rotation geometry model, shared by the strategies (pacetomo.md §1.2–1.4).

A target at distance n₀ from the tilt axis and depth z₀ (signed like a measured defocus) sits,
after a tilt θ, at y(θ) = n₀ cos θ − z₀ sin θ and z(θ) = n₀ sin θ + z₀ cos θ.
"""

from __future__ import annotations

import math


def initial_depth_um(x_um: float, y_um: float, pretilt_deg: float, rotation_deg: float) -> float:
    """z₀ of a target at (x, y) from target 1 on a plane of the given pretilt and rotation."""
    p = math.radians(pretilt_deg)
    r = math.radians(rotation_deg)
    return math.tan(p) * (y_um * math.cos(r) - x_um * math.sin(r))


def approach_scale(pretilt_deg: float, rotation_deg: float, start_tilt_deg: float) -> float:
    """σ = cos(p cos r + α₀) / cos(p cos r): foreshortening of y between 0° and α₀."""
    tilt = math.radians(pretilt_deg * math.cos(math.radians(rotation_deg)))
    return math.cos(tilt + math.radians(start_tilt_deg)) / math.cos(tilt)


def increments(
    n0_um: float, z0_um: float, tilt_deg: float, previous_deg: float
) -> tuple[float, float]:
    """(Δy, Δz) of the rigid rotation from ``previous_deg`` to ``tilt_deg``."""
    a = math.cos(math.radians(tilt_deg)) - math.cos(math.radians(previous_deg))
    b = math.sin(math.radians(tilt_deg)) - math.sin(math.radians(previous_deg))
    return n0_um * a - z0_um * b, z0_um * a + n0_um * b


def refit_depth(n0_um: float, points: list[tuple[float, float, float]], fallback: float) -> float:
    """Least-squares z₀ from (d, θ, θ_previous) displacement records with n₀ fixed.

    Minimises Σ (n₀ a_k − z₀ b_k − d_k)², so z₀ = Σ b_k (n₀ a_k − d_k) / Σ b_k².
    """
    num = 0.0
    den = 0.0
    for d, tilt, previous in points:
        a = math.cos(math.radians(tilt)) - math.cos(math.radians(previous))
        b = math.sin(math.radians(tilt)) - math.sin(math.radians(previous))
        num += b * (n0_um * a - d)
        den += b * b
    return num / den if den > 1e-12 else fallback
