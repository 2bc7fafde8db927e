"""Image shift in every unit SerialEM offers, magnification, calibration matrices, low dose.

Incremental image shifts (``ImageShiftByMicrons``, ``...ByPixels``, ``...ByUnits``) are checked
against the image-shift limit first, as SerialEM does since 4.1: beyond it nothing moves and the
reported value is 1 (refused), else 0. ``SetImageShift`` is absolute: beyond the limit it fails.

Settling is SerialEM's: the optional settling multiplier ``#D`` (third argument) sets an
image-shift time-out of ``#D`` times the IS table's delay, which the next shot waits out during
the camera's start-up. Without it SerialEM sets no time-out (its script commands call
``SetISTimeOut`` only for ``#D`` > 0; its own routines always pair a shift with one): the next
shot does not wait, and a beam on before the deflectors settled gives an image displaced and
smeared by the rest of the settling (the twin's ``image_shift_settling``).
"""

from __future__ import annotations

import math

import numpy as np

from tomopilot.instrument.twin.microscope import TwinMicroscope
from tomopilot.instrument.twin.optics import TwinOptics, intensity
from tomopilot.instrument.twin_serialem import calibration as cal
from tomopilot.instrument.twin_serialem.commands import Reported, command
from tomopilot.instrument.twin_serialem.session import SET_AREAS, Session
from tomopilot.instrument.types import LowDoseArea

LD_LETTERS = {"V": LowDoseArea.VIEW, "F": LowDoseArea.FOCUS, "T": LowDoseArea.TRIAL}
LD_LETTERS |= {"R": LowDoseArea.RECORD, "S": LowDoseArea.SEARCH, "P": LowDoseArea.PREVIEW}
# SerialEM's low-dose area numbers: 0 View, 1 Focus, 2 Trial, 3 Record, 4 Search
LD_NUMBERS = {
    LowDoseArea.VIEW: 0,
    LowDoseArea.FOCUS: 1,
    LowDoseArea.TRIAL: 2,
    LowDoseArea.RECORD: 3,
    LowDoseArea.PREVIEW: 3,
    LowDoseArea.SEARCH: 4,
}
COMA_MRAD_PER_UNIT = ((0.0016, 0.0002), (-0.0001, 0.0017))  # a typical coma-vs-IS calibration


def ld_area(text: str) -> LowDoseArea:
    """A low-dose area from its letter (V, F, T, R, S; P = Preview)."""
    area = LD_LETTERS.get(text.strip().upper()[:1]) if text.strip() else None
    if area is None:
        raise ValueError(f"Low dose area must be V, F, T, R or S, not {text!r}")
    return area


def _limit_um(session: Session) -> float:
    soft = session.properties.values.get("ImageShiftLimit", math.inf)
    return min(float(soft), session.scope.optics.image_shift_limit_um)


def timeout_factor(multiplier: float | None) -> float:
    """SerialEM's image-shift time-out for a script's settling multiplier ``#D``: that many
    times the IS table's delay, and none when ``#D`` is absent or not positive (the next shot
    then does not wait: its beam sees what is left of the settling)."""
    return 0.0 if multiplier is None or multiplier <= 0 else float(multiplier)


def set_units(session: Session, x: float, y: float, multiplier: float | None) -> None:
    """Set the image shift to (x, y) IS units with SerialEM's time-out for ``multiplier``. The
    twin's optics model the time-out and the settling the beam sees without one; another
    microscope settles its own way."""
    optics = session.scope.optics
    if isinstance(optics, TwinOptics):
        optics.set_image_shift_units(x, y, timeout_factor=timeout_factor(multiplier))
    else:
        optics.set_image_shift_units(x, y)


