"""What every backend's stage does the same way: travel checks and backlash-compensated approaches.

A backlash-compensated move makes the final approach of every axis that moves down (towards
negative values) from below: first to ``overshoot`` beyond the target, then up to it, so that
repeated moves to one place land alike whichever side they came from (SerialEM's
``MoveStageWithBacklash`` / ``TiltBacklash`` idea). Axes that move up need no extra step.
"""

from __future__ import annotations

import math

from tomopilot.instrument.errors import StageLimitError
from tomopilot.instrument.types import StageLimits


def check_stage_xyz(limits: StageLimits, x_um: float, y_um: float, z_um: float) -> None:
    """Raise :class:`StageLimitError` for a non-finite or out-of-travel x, y or z."""
    for axis, value, bound in (
        ("x", x_um, limits.xy_um),
        ("y", y_um, limits.xy_um),
        ("z", z_um, limits.z_um),
    ):
        if not (math.isfinite(value) and -bound <= value <= bound):
            raise StageLimitError(axis, value, -bound, bound, "µm")


def check_tilt(limits: StageLimits, tilt_deg: float) -> None:
    """Raise :class:`StageLimitError` for a non-finite tilt or one beyond the stage's range."""
    bound = limits.tilt_deg
    if not (math.isfinite(tilt_deg) and -bound <= tilt_deg <= bound):
        raise StageLimitError("tilt", tilt_deg, -bound, bound, "°")


def xy_approach_um(
    current: tuple[float, float], target: tuple[float, float], overshoot_um: float
) -> tuple[float, float] | None:
    """The intermediate (x, y) of a backlash-compensated move, or None when none is needed."""
    (cx, cy), (x, y) = current, target
    if x >= cx and y >= cy:
        return None
    return (x - overshoot_um if x < cx else x, y - overshoot_um if y < cy else y)


def tilt_approach_deg(
    current_deg: float, target_deg: float, overshoot_deg: float, limit_deg: float
) -> float | None:
    """The intermediate tilt of a backlash-compensated tilt (within the range), or None."""
    if target_deg >= current_deg:
        return None
    return max(-limit_deg, target_deg - overshoot_deg)
