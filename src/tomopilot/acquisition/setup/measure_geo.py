"""PACEtomo's ``measureGeo`` as a set-up step: the specimen's pretilt and rotation, measured.

Before the maps, the defocus is read at the geo points (the targets file's ``_geo`` points,
or for a hole pattern without any, PACEtomo's automatic points between the outer holes) with
the Focus area, so no target is exposed, and a plane (or, from 9 points on, a paraboloid) is
fitted. Its pretilt and rotation replace the configured ones for this run: they initialise
every target's depth in both strategies. A fit the geometry layer distrusts (implausible angle,
large residual, points too close together) is reported and the configured values are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.geometry import GeometryFitError, measure_geometry, pattern_geo_points
from tomopilot.geometry.scope_state import preserved_optics
from tomopilot.instrument.protocol import Microscope
from tomopilot.targeting.targets import Target

Point = tuple[float, float]


def geo_points_for(settings: AcquisitionSettings, geo_points_um: Sequence[Point]) -> list[Point]:
    """The points to measure: the file's, or a pattern's automatic ones."""
    if geo_points_um:
        return list(geo_points_um)
    s = settings
    vec_a = (s.pattern_vec_a_x_um, s.pattern_vec_a_y_um)
    vec_b = (s.pattern_vec_b_x_um, s.pattern_vec_b_y_um)
    if s.target_pattern and s.pattern_size > 0 and any(vec_a + vec_b):
        return pattern_geo_points(vec_a, vec_b, s.pattern_size)
    return []


def measure_area_geometry(
    scope: Microscope,
    settings: AcquisitionSettings,
    targets: Sequence[Target],
    geo_points_um: Sequence[Point],
    on_step: Callable[[str, str], None],
) -> tuple[float, float] | None:
    """Measure and apply (to ``settings``) the area's pretilt and rotation; None if not.

    The image shift in force is the area's origin; geo points are relative to target 1.
    """
    points = geo_points_for(settings, geo_points_um)
    keep = f"pretilt {settings.pretilt_deg:g}° and rotation {settings.rotation_deg:g}° as set"
    if len(points) < 3:
        on_step("geometry", f"{len(points)} geo points, 3 needed: {keep}")
        return None
    first = targets[0].ss_um if targets else (0.0, 0.0)
    try:
        with preserved_optics(scope) as origin:
            scope.optics.set_image_shift_um(origin[0] + first[0], origin[1] + first[1])
            result = measure_geometry(
                scope,
                points,
                targets_um=[(t.ss_um[0] - first[0], t.ss_um[1] - first[1]) for t in targets],
            )
    except GeometryFitError as exc:
        on_step("geometry", f"no fit ({exc}): {keep}")
        return None
    fit = result.fit
    if fit.warnings:
        reasons = "; ".join(w.message for w in fit.warnings)
        on_step("geometry", f"fit distrusted ({reasons}): {keep}")
        return None
    settings.pretilt_deg = round(fit.pretilt_deg, 2)
    settings.rotation_deg = round(fit.rotation_deg, 2)
    on_step(
        "geometry",
        f"pretilt {settings.pretilt_deg:g}°, rotation {settings.rotation_deg:g}° from "
        f"{fit.n_points} geo points (RMS residual {fit.rms_residual_um * 1e3:.0f} nm)",
    )
    return settings.pretilt_deg, settings.rotation_deg
