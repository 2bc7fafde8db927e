"""``tomopilot serialem check``: what a SerialEM set-up offers, and what it cannot support.

The check reads, and changes nothing but the current low-dose area (it visits each area to read
its magnification and calibrations; ``GoToLowDoseArea`` exposes nothing):

- SerialEM's version (the largest ``IsVersionAtLeast`` that holds, found by bisection);
- Low Dose: on/off and, per area, magnification, pixel size, binning, exposure, defocus offset
  and Focus/Trial position on the tilt axis;
- the camera (``CameraProperties``: size, rotation/flip, detector pixel);
- the limits: ``ImageShiftLimit`` and ``MaximumTiltAngle`` properties;
- the calibrations tomopilot will use: ``SpecimenToISMatrix`` and ``SpecimenToCameraMatrix`` in
  Record, View and Focus, the tilt-axis offset, and the column valve and dewar state.

It refuses (``problems``) what tomopilot cannot run with: SerialEM older than 4.1 (image-shift
moves are checked against the limit only since then), Low Dose off, an area without an
image-shift or pixel calibration, and, given the run's needs, an image-shift limit smaller than
the farthest target or a tilt range beyond the stage's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tomopilot.instrument.serialem.core import AREA_LETTER, SerialEMCore, reported_int
from tomopilot.instrument.serialem.microscope import SerialEMMicroscope
from tomopilot.instrument.serialem.session import SerialEMError, SerialEMSession
from tomopilot.instrument.types import LowDoseArea

MINIMUM_VERSION = 40100
"""SerialEM 4.1: incremental image shifts are checked against the limit since this version."""

CHECKED_AREAS = (LowDoseArea.RECORD, LowDoseArea.VIEW, LowDoseArea.FOCUS, LowDoseArea.PREVIEW)


@dataclass
class SetupReport:
    """What ``serialem check`` found.

    ``facts`` are (section, name, value) rows for people; ``problems`` are reasons to refuse a
    run; ``notes`` are what tomopilot will change (and restore) when it runs.
    """

    version: str = "unknown"
    facts: list[tuple[str, str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether tomopilot can run on this set-up."""
        return not self.problems

    def add(self, section: str, name: str, value: Any) -> None:
        """Record one fact."""
        self.facts.append((section, name, str(value)))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "version": self.version,
            "ok": self.ok,
            "facts": [list(f) for f in self.facts],
            "problems": list(self.problems),
            "notes": list(self.notes),
        }


def serialem_version(session: SerialEMSession) -> int:
    """The largest version number V (``30803`` = 3.8.3) with ``IsVersionAtLeast V`` true."""
    low, high = 30000, 99999
    if reported_int(session.number("IsVersionAtLeast", low)) != 1:
        return 0
    while low < high:
        middle = (low + high + 1) // 2
        if reported_int(session.number("IsVersionAtLeast", middle)) == 1:
            low = middle
        else:
            high = middle - 1
    return low


def version_text(number: int) -> str:
    """``40203`` → ``'4.2.3'``."""
    if number <= 0:
        return "older than 3.0"
    return f"{number // 10000}.{number // 100 % 100}.{number % 100}"


def _matrix_text(matrix: np.ndarray) -> str:
    return " ".join(f"{v:.5g}" for v in matrix.ravel())


def check_setup(
    scope: SerialEMMicroscope,
    *,
    needed_image_shift_um: float | None = None,
    needed_tilt_deg: float | None = None,
) -> SetupReport:
    """Inspect SerialEM through ``scope`` (opened with ``prepare=False``)."""
    report = SetupReport()
    session = scope.session
    core: SerialEMCore = scope._core
    number = serialem_version(session)
    report.version = version_text(number)
    report.add("SerialEM", "version", report.version)
    if number < MINIMUM_VERSION:
        report.problems.append(
            f"SerialEM {report.version} is too old: tomopilot needs {version_text(MINIMUM_VERSION)}"
            " or newer (image-shift moves are checked against the limit since 4.1)"
        )
    low_dose = session.values("ReportLowDose")
    on = bool(low_dose) and reported_int(low_dose[0]) != 0
    report.add("Low Dose", "mode", "on" if on else "off")
    if not on:
        report.problems.append(
            "Low Dose is off: set up the View, Focus, Trial and Record areas and turn Low Dose "
            "on (tomopilot reads its imaging conditions from them)"
        )
    _limits(scope, report, needed_image_shift_um, needed_tilt_deg)
    _camera(session, report)
    if on:
        for area in CHECKED_AREAS:
            _area(scope, core, area, report)
    _state(session, report)
    return report


