"""Rough and fine eucentricity from image displacement between two tilts.

A specimen point at depth z₀ below the tilt axis (z along the beam) moves sideways when the
stage tilts: at ±θ its lab y differs by −2 z₀ sin θ (y(θ) = y cos θ − z sin θ). Two images at
−θ and +θ (both approached in +, both foreshortened alike) are cross-correlated; the y
displacement gives z₀, and the stage z is raised by z₀ (raising the stage lifts the
specimen). Rough eucentricity uses the View area at ±4° then ±8°; fine eucentricity the same
area at ±15° then ±20°, where the random error of the goniometer per step weighs less. Both
iterate until the change is small.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tomopilot.core.events import Message, Progress
from tomopilot.imaging.xcorr import align
from tomopilot.instrument import LowDoseArea, Microscope


@dataclass(frozen=True)
class EucentricityResult:
    """Total stage z change (µm), the depth error found at the last round, and rounds run."""

    z_change_um: float
    last_error_um: float
    rounds: int


def depth_from_tilt_pair(scope: Microscope, *, area: LowDoseArea, tilt_deg: float) -> float:
    """The specimen's depth below the tilt axis (µm, along the beam) from images at ∓θ."""
    stage = scope.stage
    limit = stage.limits.tilt_deg
    stage.tilt_to(max(-limit, -tilt_deg - 3.0))
    stage.tilt_to(-tilt_deg)
    first = scope.camera.acquire(area)
    stage.tilt_to(tilt_deg)
    second = scope.camera.acquire(area)
    stage.tilt_to(0.0, backlash_compensate=True)
    shift = align(first.data, second.data, low_pass_px=2.0, upsample=10)
    matrix = scope.camera.specimen_to_camera_matrix(area)
    lab = np.linalg.solve(matrix, np.array([shift.shift_x_px, shift.shift_y_px]))
    return float(-lab[1] / (2.0 * math.sin(math.radians(tilt_deg))))


def eucentricity(
    scope: Microscope,
    *,
    fine: bool = False,
    tolerance_um: float | None = None,
    max_rounds: int = 3,
    on_event: Callable[[Progress | Message], None] | None = None,
) -> EucentricityResult:
    """Bring the specimen to the eucentric height by image displacement between tilts.

    Rough: View at ±4° then ±8°, until the change is below 0.5 µm. Fine: View at ±15° (then ±20°)
    until it is below 0.1 µm. The stage ends at 0°.
    """
    area = LowDoseArea.VIEW
    tilts = (15.0, 20.0, 20.0) if fine else (4.0, 8.0, 8.0)
    tol = tolerance_um if tolerance_um is not None else (0.1 if fine else 0.5)
    total = 0.0
    error = math.inf
    rounds = 0
    for rounds in range(1, max_rounds + 1):
        depth = depth_from_tilt_pair(scope, area=area, tilt_deg=tilts[min(rounds, 3) - 1])
        scope.stage.move_by(dz_um=depth)
        total += depth
        error = abs(depth)
        event = Progress(
            time_s=scope.clock.now_s(),
            task="fine eucentricity" if fine else "rough eucentricity",
            done=rounds,
            total=max_rounds,
            detail=f"depth {depth:+.2f} µm",
        )
        scope.events.emit(event)
        if on_event is not None:
            on_event(event)
        if error < tol:
            break
    return EucentricityResult(total, error, rounds)