def shift_by_units(session: Session, delta: np.ndarray, multiplier: float | None = 1.0) -> Reported:
    """Add ``delta`` IS units if the result stays within the limit: (0,) done, (1,) refused.

    ``multiplier`` is the settling multiplier: SerialEM's own routines (aligning, realigning)
    set one IS delay's time-out (1, the default); a script command passes its ``#D``."""
    optics = session.scope.optics
    new = np.asarray(optics.image_shift_units(), np.float64) + delta
    spec = cal.is_to_specimen(session) @ new
    if np.any(np.abs(spec) > _limit_um(session)):
        session.report(
            f"Image shift to ({spec[0]:.2f}, {spec[1]:.2f}) um refused: beyond the limit of "
            f"{_limit_um(session):g} um"
        )
        return (1,)
    set_units(session, float(new[0]), float(new[1]), multiplier)
    return (0,)


@command("ImageShiftByMicrons", "FF|FI")
def image_shift_by_microns(
    session: Session, dx: float, dy: float, multiplier: float | None = None, beam_tilt: int = 0
) -> Reported:
    """Incremental image shift in specimen µm (x along the tilt axis)."""
    delta = cal.specimen_to_is(session) @ np.array([dx, dy])
    result = shift_by_units(session, delta, multiplier)
    if beam_tilt and result == (0,):
        _compensate_beam_tilt(session)
    return result


@command("ImageShiftByUnits", "FF|FI")
def image_shift_by_units(
    session: Session, dx: float, dy: float, multiplier: float | None = None, beam_tilt: int = 0
) -> Reported:
    """Incremental image shift in IS units."""
    result = shift_by_units(session, np.array([dx, dy]), multiplier)
    if beam_tilt and result == (0,):
        _compensate_beam_tilt(session)
    return result


@command("ImageShiftByPixels", "FF|FI")
def image_shift_by_pixels(
    session: Session, dx: float, dy: float, multiplier: float | None = None, beam_tilt: int = 0
) -> Reported:
    """Incremental image shift moving the image by (dx, dy) unbinned camera pixels."""
    to_camera = cal.specimen_to_camera(session, session.ld_area)
    spec = -np.linalg.solve(to_camera, np.array([dx, dy]))
    result = shift_by_units(session, cal.specimen_to_is(session) @ spec, multiplier)
    if beam_tilt and result == (0,):
        _compensate_beam_tilt(session)
    return result


@command("SetImageShift", "FF|FI")
def set_image_shift(
    session: Session, x: float, y: float, multiplier: float | None = None, beam_tilt: int = 0
) -> Reported:
    """Absolute image shift in IS units (the frame of ReportImageShift)."""
    set_units(session, x, y, multiplier)
    if beam_tilt:
        _compensate_beam_tilt(session)
    return None


@command("ReportImageShift")
def report_image_shift(session: Session) -> Reported:
    """(IS x, y units; camera x, y unbinned px; stage x, y µm needed to reset it)."""
    units = session.scope.optics.image_shift_units()
    cam = cal.camera_shift_of_is(session, units)
    stage = cal.stage_for_specimen(session, cal.image_shift_specimen_um(session))
    session.report(f"Image shift {units[0]:.3f} {units[1]:.3f} IS units")
    return units[0], units[1], cam[0], cam[1], stage[0], stage[1]


@command("ReportSpecimenShift")
def report_specimen_shift(session: Session) -> Reported:
    """The image shift in specimen µm (x along the tilt axis)."""
    return cal.image_shift_specimen_um(session)


# -- magnification ------------------------------------------------------------------------------
@command("SetMag", "I")
def set_mag(session: Session, magnification: int) -> Reported:
    """Set the magnification of the current area to one of the microscope's table."""
    optics = session.scope.optics
    in_use = any(optics.preset(a).magnification == magnification for a in SET_AREAS)
    if magnification not in cal.mag_table(session) and not in_use:
        mags = ", ".join(str(m) for m in cal.mag_table(session))
        raise ValueError(f"Magnification {magnification} is not calibrated (the table: {mags})")
    pixel = optics.pixel_size_a(magnification)
    for area in _areas_of(session.ld_area):
        current = optics.preset(area)
        session.saved_ld_params.setdefault(area, current)
        optics.set_preset(
            area,
            current.model_copy(
                update={"magnification": magnification, "unbinned_pixel_size_a": pixel}
            ),
        )
    return None


