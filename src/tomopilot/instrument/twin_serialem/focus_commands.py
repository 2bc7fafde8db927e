"""Focus, autofocus, drift and CTF fitting.

The defocus readout is that of the current low-dose area: the objective focus plus the area's
defocus offset (View at −50 µm reads −52 when Record reads −2). Autofocus measures in the Focus
area with beam-tilted pairs (the microscope's own measurement, with its error and dose) and sets
the focus so the Focus area sits at the target defocus.
"""

from __future__ import annotations

import numpy as np

from tomopilot.imaging.ctf import CtfOptics
from tomopilot.imaging.errors import ImagingError
from tomopilot.imaging.fit_ctf import fit_ctf_spectrum, tile_power_spectra
from tomopilot.imaging.xcorr import align
from tomopilot.instrument.twin_serialem.camera_commands import need
from tomopilot.instrument.twin_serialem.commands import Reported, command
from tomopilot.instrument.twin_serialem.errors import SEMerror
from tomopilot.instrument.twin_serialem.session import Session
from tomopilot.instrument.types import LowDoseArea

DRIFT_INTERVAL_S = 1.0


def readout_offset(session: Session) -> float:
    """The defocus offset of the current area."""
    return session.scope.optics.preset(session.ld_area).defocus_offset_um


@command("SetDefocus", "F")
def set_defocus(session: Session, defocus_um: float) -> Reported:
    """Set the defocus readout of the current area (µm, negative = underfocus)."""
    session.scope.optics.set_focus_um(defocus_um - readout_offset(session))
    return None


@command("ChangeFocus", "F")
def change_focus(session: Session, delta_um: float) -> Reported:
    """Change the defocus by ``delta_um``."""
    optics = session.scope.optics
    optics.set_focus_um(optics.focus_um() + delta_um)
    return None


@command("ReportDefocus")
def report_defocus(session: Session) -> Reported:
    """The defocus readout of the current area (µm)."""
    value = session.scope.optics.focus_um() + readout_offset(session)
    session.report(f"Defocus {value:.2f} um")
    return (value,)


@command("SetTargetDefocus", "F")
def set_target_defocus(session: Session, defocus_um: float) -> Reported:
    """The defocus autofocus aims at."""
    if not -1000 < defocus_um < 1000:
        raise ValueError(f"Target defocus {defocus_um} um is out of range")
    session.target_defocus_um = defocus_um
    return None


@command("ReportTargetDefocus")
def report_target_defocus(session: Session) -> Reported:
    """The autofocus target (µm)."""
    return (session.target_defocus_um,)


def _measure_drift(session: Session) -> tuple[float, float]:
    """Two Focus images a second apart, cross-correlated: drift in nm/s (x, y on the camera)."""
    camera = session.scope.camera
    first = camera.acquire(LowDoseArea.FOCUS)
    session.scope.clock.sleep(DRIFT_INTERVAL_S)
    second = camera.acquire(LowDoseArea.FOCUS)
    shift = align(first.data, second.data, mode="cc")
    seconds = max(second.time_s - first.time_s, 1e-6)
    pixel_nm = first.pixel_size_a / 10
    return shift.shift_x_px * pixel_nm / seconds, shift.shift_y_px * pixel_nm / seconds


@command("G", "|II", aliases=("AutoFocus", "Autofocus"))
def autofocus(session: Session, mode: int = 1, area: int = 0) -> Reported:
    """Autofocus: 1 measure and set to target, −1 measure only, −2 measure drift only.

    ``area`` 1/2 View, 3/4 Search (odd: the measured defocus is that area's readout, even: it
    is corrected by the area's defocus offset), −1 Record, −2 Preview. The twin measures in the
    Focus area in every case.
    """
    if mode not in (1, -1, -2):
        raise ValueError(f"Autofocus option must be 1, -1 or -2, not {mode}")
    if area not in (0, 1, 2, 3, 4, -1, -2):
        raise ValueError(f"Autofocus area must be 0, 1 to 4, -1 or -2, not {area}")
    measurements = session.scope.measurements
    if mode == -2:
        session.extensions["drift_nm_s"] = _measure_drift(session)
        return None
    if mode == -1:
        measured = measurements.measure_defocus_um()
    else:
        measured = measurements.autofocus(session.target_defocus_um)
    if area in (1, 3):
        other = LowDoseArea.VIEW if area == 1 else LowDoseArea.SEARCH
        measured += session.scope.optics.preset(other).defocus_offset_um
    session.last_autofocus = (measured, 0.0)
    session.report(f"Measured defocus {measured:.2f} um")
    return None


