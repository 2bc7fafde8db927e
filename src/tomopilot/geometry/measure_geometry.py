"""Measure the specimen geometry at geo points, without exposing the targets.

At the selection tilt (0°) the beam is moved by image shift to each geo point and the defocus
is read there with the Focus area at zero offset along the tilt axis (so the reading is at the
point itself, pacetomo.md §5.1). The focus is never changed, so the readings differ only by the
points' z (defocus = focus + z); :func:`~tomopilot.geometry.plane_fit.fit_surface` turns
them into a plane or a paraboloid. Points outside the image-shift reach, or whose Focus beam
would touch a target's beam, are skipped and reported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from tomopilot.core.events import Message, Progress
from tomopilot.geometry.geo_points import unsafe_geo_points
from tomopilot.geometry.plane_fit import ParaboloidFit, PlaneFit, fit_surface
from tomopilot.geometry.scope_state import preserved_optics, temporary_preset
from tomopilot.instrument import ImageShiftLimitError, LowDoseArea, Microscope

Point = tuple[float, float]
MIN_ABS_DEFOCUS_UM = 0.01  # PACEtomo discards readings this close to zero (failed autofocus)


@dataclass(frozen=True)
class GeoReading:
    """One defocus reading at a geo point (specimen µm relative to target 1)."""

    x_um: float
    y_um: float
    defocus_um: float


@dataclass(frozen=True)
class GeometryMeasurement:
    """Readings, the points skipped (with the reason) and the fitted surface."""

    readings: tuple[GeoReading, ...]
    skipped: tuple[tuple[Point, str], ...]
    fit: PlaneFit | ParaboloidFit
    messages: tuple[str, ...] = field(default=())


def measure_geometry(
    scope: Microscope,
    geo_points_um: Sequence[Point],
    *,
    targets_um: Sequence[Point] = (),
    paraboloid_from: int = 9,
    on_event: Callable[[Progress | Message], None] | None = None,
) -> GeometryMeasurement:
    """Read the defocus at each geo point and fit the specimen surface.

    Parameters
    ----------
    scope
        The microscope, centred on target 1 (its current image shift is the origin).
    geo_points_um
        Specimen (x, y) of the geo points relative to target 1.
    targets_um
        Specimen (x, y) of every target relative to target 1; geo points whose Focus beam
        would touch a target's Record beam are skipped.
    paraboloid_from
        Fit a paraboloid instead of a plane from this many readings on.
    on_event
        Receives progress and messages (the scope's event bus gets them too).

    Raises
    ------
    GeometryFitError
        If fewer than three points could be read.
    """

    def emit(event: Progress | Message) -> None:
        scope.events.emit(event)
        if on_event is not None:
            on_event(event)

    now = scope.clock.now_s
    tilt = scope.stage.position().tilt_deg
    notes: list[str] = []
    if abs(tilt) > 0.5:
        notes.append(f"geo points are read at the current tilt {tilt:.1f}°, not at 0°")
    focus_radius = scope.optics.preset(LowDoseArea.FOCUS).beam_diameter_um / 2
    record_radius = scope.optics.preset(LowDoseArea.RECORD).beam_diameter_um / 2
    unsafe = set(
        unsafe_geo_points(
            list(geo_points_um),
            list(targets_um),
            focus_beam_radius_um=focus_radius,
            target_beam_radius_um=record_radius,
        )
    )
    limit = scope.optics.image_shift_limit_um
    readings: list[GeoReading] = []
    skipped: list[tuple[Point, str]] = []
    with (
        preserved_optics(scope) as (is_x, is_y),
        temporary_preset(scope, LowDoseArea.FOCUS, offset_along_axis_um=0.0),
    ):
        for index, (x, y) in enumerate(geo_points_um):
            point = (float(x), float(y))
            emit(Progress(time_s=now(), task="geo points", done=index, total=len(geo_points_um)))
            if index in unsafe:
                skipped.append((point, "its Focus beam would expose a target"))
                continue
            if max(abs(is_x + x), abs(is_y + y)) > limit:
                skipped.append((point, f"beyond the image-shift limit of {limit:g} µm"))
                continue
            try:
                scope.optics.set_image_shift_um(is_x + x, is_y + y)
            except ImageShiftLimitError:
                skipped.append((point, f"beyond the image-shift limit of {limit:g} µm"))
                continue
            defocus = scope.measurements.measure_defocus_um()
            if not math.isfinite(defocus) or abs(defocus) < MIN_ABS_DEFOCUS_UM:
                skipped.append((point, f"the reading {defocus:g} µm looks like a failure"))
                continue
            readings.append(GeoReading(point[0], point[1], float(defocus)))
        emit(
            Progress(
                time_s=now(), task="geo points", done=len(geo_points_um), total=len(geo_points_um)
            )
        )
    for point, reason in skipped:
        notes.append(f"geo point ({point[0]:.2f}, {point[1]:.2f}) µm skipped: {reason}")
    for note in notes:
        emit(Message(time_s=now(), level="warning", text=note))
    fit = fit_surface(
        np.array([r.x_um for r in readings]),
        np.array([r.y_um for r in readings]),
        np.array([r.defocus_um for r in readings]),
        paraboloid_from=paraboloid_from,
    )
    return GeometryMeasurement(tuple(readings), tuple(skipped), fit, tuple(notes))
