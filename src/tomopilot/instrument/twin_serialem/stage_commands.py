"""Stage and tilt: moves, tilts, reading them back, resetting image shift with the stage.

``ResetImageShift`` zeroes the image shift and moves the stage by the equivalent distance (the
specimen Y component divided by cos θ), changing focus by specimenY · tan θ so that the area
stays in focus; with ``#B`` ≥ 1 the move imposes backlash (final approach in +, below 10° of
tilt only) and with ``#B`` = 2 it then relaxes back by ``#R`` µm (property StageRelaxation).
"""

from __future__ import annotations

import math

from tomopilot.instrument.twin_serialem import calibration as cal
from tomopilot.instrument.twin_serialem.commands import Reported, command
from tomopilot.instrument.twin_serialem.session import Session

BACKLASH_MAX_TILT_DEG = 10.0


@command("MoveStageTo", "FF|F")
def move_stage_to(
    session: Session, x_um: float, y_um: float, z_um: float | None = None
) -> Reported:
    """Move the stage to (x, y[, z]) µm; z is unchanged when omitted."""
    session.scope.stage.move_to(x_um=x_um, y_um=y_um, z_um=z_um)
    return None


@command("MoveStage", "FF|F")
def move_stage(session: Session, dx_um: float, dy_um: float, dz_um: float = 0.0) -> Reported:
    """Move the stage by (dx, dy[, dz]) µm."""
    session.scope.stage.move_by(dx_um=dx_um, dy_um=dy_um, dz_um=dz_um)
    return None


@command("ReportStageXYZ")
def report_stage_xyz(session: Session) -> Reported:
    """(x, y, z) µm of the stage."""
    pos = session.scope.stage.position()
    session.report(f"Stage {pos.x_um:.2f} {pos.y_um:.2f} {pos.z_um:.2f}")
    return pos.x_um, pos.y_um, pos.z_um


def _tilt(session: Session, angle: float, restore: int, x: float | None, y: float | None) -> None:
    stage = session.scope.stage
    before = stage.position()
    stage.tilt_to(angle)
    if restore:
        stage.move_to(x_um=before.x_um if x is None else x, y_um=before.y_um if y is None else y)


@command("TiltTo", "F|IFF")
def tilt_to(
    session: Session, angle: float, restore: int = 0, x: float | None = None, y: float | None = None
) -> Reported:
    """Tilt to an angle (°); #R ≠ 0 puts the stage back at its X, Y (or the given X, Y)."""
    _tilt(session, angle, restore, x, y)
    return None


@command("TiltBy", "F|IFF")
def tilt_by(
    session: Session, delta: float, restore: int = 0, x: float | None = None, y: float | None = None
) -> Reported:
    """Tilt by an increment (°)."""
    _tilt(session, session.scope.stage.position().tilt_deg + delta, restore, x, y)
    return None


@command("ReportTiltAngle")
def report_tilt_angle(session: Session) -> Reported:
    """The stage tilt (°)."""
    tilt = session.scope.stage.position().tilt_deg
    session.report(f"Tilt angle {tilt:.2f}")
    return (tilt,)


@command("ResetImageShift", "|IF")
def reset_image_shift(session: Session, backlash: int = 0, relax_um: float = -1.0) -> Reported:
    """Zero the image shift and move the stage (and focus) to keep the same field."""
    scope = session.scope
    spec_x, spec_y = cal.image_shift_specimen_um(session)
    dx, dy = cal.stage_for_specimen(session, (spec_x, spec_y))
    tilt = scope.stage.position().tilt_deg
    use_backlash = backlash > 0 and abs(tilt) < BACKLASH_MAX_TILT_DEG
    if dx or dy:
        scope.stage.move_by(dx_um=dx, dy_um=dy, backlash_compensate=use_backlash)
        if use_backlash and backlash >= 2:
            relax = relax_um if relax_um >= 0 else session.properties.values["StageRelaxation"]
            # the approach ends moving in +: relax back towards − on the axes that moved
            scope.stage.move_by(
                dx_um=-relax if dx else 0.0,
                dy_um=-relax if dy else 0.0,
            )
    scope.optics.set_image_shift_units(0.0, 0.0)
    scope.optics.set_focus_um(scope.optics.focus_um() + spec_y * math.tan(math.radians(tilt)))
    return None


@command("Eucentricity", "|I")
def eucentricity(session: Session, option: int = 2) -> Reported:
    """Rough (1), refine (2, default), both (3), refine and realign (6)."""
    if option not in (1, 2, 3, 4, 6):
        raise ValueError(f"Eucentricity option must be 1, 2, 3 or 6, not {option}")
    measurements = session.scope.measurements
    if option & 1:
        measurements.eucentricity(fine=False)
    if option & 2:
        measurements.eucentricity(fine=True)
    return None


@command("ReportTiltAxisOffset")
def report_tilt_axis_offset(session: Session) -> Reported:
    """(tilt-axis offset µm, 1 if image shift is centred on the tilt axis)."""
    centred = session.settings.values.get("ShiftToTiltAxis", 1.0)
    return session.scope.stage.tilt_axis_offset_um, 1 if centred else 0


@command("SetTiltAxisOffset", "F")
def set_tilt_axis_offset(session: Session, offset_um: float) -> Reported:
    """Set the tilt-axis offset (µm) used to centre image shift on the axis."""
    session.scope.stage.set_tilt_axis_offset_um(offset_um)
    return None


@command("ReportStageBusy")
def report_stage_busy(session: Session) -> Reported:
    """0: the twin's stage moves complete before the command returns."""
    return (0,)


@command("ResetShiftIfAbove", "F")
def reset_shift_if_above(session: Session, limit_um: float) -> Reported:
    """Reset image shift (moving the stage) if the specimen shift exceeds ``limit_um``."""
    x, y = cal.image_shift_specimen_um(session)
    if math.hypot(x, y) > limit_um:
        reset_image_shift(session)
    return None