@command("ReportAutoFocus", aliases=("ReportAutofocus",))
def report_autofocus(session: Session) -> Reported:
    """(defocus measured by the last autofocus, error code 0 = ok)."""
    if session.last_autofocus is None:
        return 0.0, -1
    return session.last_autofocus


@command("ReportFocusDrift")
def report_focus_drift(session: Session) -> Reported:
    """(x, y) drift in nm/s from the last ``G -2``."""
    drift = session.extensions.get("drift_nm_s")
    if drift is None:
        raise SEMerror(
            "No drift has been measured (run G -2 first) in script statement: ReportFocusDrift",
            "ReportFocusDrift",
        )
    return tuple(drift)


def ctf_optics(session: Session) -> CtfOptics:
    """The optics constants for CTF fits (properties Voltage, Cs, AmplitudeContrast)."""
    values = session.properties.values
    return CtfOptics(
        voltage_kv=float(values.get("Voltage", 300.0)),
        cs_mm=float(values.get("Cs", 2.7)),
        amplitude_contrast=float(values.get("AmplitudeContrast", 0.1)),
    )


def fit_buffer(
    session: Session, name: str, letter: str, low_um: float, high_um: float
) -> tuple[float, float, float, float, float, float]:
    """(defocus, astigmatism, angle, phase shift, fit score, resolution Å) of a buffer."""
    image = need(session, letter, name)
    lo, hi = sorted((low_um, high_um))
    # the range may be given as defocus (negative) or as underfocus (positive)
    rng = (lo, hi) if lo < 0 else (-hi, -lo)
    if rng[1] >= 0 or rng[0] == rng[1]:
        raise ValueError(f"Defocus range {low_um} to {high_um} um is not a range of underfocus")
    data = image.data.astype(np.float32)
    tile = min(512, *data.shape) // 2 * 2
    spectra, _ = tile_power_spectra(data, tile)
    try:
        fit = fit_ctf_spectrum(
            spectra.mean(axis=0), image.pixel_size_a, ctf_optics(session), defocus_range_um=rng
        )
    except ImagingError as exc:
        raise SEMerror(
            f"{name} failed to fit ({exc}) in script statement: {name} {letter}", name
        ) from None
    return (
        fit.defocus_um,
        fit.astigmatism_um,
        fit.angle_deg,
        0.0,
        fit.score,
        fit.resolution_a,
    )


@command("CtfFind", "BFF|IIFFF")
def ctf_find(
    session: Session, letter: str, low_um: float, high_um: float, *options: float
) -> Reported:
    """Fit the CTF of a buffer: (defocus, astigmatism, angle, phase, score, resolution Å)."""
    result = fit_buffer(session, "CtfFind", letter, low_um, high_um)
    session.report(f"CtfFind: defocus {result[0]:.3f} um, fit to {result[5]:.1f} A")
    return result


@command("Ctfplotter", "BFF|IIFFF")
def ctfplotter(
    session: Session, letter: str, low_um: float, high_um: float, *options: float
) -> Reported:
    """Fit the CTF of a buffer as Ctfplotter does (same values as CtfFind)."""
    result = fit_buffer(session, "Ctfplotter", letter, low_um, high_um)
    session.report(f"Ctfplotter: defocus {result[0]:.3f} um")
    return result


@command("IncTargetDefocus", "F")
def inc_target_defocus(session: Session, delta_um: float) -> Reported:
    """Change the autofocus target by ``delta_um``."""
    return set_target_defocus(session, session.target_defocus_um + delta_um)


@command("ReportAbsoluteFocus", aliases=("ReportFocus",))
def report_absolute_focus(session: Session) -> Reported:
    """The objective focus in the microscope's own units (the twin: µm at eucentric height)."""
    return (session.scope.optics.focus_um(),)


@command("SetAbsoluteFocus", "F", aliases=("SetStandardFocus",))
def set_absolute_focus(session: Session, value: float) -> Reported:
    """Set the objective focus to a value from ReportAbsoluteFocus."""
    session.scope.optics.set_focus_um(value)
    return None
