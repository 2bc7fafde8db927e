"""Fill a Navigator polygon with targets whose beams do not overlap at maxTilt.

The pattern (pacetomo.md §6) has spacing d = (2R, 2R / cos θmax), R the beam radius and θmax
the highest tilt, and angle φ = atan(tan(patternRot) · cos θmax); its vectors are
A = (cos φ, sin φ) ⊙ d and B = (−sin φ, cos φ) ⊙ d. Squeezing y by cos θmax turns it into a
square lattice of pitch 2R, so neighbouring footprints at θmax just touch. A spiral of
``size`` rings around the polygon's centre is generated and the points outside the polygon are
dropped; target 1 is the pattern point nearest the centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tomopilot.geometry.footprints import points_in_polygon
from tomopilot.targeting.errors import TargetingError
from tomopilot.targeting.spiral import pattern_offsets_um
from tomopilot.targeting.targets import Target, TargetSet

DEFAULT_BEAM_DIAMETER_UM = 1.0  # PACEtomo's fallback beam radius is 0.5 µm


@dataclass(frozen=True)
class PolygonFill:
    """The targets (target 1 first, spiral order) and where the pattern sits."""

    targets: TargetSet
    stage_origin_um: tuple[float, float]
    vec_a_um: tuple[float, float]
    vec_b_um: tuple[float, float]


def fill_vectors_um(
    beam_diameter_um: float, max_tilt_deg: float, pattern_rot_deg: float = 0.0
) -> tuple[tuple[float, float], tuple[float, float]]:
    """The pattern vectors A, B of a polygon fill (module docstring)."""
    if beam_diameter_um <= 0:
        raise TargetingError(f"the beam diameter must be positive, not {beam_diameter_um}")
    if not 0 <= abs(max_tilt_deg) < 89:
        raise TargetingError(f"maxTilt must be within ±89°, not {max_tilt_deg}")
    cos_t = math.cos(math.radians(max_tilt_deg))
    d = np.array([beam_diameter_um, beam_diameter_um / cos_t])
    phi = math.atan(math.tan(math.radians(pattern_rot_deg)) * cos_t)
    a = np.array([math.cos(phi), math.sin(phi)]) * d
    b = np.array([-math.sin(phi), math.cos(phi)]) * d
    return (float(a[0]), float(a[1])), (float(b[0]), float(b[1]))


def fill_polygon(
    polygon_stage_um: NDArray[np.floating],
    *,
    beam_diameter_um: float = DEFAULT_BEAM_DIAMETER_UM,
    max_tilt_deg: float = 60.0,
    pattern_rot_deg: float = 0.0,
    size: int = 10,
    centre_stage_um: tuple[float, float] | None = None,
    stage_to_specimen: NDArray[np.float64] | None = None,
) -> PolygonFill:
    """Targets filling a polygon (stage µm) without beam overlap at ``max_tilt_deg``.

    Raises
    ------
    ValueError
        If no pattern point lies inside the polygon.
    """
    poly = np.asarray(polygon_stage_um, np.float64).reshape(-1, 2)
    if len(poly) < 3:
        raise TargetingError("a polygon needs at least three vertices")
    matrix = np.eye(2) if stage_to_specimen is None else np.asarray(stage_to_specimen)
    to_stage = np.linalg.inv(matrix)
    if centre_stage_um is None:
        unique = poly[:-1] if np.allclose(poly[0], poly[-1]) else poly
        centre = unique.mean(axis=0)
    else:
        centre = np.asarray(centre_stage_um, np.float64)
    vec_a, vec_b = fill_vectors_um(beam_diameter_um, max_tilt_deg, pattern_rot_deg)
    offsets = pattern_offsets_um(vec_a, vec_b, size)
    stage = centre + offsets @ to_stage.T
    inside = points_in_polygon(stage, poly)
    if not inside.any():
        raise TargetingError(
            "no pattern point lies inside the polygon (is it smaller than a beam?)"
        )
    kept = offsets[inside]
    first = int(np.argmin(np.linalg.norm(kept, axis=1)))
    order = [first] + [i for i in range(len(kept)) if i != first]
    kept = kept[order] - kept[first]
    origin = centre + offsets[inside][first] @ to_stage.T
    targets = TargetSet(
        targets=[Target(ss_x_um=float(x), ss_y_um=float(y)) for x, y in kept],
        settings={"beamDiameter": beam_diameter_um, "maxTilt": max_tilt_deg},
    )
    return PolygonFill(targets, (float(origin[0]), float(origin[1])), vec_a, vec_b)