def _limits(
    scope: SerialEMMicroscope,
    report: SetupReport,
    needed_is_um: float | None,
    needed_tilt_deg: float | None,
) -> None:
    try:
        is_limit = scope.optics.image_shift_limit_um
        tilt_limit = scope.stage.limits.tilt_deg
    except SerialEMError as exc:
        report.problems.append(
            f"cannot read the ImageShiftLimit/MaximumTiltAngle properties: {exc}"
        )
        return
    report.add("limits", "image shift (ImageShiftLimit)", f"{is_limit:g} µm")
    report.add("limits", "tilt (MaximumTiltAngle)", f"±{tilt_limit:g}°")
    if needed_is_um is not None and needed_is_um > is_limit:
        report.problems.append(
            f"the farthest target needs {needed_is_um:.2f} µm of image shift but SerialEM's "
            f"ImageShiftLimit is {is_limit:g} µm (raise the property or move targets closer)"
        )
    if needed_tilt_deg is not None and needed_tilt_deg > tilt_limit:
        report.problems.append(
            f"the tilt scheme reaches {needed_tilt_deg:g}° but MaximumTiltAngle is {tilt_limit:g}°"
        )


def _camera(session: SerialEMSession, report: SetupReport) -> None:
    try:
        values = session.values("CameraProperties")
    except SerialEMError as exc:
        report.problems.append(f"no camera: CameraProperties failed ({exc})")
        return
    if len(values) >= 2:
        report.add("camera", "size", f"{float(values[0]):g} × {float(values[1]):g} px")
    if len(values) >= 3:
        report.add("camera", "rotation and flip", f"{float(values[2]):g}")
    if len(values) >= 4:
        report.add("camera", "detector pixel", f"{float(values[3]):g} µm")


def _area(
    scope: SerialEMMicroscope, core: SerialEMCore, area: LowDoseArea, report: SetupReport
) -> None:
    section = f"{area.value} area"
    try:
        preset = scope.optics.preset(area)
    except (SerialEMError, ValueError) as exc:
        report.problems.append(f"cannot read the {area.value} area's conditions: {exc}")
        return
    report.add(section, "magnification", f"{preset.magnification}×")
    report.add(section, "pixel", f"{preset.pixel_size_a:.3g} Å (binning {preset.binning})")
    report.add(section, "exposure", f"{preset.exposure_s:g} s")
    if preset.defocus_offset_um:
        report.add(section, "defocus offset", f"{preset.defocus_offset_um:g} µm")
    if preset.offset_along_axis_um:
        report.add(section, "position on the tilt axis", f"{preset.offset_along_axis_um:g} µm")
    letter = AREA_LETTER[area]
    if area is LowDoseArea.PREVIEW:
        return
    report.add(section, "SpecimenToCameraMatrix", _matrix_text(core.camera_matrix(letter)))
    try:
        core.go_to(letter)
        matrix = core.is_matrix()
        report.add(section, "SpecimenToISMatrix", _matrix_text(matrix))
    except SerialEMError as exc:
        report.problems.append(f"image shift is not calibrated in the {area.value} area: {exc}")


def _state(session: SerialEMSession, report: SetupReport) -> None:
    try:
        offset = session.number("ReportTiltAxisOffset")
        report.add("calibrations", "tilt-axis offset", f"{offset:g} µm")
    except SerialEMError as exc:
        report.problems.append(f"cannot read the tilt-axis offset: {exc}")
    try:
        valve = reported_int(session.number("ReportColumnOrGunValve"))
        report.add("state", "column valve", {1: "open", 0: "closed"}.get(valve, "unknown"))
        if valve == 0:
            report.notes.append(
                "the column valve is closed: tomopilot opens it and closes it after"
            )
    except SerialEMError as exc:
        report.notes.append(f"the column valve state is unknown ({exc})")
    try:
        filling = reported_int(session.number("AreDewarsFilling"))
        report.add("state", "dewars", "filling" if filling else "idle")
    except SerialEMError:
        report.add("state", "dewars", "not reported")
    report.notes.append(
        "tomopilot restores at the end: image shift, Record focus, tilt, autofocus target, "
        "tilt-axis offset, camera parameter sets, magnifications, column valve, Low Dose mode"
    )