@command("SetMagIndex", "I")
def set_mag_index(session: Session, index: int) -> Reported:
    """Set the magnification of the current area by its index in the table (1-based)."""
    return set_mag(session, cal.magnification_of_index(session, index))


def _areas_of(area: LowDoseArea) -> list[LowDoseArea]:
    # Preview shares Record's low-dose area
    if area is LowDoseArea.RECORD:
        return [LowDoseArea.RECORD, LowDoseArea.PREVIEW]
    return [area]


@command("ReportMag")
def report_mag(session: Session) -> Reported:
    """(magnification, 1 if low-mag mode else 0) of the current area."""
    mag = session.scope.optics.preset(session.ld_area).magnification
    return mag, 1 if mag < 2000 else 0


def _matrix_command(name: str, make: object) -> None:
    def handler(session: Session, index: int = 0) -> Reported:
        camera = cal.specimen_to_camera_at(session, index)
        return cal.as_reported(make(session, camera))  # type: ignore[operator]

    command(name, "|I")(handler)


_matrix_command("SpecimenToCameraMatrix", lambda s, c: c)
_matrix_command("CameraToSpecimenMatrix", lambda s, c: np.linalg.inv(c))
_matrix_command("SpecimenToISMatrix", lambda s, c: cal.specimen_to_is(s))
_matrix_command("ISToSpecimenMatrix", lambda s, c: cal.is_to_specimen(s))
_matrix_command("ISToCameraMatrix", lambda s, c: c @ cal.is_to_specimen(s))
_matrix_command("SpecimenToStageMatrix", lambda s, c: cal.specimen_to_stage(0.0))
_matrix_command("StageToSpecimenMatrix", lambda s, c: np.linalg.inv(cal.specimen_to_stage(0.0)))


# -- coma and beam tilt --------------------------------------------------------------------------
@command("ReportComaVsISmatrix")
def report_coma_vs_is_matrix(session: Session) -> Reported:
    """The coma-vs-image-shift calibration: beam tilt (mrad) per IS unit (xpx, xpy, ypx, ypy)."""
    (a, b), (c, d) = COMA_MRAD_PER_UNIT
    return a, b, c, d


def _compensate_beam_tilt(session: Session) -> None:
    if session.beam_tilt_saved is None:
        session.beam_tilt_saved = session.beam_tilt_mrad
    units = np.asarray(session.scope.optics.image_shift_units())
    tilt = np.asarray(COMA_MRAD_PER_UNIT) @ units
    base = np.asarray(session.beam_tilt_saved)
    session.beam_tilt_mrad = (float(base[0] + tilt[0]), float(base[1] + tilt[1]))


@command("AdjustBeamTiltforIS", "|I")
def adjust_beam_tilt_for_is(session: Session, option: int = 0) -> Reported:
    """Add the beam tilt that cancels the coma of the current image shift (restore later)."""
    _compensate_beam_tilt(session)
    return None


@command("RestoreBeamTilt")
def restore_beam_tilt(session: Session) -> Reported:
    """Back to the beam tilt before the last compensation."""
    if session.beam_tilt_saved is not None:
        session.beam_tilt_mrad = session.beam_tilt_saved
        session.beam_tilt_saved = None
    return None


# -- low dose -------------------------------------------------------------------------------------
@command("GoToLowDoseArea", "S")
def go_to_low_dose_area(session: Session, area: str) -> Reported:
    """Switch to a low-dose area (V, F, T, R or S)."""
    target = ld_area(area)
    session.ld_area = LowDoseArea.RECORD if target is LowDoseArea.PREVIEW else target
    return None


@command("SetLowDoseMode", "I")
def set_low_dose_mode(session: Session, on: int) -> Reported:
    """Low dose on (non-zero) or off; reports the previous state."""
    previous = 1 if session.low_dose else 0
    session.low_dose = bool(on)
    return (previous,)


