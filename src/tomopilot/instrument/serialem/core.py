"""State the SerialEM backend's parts share: the session, low-dose areas, presets, caches.

Low-dose areas map to SerialEM as follows (SerialEM's script commands):

===========  ===============  ===============  ==========================
area         GoToLowDoseArea  acquire command  camera parameter set
===========  ===============  ===============  ==========================
Search       ``S``            ``Search``       ``S``
View         ``V``            ``V``            ``V``
Focus        ``F``            ``F``            ``F``
Trial        ``T``            ``T``            ``T``
Record       ``R``            ``R``            ``R``
Preview      ``R``            ``L``            ``P``
===========  ===============  ===============  ==========================

A preset is read from SerialEM the first time it is needed (the area is visited with
``GoToLowDoseArea``, which exposes nothing): ``ReportMag``, ``SpecimenToCameraMatrix 0`` (the
pixel on the specimen), ``ReportBinning`` (or, where the module lacks it, ``ImageProperties`` of
the area's first image), ``ReportExposure``, ``ReportLDDefocusOffset`` (View
and Search) and ``ReportAxisPosition`` (Focus and Trial). The dose rate is learned from the
counts of each image (``counts / CountsPerElectron`` per unbinned pixel per second).

The magnification table (:meth:`SerialEMCore.magnification_table`): SerialEM has no command that
lists it, so it is read once, in the Search area with nothing exposed: ``SetMagIndex i`` and
``ReportMag`` for i = 1, 2, … until SerialEM refuses three indices in a row (a single refused
index is a gap some microscopes' tables have), each entry's pixel from
``SpecimenToCameraMatrix i``; the Search magnification is then set back (``SetMagIndex``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tomopilot.core.events import EventBus
from tomopilot.instrument.serialem.clock import SerialEMClock
from tomopilot.instrument.serialem.session import SerialEMCommandError, SerialEMSession
from tomopilot.instrument.types import AreaPreset, LowDoseArea, StagePosition

AREA_LETTER = {
    LowDoseArea.SEARCH: "S",
    LowDoseArea.VIEW: "V",
    LowDoseArea.FOCUS: "F",
    LowDoseArea.TRIAL: "T",
    LowDoseArea.RECORD: "R",
    LowDoseArea.PREVIEW: "R",
}
ACQUIRE_COMMAND = {
    LowDoseArea.SEARCH: "Search",
    LowDoseArea.VIEW: "V",
    LowDoseArea.FOCUS: "F",
    LowDoseArea.TRIAL: "T",
    LowDoseArea.RECORD: "R",
    LowDoseArea.PREVIEW: "L",
}
CAMERA_SET = {
    LowDoseArea.SEARCH: "S",
    LowDoseArea.VIEW: "V",
    LowDoseArea.FOCUS: "F",
    LowDoseArea.TRIAL: "T",
    LowDoseArea.RECORD: "R",
    LowDoseArea.PREVIEW: "P",
}
OFFSET_AREAS = ("V", "S")
MAX_MAG_INDEX = 80  # beyond any microscope's table (a Krios has about 50 entries, LM and SA)
MAX_REFUSED_INDICES = 3  # this many refused indices in a row end the table
"""Areas with a defocus offset: the focus readout there is not the Record focus."""


@dataclass
class SerialEMOptions:
    """What SerialEM cannot report and tomopilot must be told (facility settings).

    ``xy_limit_um``/``z_limit_um``: stage travel (not readable by script); ``xy_backlash_um``
    and ``tilt_backlash_deg``: the overshoot of a backlash-compensated approach (SerialEM's
    stage backlash and PACEtomo's tilt backlash); ``beam_diameter_um``: the illuminated area
    on the specimen; ``dewar_poll_s``: how often a fill is polled; ``frame_time_s``: the
    frame time of Record movies; ``voltage_kv``/``cs_mm``: the microscope's, for the mdoc
    and the Records' CTF fits.
    """

    xy_limit_um: float = 990.0
    z_limit_um: float = 300.0
    xy_backlash_um: float = 5.0
    tilt_backlash_deg: float = 3.0
    beam_diameter_um: float = 1.5
    dewar_poll_s: float = 30.0
    frame_time_s: float = 0.1
    voltage_kv: float = 300.0
    cs_mm: float = 2.7


@dataclass
class Originals:
    """The microscope's state before tomopilot touched it, restored by ``close()``."""

    image_shift_units: tuple[float, float] | None = None
    focus_um: float | None = None
    target_defocus_um: float | None = None
    tilt_axis_offset_um: float | None = None
    tilt_deg: float | None = None
    low_dose_was_off: bool = False
    valve_was_closed: bool = False
    magnifications: dict[str, float] = field(default_factory=dict)
    axis_positions: dict[str, float] = field(default_factory=dict)
    camera_sets_changed: bool = False


class SerialEMCore:
    """The session plus what the parts must agree on."""

    def __init__(
        self, session: SerialEMSession, options: SerialEMOptions, events: EventBus
    ) -> None:
        self.session = session
        self.options = options
        self.events = events
        self.clock = SerialEMClock(session)
        self.area: str | None = None
        self.presets: dict[LowDoseArea, AreaPreset] = {}
        self.camera_matrices: dict[str, NDArray[np.float64]] = {}
        self.is_matrices: dict[str, NDArray[np.float64]] = {}
        self.focus_cache: float | None = None
        self.image_shift_cache: tuple[float, float] | None = None
        self.stage_cache: StagePosition | None = None
        self.originals = Originals()
        self.counts_per_electron: float | None = None
        self.binning_unknown: set[LowDoseArea] = set()
        self.n_exposures = 0
        self.mag_table: list[tuple[int, float]] | None = None

    # -- low-dose areas -----------------------------------------------------------------------
    def go_to(self, letter: str) -> None:
        """Switch to the low-dose area ``letter`` (V, F, T, R or S) unless already there."""
        if self.area != letter:
            self.session.call("GoToLowDoseArea", letter)
            self.area = letter

    def ensure_focus_area(self) -> None:
        """Be in an area whose focus readout is the Record focus (not View or Search)."""
        if self.area is None or self.area in OFFSET_AREAS:
            self.go_to("R")

    def camera_matrix(self, letter: str) -> NDArray[np.float64]:
        """SpecimenToCameraMatrix of area ``letter`` (unbinned pixels per µm)."""
        if letter not in self.camera_matrices:
            self.go_to(letter)
            a, b, c, d = self.session.matrix("SpecimenToCameraMatrix", 0)
            self.camera_matrices[letter] = np.array([[a, b], [c, d]], dtype=np.float64)
        return self.camera_matrices[letter]

    def is_matrix(self) -> NDArray[np.float64]:
        """SpecimenToISMatrix at the current area's magnification."""
        key = self.area or "-"
        if key not in self.is_matrices:
            a, b, c, d = self.session.matrix("SpecimenToISMatrix", 0)
            matrix = np.array([[a, b], [c, d]], dtype=np.float64)
            if not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix)) < 1e-12:
                raise SerialEMCommandError(
                    "SpecimenToISMatrix", f"image shift is not calibrated here: {matrix.ravel()}"
                )
            self.is_matrices[key] = matrix
        return self.is_matrices[key]

    def preset(self, area: LowDoseArea) -> AreaPreset:
        """The conditions of ``area``, read from SerialEM once."""
        area = LowDoseArea(area)
        if area not in self.presets:
            self.presets[area] = self._read_preset(area)
        return self.presets[area]

    def _read_preset(self, area: LowDoseArea) -> AreaPreset:
        letter = AREA_LETTER[area]
        camera_set = CAMERA_SET[area]
        session = self.session
        self.go_to(letter)
        magnification = session.number("ReportMag")
        matrix = self.camera_matrix(letter)
        px_per_um = math.sqrt(abs(float(np.linalg.det(matrix))))
        if not px_per_um > 0:
            raise SerialEMCommandError(
                "SpecimenToCameraMatrix", f"no pixel-size calibration for the {area} area"
            )
        try:
            binning = session.number("ReportBinning", camera_set)
        except SerialEMCommandError as exc:
            if "no such command" not in str(exc):
                raise
            binning = 1.0  # a module without ReportBinning: learned from the first image
            self.binning_unknown.add(area)
        exposure = session.number("ReportExposure", camera_set)
        offset = session.number("ReportLDDefocusOffset", letter) if letter in OFFSET_AREAS else 0.0
        axis = session.number("ReportAxisPosition", letter) if letter in ("F", "T") else 0.0
        return AreaPreset(
            magnification=max(1, round(magnification)),
            unbinned_pixel_size_a=1e4 / px_per_um,
            binning=max(1, round(binning)),
            defocus_offset_um=offset,
            exposure_s=exposure,
            dose_rate_e_px_s=0.0,
            frame_time_s=self.options.frame_time_s,
            offset_along_axis_um=axis,
            beam_diameter_um=self.options.beam_diameter_um,
        )

    def magnification_table(self) -> list[tuple[int, float]]:
        """(nominal magnification, unbinned pixel Å) of each mag index, ascending (see module
        docstring); 0 Å where SerialEM has no pixel calibration."""
        if self.mag_table is not None:
            return self.mag_table
        session = self.session
        self.go_to("S")
        start = round(session.number("ReportMagIndex"))
        self.originals.magnifications.setdefault("S", session.number("ReportMag"))
        table: list[tuple[int, float]] = []
        refused = 0
        try:
            for index in range(1, MAX_MAG_INDEX + 1):
                try:
                    session.call("SetMagIndex", index)
                except SerialEMCommandError as exc:
                    if "no such command" in str(exc):
                        raise
                    refused += 1  # a gap in the table (some scopes), or past its end
                    if refused >= MAX_REFUSED_INDICES:
                        break
                    continue
                refused = 0
                magnification = round(session.number("ReportMag"))
                a, b, c, d = session.matrix("SpecimenToCameraMatrix", index)
                px_per_um = math.sqrt(abs(a * d - b * c))
                table.append((magnification, 1e4 / px_per_um if px_per_um > 0 else 0.0))
        finally:
            session.call("SetMagIndex", start)
            self.camera_matrices.pop("S", None)
            self.is_matrices.pop("S", None)
        if not table:
            raise SerialEMCommandError("SetMagIndex", "SerialEM reported no magnification table")
        self.mag_table = sorted(set(table))
        return self.mag_table

    def electrons_per_count(self) -> float:
        """1 / CountsPerElectron of the current camera (1 if SerialEM does not know it)."""
        if self.counts_per_electron is None:
            value = 1.0
            for camera in (0, 1):  # 0 = the current camera; some builds count from 1 only
                try:
                    value = self.session.number("ReportCameraProperty", camera, "CountsPerElectron")
                    break
                except SerialEMCommandError:
                    continue
            self.counts_per_electron = value if value > 0 else 1.0
        return 1.0 / self.counts_per_electron

    def forget_position(self) -> None:
        """After an operation that may move stage, image shift or focus."""
        self.stage_cache = None
        self.image_shift_cache = None
        self.focus_cache = None

    def stage_position(self) -> StagePosition:
        """The stage readout (cached until the next move)."""
        if self.stage_cache is None:
            x, y, z = self.session.floats("ReportStageXYZ", n=3)
            tilt = self.session.number("ReportTiltAngle")
            self.stage_cache = StagePosition(x, y, z, tilt)
        return self.stage_cache

    def image_shift_um(self) -> tuple[float, float]:
        """The specimen shift (``ReportSpecimenShift``; cached until the next change)."""
        if self.image_shift_cache is None:
            x, y = self.session.floats("ReportSpecimenShift", n=2)
            self.image_shift_cache = (x, y)
        return self.image_shift_cache

    def focus_um(self) -> float:
        """The Record focus readout (``ReportDefocus`` outside View/Search; cached)."""
        if self.focus_cache is None:
            self.ensure_focus_area()
            self.focus_cache = self.session.number("ReportDefocus")
        return self.focus_cache


def reported_int(value: Any) -> int:
    """A reported flag or count (the module reports numbers as floats)."""
    return round(float(value))
