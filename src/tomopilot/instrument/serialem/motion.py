"""Stage and optics through SerialEM's script commands.

Stage: ``ReportStageXYZ``/``ReportTiltAngle`` read it; ``MoveStageTo x y [z]`` moves it (z is
sent only when it changes, as SerialEM leaves z alone without it); ``TiltTo`` tilts. A
backlash-compensated approach goes first to ``xy_backlash_um`` (``tilt_backlash_deg``) below the
goal on every axis that moves down, then up to the goal, so the last approach is always in +
(PACEtomo's and SerialEM's montage convention). Travel limits: ``MaximumTiltAngle`` from
SerialEM's properties, x/y/z from the facility settings (SerialEM does not report them).

Optics: the image shift is kept in specimen µm through SerialEM's own calibration:
``SetImageShift`` of ``SpecimenToISMatrix`` × (x, y) at the current magnification (the values
are in ReportImageShift's frame: tilt-axis offset and low-dose area shifts removed), read back
with ``ReportSpecimenShift``. The limit is SerialEM's ``ImageShiftLimit`` property, checked
before anything is sent. Every shift is sent with the settling multiplier ``#D`` = 1: without it
a script's ``SetImageShift`` sets no image-shift time-out, and the next exposure could start
before the deflectors have settled (SerialEM waits out the time-out from its IS delay table only
when ``#D`` > 0, counting the camera's start-up against it, ``StartupForISDelays``).

Focus: ``SetDefocus``/``ReportDefocus`` in an area without a defocus offset (Record, Focus,
Trial), so the value is the Record focus whatever area was last used.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from tomopilot.instrument.errors import ImageShiftLimitError, StageLimitError
from tomopilot.instrument.events import StageMoved
from tomopilot.instrument.serialem.core import AREA_LETTER, CAMERA_SET, SerialEMCore
from tomopilot.instrument.serialem.session import SerialEMCommandError
from tomopilot.instrument.stage_moves import (
    check_stage_xyz,
    check_tilt,
    tilt_approach_deg,
    xy_approach_um,
)
from tomopilot.instrument.types import AreaPreset, LowDoseArea, StageLimits, StagePosition

IS_SETTLING_MULTIPLIER = 1.0  # SetImageShift's #D: one calibrated settling from SerialEM's table


class SerialEMStage:
    """The goniometer (implements :class:`~tomopilot.instrument.Stage`)."""

    def __init__(self, core: SerialEMCore) -> None:
        self._core = core
        self._tilt_limit: float | None = None

    @property
    def limits(self) -> StageLimits:
        if self._tilt_limit is None:
            self._tilt_limit = self._core.session.number("ReportProperty", "MaximumTiltAngle")
        options = self._core.options
        return StageLimits(
            xy_um=options.xy_limit_um, z_um=options.z_limit_um, tilt_deg=self._tilt_limit
        )

    def position(self) -> StagePosition:
        self._core.stage_cache = None
        return self._core.stage_position()

    def _move(self, x: float, y: float, z: float | None) -> None:
        core = self._core
        start = core.clock.now_s()
        if z is None:
            core.session.call("MoveStageTo", x, y)
        else:
            core.session.call("MoveStageTo", x, y, z)
        core.stage_cache = None
        core.image_shift_cache = None
        self._emit(core.clock.now_s() - start)

    def move_to(
        self,
        *,
        x_um: float | None = None,
        y_um: float | None = None,
        z_um: float | None = None,
        backlash_compensate: bool = False,
    ) -> None:
        cur = self._core.stage_position()
        x = cur.x_um if x_um is None else float(x_um)
        y = cur.y_um if y_um is None else float(y_um)
        z = cur.z_um if z_um is None else float(z_um)
        check_stage_xyz(self.limits, x, y, z)
        new_z = None if z_um is None or math.isclose(z, cur.z_um, abs_tol=1e-4) else z
        via = xy_approach_um((cur.x_um, cur.y_um), (x, y), self._core.options.xy_backlash_um)
        if backlash_compensate and via is not None:
            self._move(*via, new_z)
        self._move(x, y, new_z)

    def move_by(
        self,
        *,
        dx_um: float = 0.0,
        dy_um: float = 0.0,
        dz_um: float = 0.0,
        backlash_compensate: bool = False,
    ) -> None:
        cur = self._core.stage_position()
        self.move_to(
            x_um=cur.x_um + dx_um,
            y_um=cur.y_um + dy_um,
            z_um=cur.z_um + dz_um if dz_um else None,
            backlash_compensate=backlash_compensate,
        )

    def tilt_to(self, tilt_deg: float, *, backlash_compensate: bool = False) -> None:
        limit = self.limits.tilt_deg
        check_tilt(self.limits, tilt_deg)
        core = self._core
        current = core.stage_position().tilt_deg
        start = core.clock.now_s()
        via = tilt_approach_deg(current, tilt_deg, core.options.tilt_backlash_deg, limit)
        if backlash_compensate and via is not None:
            core.session.call("TiltTo", via)
        core.session.call("TiltTo", float(tilt_deg))
        core.stage_cache = None
        core.image_shift_cache = None
        self._emit(core.clock.now_s() - start)

    @property
    def tilt_axis_offset_um(self) -> float:
        return self._core.session.number("ReportTiltAxisOffset")

    def set_tilt_axis_offset_um(self, offset_um: float) -> None:
        if not math.isfinite(offset_um) or abs(offset_um) > 50:
            raise StageLimitError("tilt-axis offset", offset_um, -50.0, 50.0, "µm")
        originals = self._core.originals
        if originals.tilt_axis_offset_um is None:
            originals.tilt_axis_offset_um = self.tilt_axis_offset_um
        self._core.session.call("SetTiltAxisOffset", float(offset_um))
        self._core.image_shift_cache = None

    def _emit(self, duration_s: float) -> None:
        pos = self._core.stage_position()
        self._core.events.emit(
            StageMoved(
                time_s=self._core.clock.now_s(),
                x_um=pos.x_um,
                y_um=pos.y_um,
                z_um=pos.z_um,
                tilt_deg=pos.tilt_deg,
                duration_s=duration_s,
            )
        )


class SerialEMOptics:
    """Image shift, focus and presets (implements :class:`~tomopilot.instrument.Optics`)."""

    def __init__(self, core: SerialEMCore) -> None:
        self._core = core
        self._limit: float | None = None

    @property
    def image_shift_limit_um(self) -> float:
        if self._limit is None:
            self._limit = self._core.session.number("ReportProperty", "ImageShiftLimit")
        return self._limit

    def image_shift_um(self) -> tuple[float, float]:
        return self._core.image_shift_um()

    def set_image_shift_um(self, x_um: float, y_um: float) -> None:
        limit = self.image_shift_limit_um
        if not (math.isfinite(x_um) and math.isfinite(y_um)) or max(abs(x_um), abs(y_um)) > limit:
            raise ImageShiftLimitError((x_um, y_um), limit)
        units = self._core.is_matrix() @ np.array([x_um, y_um], dtype=np.float64)
        self._send_shift(float(units[0]), float(units[1]))
        self._core.image_shift_cache = (float(x_um), float(y_um))

    def image_shift_units(self) -> tuple[float, float]:
        x, y = self._core.session.floats("ReportImageShift", n=2)
        return x, y

    def set_image_shift_units(self, x: float, y: float) -> None:
        um = np.linalg.solve(self._core.is_matrix(), np.array([x, y], dtype=np.float64))
        limit = self.image_shift_limit_um
        if not (math.isfinite(x) and math.isfinite(y)) or np.any(np.abs(um) > limit):
            raise ImageShiftLimitError((float(um[0]), float(um[1])), limit)
        self._send_shift(float(x), float(y))
        self._core.image_shift_cache = None

    def _send_shift(self, x: float, y: float) -> None:
        self._core.session.call("SetImageShift", x, y, IS_SETTLING_MULTIPLIER)

    def specimen_to_is_matrix(self) -> NDArray[np.float64]:
        return self._core.is_matrix().copy()

    def focus_um(self) -> float:
        return self._core.focus_um()

    def set_focus_um(self, focus_um: float) -> None:
        if not math.isfinite(focus_um) or abs(focus_um) > 1000:
            raise ValueError(f"focus {focus_um} µm is outside the objective's range")
        core = self._core
        if core.focus_cache is not None and core.focus_cache == focus_um:
            return
        core.ensure_focus_area()
        core.session.call("SetDefocus", float(focus_um))
        core.focus_cache = float(focus_um)

    def magnifications(self) -> tuple[int, ...]:
        """SerialEM's magnification table (read once; see :mod:`~.core`)."""
        return tuple(mag for mag, _ in self._core.magnification_table())

    def pixel_size_a(self, magnification: int) -> float:
        """The unbinned pixel at ``magnification`` from SerialEM's calibration
        (``SpecimenToCameraMatrix`` at its mag index)."""
        for mag, pixel_a in self._core.magnification_table():
            if mag == magnification:
                if not pixel_a > 0:
                    raise SerialEMCommandError(
                        "SpecimenToCameraMatrix", f"no pixel calibration at {magnification}×"
                    )
                return pixel_a
        raise SerialEMCommandError(
            "SetMag", f"{magnification}× is not in the microscope's magnification table"
        )

    def preset(self, area: LowDoseArea) -> AreaPreset:
        return self._core.preset(area)

    def set_preset(self, area: LowDoseArea, preset: AreaPreset | dict[str, object]) -> None:
        """Change the camera parameters (and magnification) of an area.

        Exposure → ``SetExposure``; binning → ``SetBinning``; a centred sub-area →
        ``SetCameraArea``; Focus/Trial position on the tilt axis → ``SetAxisPosition``;
        magnification → ``SetMag`` in the area. SerialEM restores camera parameters changed by
        script commands when the script ends (and tomopilot calls ``RestoreCameraSet`` at
        ``close()``); magnifications and axis positions are put back by ``close()``.
        """
        if not isinstance(preset, AreaPreset):
            preset = AreaPreset.model_validate(preset)
        area = LowDoseArea(area)
        core = self._core
        old = core.preset(area)
        session = core.session
        camera_set = CAMERA_SET[area]
        if preset.defocus_offset_um != old.defocus_offset_um:
            raise SerialEMCommandError(
                "SetLDDefocusOffset",
                f"tomopilot does not change the {area} defocus offset; set it in Low Dose",
            )
        if preset.exposure_s != old.exposure_s:
            session.call("SetExposure", camera_set, float(preset.exposure_s))
            core.originals.camera_sets_changed = True
        if preset.binning != old.binning:
            session.call("SetBinning", camera_set, int(preset.binning))
            core.originals.camera_sets_changed = True
        if preset.camera_area_px != old.camera_area_px:
            self._camera_area(camera_set, preset.camera_area_px)
            core.originals.camera_sets_changed = True
        letter = AREA_LETTER[area]
        if preset.offset_along_axis_um != old.offset_along_axis_um and letter in ("F", "T"):
            core.originals.axis_positions.setdefault(letter, old.offset_along_axis_um)
            session.call("SetAxisPosition", letter, float(preset.offset_along_axis_um))
        if preset.magnification != old.magnification:
            core.go_to(letter)
            core.originals.magnifications.setdefault(letter, float(old.magnification))
            session.call("SetMag", int(preset.magnification))
            core.camera_matrices.pop(letter, None)
            core.is_matrices.pop(letter, None)
            # the pixel is SerialEM's calibration at the new magnification, not the preset's
            px_per_um = math.sqrt(abs(float(np.linalg.det(core.camera_matrix(letter)))))
            if px_per_um > 0:
                preset = preset.model_copy(update={"unbinned_pixel_size_a": 1e4 / px_per_um})
        core.presets[area] = preset
        if area is LowDoseArea.RECORD and LowDoseArea.PREVIEW in core.presets:
            core.presets.pop(LowDoseArea.PREVIEW)  # Preview shares Record's magnification

    def _camera_area(self, camera_set: str, area_px: tuple[int, int] | None) -> None:
        session = self._core.session
        if area_px is None:
            session.call("SetCameraArea", camera_set, "F")
            return
        width, height = (int(v) for v in session.floats("CameraProperties", n=2))
        w, h = area_px
        left, top = (width - w) // 2, (height - h) // 2
        session.call("SetCameraArea", camera_set, left, left + w, top, top + h)
