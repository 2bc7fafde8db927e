"""Targets chosen by hand: specimen coordinates, image shifts, a Navigator point group, or
fixed shifts relative to target 1 (pacetomo.md §6, "Alternatives").

Specimen shifts are relative to the first target. Stage and specimen coordinates are related
by ``stage_to_specimen`` (identity on the Microscope protocol, where a stage move to (X, Y)
brings specimen point (X, Y) onto the optic axis at 0°).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from tomopilot.targeting.errors import TargetingError
from tomopilot.targeting.nav_items import NavItem
from tomopilot.targeting.targets import Target, TargetSet

Point = tuple[float, float]


def targets_from_specimen_points(points_um: Sequence[Point]) -> TargetSet:
    """Targets at specimen coordinates (µm); the first becomes target 1."""
    if not points_um:
        raise TargetingError("give at least one point")
    x0, y0 = points_um[0]
    return TargetSet(
        targets=[Target(ss_x_um=float(x - x0), ss_y_um=float(y - y0)) for x, y in points_um]
    )


def targets_from_shifts(shifts_um: Sequence[Point], *, include_origin: bool = True) -> TargetSet:
    """Fixed shifts relative to target 1; with ``include_origin`` target 1 is added at (0, 0)."""
    points = [(0.0, 0.0), *shifts_um] if include_origin else list(shifts_um)
    return TargetSet(targets=[Target(ss_x_um=float(x), ss_y_um=float(y)) for x, y in points])


def targets_from_image_shifts(
    image_shifts: Sequence[Point], *, specimen_to_is: NDArray[np.float64] | None = None
) -> TargetSet:
    """Targets at image-shift settings (IS units, or specimen µm with the identity matrix).

    The specimen shift of target i is M⁻¹ (ISᵢ − IS₁), M = ``specimen_to_is``.
    """
    if not image_shifts:
        raise TargetingError("give at least one image shift")
    matrix = np.eye(2) if specimen_to_is is None else np.asarray(specimen_to_is, np.float64)
    origin = np.asarray(image_shifts[0], np.float64)
    targets = []
    for shift in image_shifts:
        ss = np.linalg.solve(matrix, np.asarray(shift, np.float64) - origin)
        targets.append(Target(ss_x_um=float(ss[0]), ss_y_um=float(ss[1])))
    return TargetSet(targets=targets)


def targets_from_nav_points(
    items: Sequence[NavItem], *, stage_to_specimen: NDArray[np.float64] | None = None
) -> TargetSet:
    """Targets at Navigator points (a point group); the first point becomes target 1.

    Each target keeps its stage position (``stageX``/``stageY``) and gets the specimen shift
    ``stage_to_specimen`` · (stageᵢ − stage₁).
    """
    if not items:
        raise TargetingError("the point group is empty")
    matrix = np.eye(2) if stage_to_specimen is None else np.asarray(stage_to_specimen)
    x0, y0, _ = items[0].stage_xyz_um
    targets = []
    for item in items:
        x, y, _ = item.stage_xyz_um
        ss = matrix @ np.array([x - x0, y - y0])
        targets.append(
            Target(ss_x_um=float(ss[0]), ss_y_um=float(ss[1]), stage_x_um=x, stage_y_um=y)
        )
    return TargetSet(targets=targets)
