"""Where beam rays meet the specimen, and what they pass through on the way.

For a lab point (x, y) the beam is the vertical line (x, y, s). In the specimen frame this line is
p(s) = p0 + s·d; it meets the specimen's mid-surface z = f(x, y) where a few Newton steps on
p_z(s) − f(p_x(s), p_y(s)) converge (one step for a plane). The lab height of the hit is s, so the
defocus there is ``focus − s``; the path through a layer of normal thickness t is t / |n·ẑ|.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tomopilot.instrument.twin.pose import StagePose
from tomopilot.instrument.twin.specimen.base import Specimen

FloatArray = NDArray[np.float64]


@dataclass
class RayHits:
    """Per lab point: the specimen hit (x, y, z), its lab height and the incidence cosine."""

    specimen_x_um: FloatArray
    specimen_y_um: FloatArray
    specimen_z_um: FloatArray
    lab_z_um: FloatArray
    cos_incidence: FloatArray


def trace_rays(
    specimen: Specimen,
    pose: StagePose,
    lab_x_um: FloatArray,
    lab_y_um: FloatArray,
    iterations: int = 3,
) -> RayHits:
    """Intersect vertical rays through lab (x, y) with the specimen mid-surface."""
    rt = pose.rotation.T
    base = np.stack([lab_x_um, lab_y_um, np.zeros_like(lab_x_um)], axis=-1) - pose.translation
    p0 = base @ rt.T  # p0 = Rᵀ((x, y, 0) − t)
    d = rt[:, 2]
    s = np.zeros(np.shape(lab_x_um))
    for _ in range(iterations):
        px = p0[..., 0] + s * d[0]
        py = p0[..., 1] + s * d[1]
        pz = p0[..., 2] + s * d[2]
        gx, gy = specimen.surface_slope(px, py)
        residual = specimen.surface_height_um(px, py) - pz
        denom = d[2] - gx * d[0] - gy * d[1]
        s = s + residual / np.where(np.abs(denom) < 1e-6, 1e-6, denom)
    px = p0[..., 0] + s * d[0]
    py = p0[..., 1] + s * d[1]
    pz = p0[..., 2] + s * d[2]
    gx, gy = specimen.surface_slope(px, py)
    norm = np.sqrt(gx**2 + gy**2 + 1.0)
    cos_inc = np.abs((-gx * d[0] - gy * d[1] + d[2]) / norm)
    return RayHits(px, py, pz, s, np.maximum(cos_inc, 0.05))