@command("ReportLowDose")
def report_low_dose(session: Session) -> Reported:
    """(1 if low dose is on, the current area number: 0 V, 1 F, 2 T, 3 R, 4 S)."""
    return (1 if session.low_dose else 0), LD_NUMBERS[session.ld_area]


@command("ReportLDDefocusOffset", "S")
def report_ld_defocus_offset(session: Session, area: str) -> Reported:
    """The defocus offset (µm) of a low-dose area (View, Search)."""
    return (session.scope.optics.preset(ld_area(area)).defocus_offset_um,)


@command("ReportAxisPosition", "S")
def report_axis_position(session: Session, area: str) -> Reported:
    """(distance µm along the tilt axis from Record, rotation °) of a low-dose area."""
    return session.scope.optics.preset(ld_area(area)).offset_along_axis_um, 0.0


@command("SetAxisPosition", "SF|F")
def set_axis_position(
    session: Session, area: str, distance_um: float, angle: float = 0.0
) -> Reported:
    """Move the Focus or Trial area along the tilt axis (µm from Record); no rotation here."""
    target = ld_area(area)
    if target not in (LowDoseArea.FOCUS, LowDoseArea.TRIAL):
        raise ValueError(f"SetAxisPosition applies to the Focus or Trial area, not {area}")
    if abs(distance_um) > 20 or angle:
        raise ValueError(
            f"Axis position {distance_um} um at {angle} deg: the twin takes 0 deg and up to 20 um"
        )
    optics = session.scope.optics
    current = optics.preset(target)
    session.saved_ld_params.setdefault(target, current)
    optics.set_preset(target, current.model_copy(update={"offset_along_axis_um": distance_um}))
    return None


@command("UpdateLowDoseParams", "S|I")
def update_low_dose_params(session: Session, area: str, option: int = 0) -> Reported:
    """Go to an area so that scope changes (SetMag) update its parameters; restorable."""
    target = ld_area(area)
    for each in _areas_of(target):
        session.saved_ld_params.setdefault(each, session.scope.optics.preset(each))
    session.ld_area = LowDoseArea.RECORD if target is LowDoseArea.PREVIEW else target
    return None


@command("RestoreLowDoseParams", "|S")
def restore_low_dose_params(session: Session, area: str = "") -> Reported:
    """Restore the low-dose parameters changed since UpdateLowDoseParams / SetMag."""
    areas = list(session.saved_ld_params) if not area else _areas_of(ld_area(area))
    for each in areas:
        original = session.saved_ld_params.pop(each, None)
        if original is not None:
            session.scope.optics.set_preset(each, original)
    return None


@command("ReportIlluminatedArea")
def report_illuminated_area(session: Session) -> Reported:
    """The beam diameter of the current area (µm)."""
    return (session.scope.optics.preset(session.ld_area).beam_diameter_um,)


# -- illumination and the energy filter, as an mdoc records them --------------------------------
@command("ReportSpotSize")
def report_spot_size(session: Session) -> Reported:
    """The spot size of the current area."""
    return (session.scope.optics.preset(session.ld_area).spot_size,)


@command("ReportMagIndex")
def report_mag_index(session: Session) -> Reported:
    """The magnification index of the current area (1-based, in the microscope's table)."""
    return (cal.mag_index(session, session.ld_area),)


@command("ReportPercentC2")
def report_percent_c2(session: Session) -> Reported:
    """(C2 strength in percent, the intensity value an mdoc's ``Intensity`` holds)."""
    value = intensity(session.scope.optics.preset(session.ld_area))
    return round(100.0 * value, 4), value


@command("ReportEnergyFilter")
def report_energy_filter(session: Session) -> Reported:
    """(slit width eV, energy loss eV, 1 if the slit is in); an error without a filter."""
    scope = session.scope
    width = scope.config.optics.slit_width_ev if isinstance(scope, TwinMicroscope) else 0.0
    if width <= 0:
        raise ValueError("There is no energy filter on this microscope")
    return width, 0.0, 1
