"""What the set-up learns about an area before its maps, journalled and re-applied on resume.

Two optional steps after the area is reached and target 1 realigned: ``refineVec`` (the hole
pattern's vectors, :mod:`~tomopilot.acquisition.setup.refine_vec`) and ``measureGeo`` (pretilt and
rotation, :mod:`~tomopilot.acquisition.setup.measure_geo`). Each result changes the run's settings
(and, for the pattern, the targets' shifts) and is returned as a journal record, so that a
resumed run uses the measured values, not the configured ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tomopilot.acquisition.plan.run_plan import RunPlan
from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.setup.measure_geo import measure_area_geometry
from tomopilot.acquisition.setup.reach_area import saved_view_image
from tomopilot.acquisition.setup.refine_vec import refine_pattern
from tomopilot.instrument.protocol import Microscope


def _vectors(s: AcquisitionSettings) -> list[float]:
    return [s.pattern_vec_a_x_um, s.pattern_vec_a_y_um, s.pattern_vec_b_x_um, s.pattern_vec_b_y_um]


def adjust_area(
    scope: Microscope, plan: RunPlan, on_step: Callable[[str, str], None]
) -> dict[str, dict[str, Any]]:
    """Run the enabled steps on ``plan`` (changed in place); their journal records by kind."""
    s = plan.settings
    records: dict[str, dict[str, Any]] = {}
    if s.refine_vectors and s.target_pattern and plan.targets:
        template = saved_view_image(scope, plan.targets[0], plan.run_dir)
        refined = refine_pattern(scope, s, plan.targets, template, on_step)
        if refined is not None:
            plan.targets = refined
            records["pattern"] = {
                "targets_um": [list(t.ss_um) for t in refined],
                "vectors_um": _vectors(s),
            }
    if s.measure_geometry:
        measured = measure_area_geometry(scope, s, plan.targets, plan.geo_points_um, on_step)
        if measured is not None:
            records["geometry"] = {"pretilt_deg": measured[0], "rotation_deg": measured[1]}
    return records


def reapply_adjustments(
    plan: RunPlan, pattern: dict[str, Any] | None, geometry: dict[str, Any] | None
) -> None:
    """Put journalled results back into ``plan`` (on resume)."""
    s = plan.settings
    if pattern is not None:
        for target, (x, y) in zip(plan.targets, pattern["targets_um"], strict=True):
            target.ss_x_um, target.ss_y_um = float(x), float(y)
        a_x, a_y, b_x, b_y = (float(v) for v in pattern["vectors_um"])
        s.pattern_vec_a_x_um, s.pattern_vec_a_y_um = a_x, a_y
        s.pattern_vec_b_x_um, s.pattern_vec_b_y_um = b_x, b_y
    if geometry is not None:
        s.pretilt_deg = float(geometry["pretilt_deg"])
        s.rotation_deg = float(geometry["rotation_deg"])
