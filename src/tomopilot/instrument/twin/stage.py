"""The twin's stage: the ``Stage`` protocol on top of :class:`StageModel`, with time costs."""

from __future__ import annotations

import math

from tomopilot.instrument.errors import StageError, StageLimitError
from tomopilot.instrument.events import FaultTriggered, StageMoved
from tomopilot.instrument.stage_moves import (
    check_stage_xyz,
    check_tilt,
    tilt_approach_deg,
    xy_approach_um,
)
from tomopilot.instrument.twin.core import TwinCore, logged
from tomopilot.instrument.types import StageLimits, StagePosition

XY_APPROACH_UM = 5.0  # SerialEM montage backlash distance on Thermo stages (SEM-P)
TILT_APPROACH_DEG = 3.0  # SerialEM TiltBacklash (SEM-P)
Z_SPEED_UM_S = 10.0  # est.
Z_SETTLE_S = 1.0  # est.


class TwinStage:
    """Goniometer of the twin (implements :class:`~tomopilot.instrument.Stage`)."""

    _part = "stage"

    def __init__(self, core: TwinCore) -> None:
        self._core = core
        cfg = core.config.stage
        rng = core.rng(1, 1)
        self._axis_offset_setting = cfg.tilt_axis_offset_um + float(
            rng.normal(0.0, cfg.tilt_axis_calibration_residual_um)
        )

    @property
    def limits(self) -> StageLimits:
        cfg = self._core.config.stage
        return StageLimits(xy_um=cfg.xy_limit_um, z_um=cfg.z_limit_um, tilt_deg=cfg.tilt_limit_deg)

    def position(self) -> StagePosition:
        x, y, z, tilt = (float(v) for v in self._core.stage.commanded)
        return StagePosition(round(x, 4), round(y, 4), round(z, 4), round(tilt, 3))

    # -- translation --------------------------------------------------------------------------
    def _fault(self) -> None:
        core = self._core
        spec = core.faults.on_move(core.stage.n_moves, core.clock.now_s())
        if spec is None:
            return
        core.events.emit(FaultTriggered(time_s=core.clock.now_s(), fault=spec.kind))
        core.truth.note(core.clock.now_s(), spec.kind, magnitude_um=spec.magnitude_um)
        if spec.kind == "stage_error":
            core.spend("stage_error", 5.0)
            raise StageError("the goniometer reported an error and did not complete the move")
        core.stage.jump(spec.magnitude_um, core.clock.now_s())

    def _translate(self, x: float, y: float, z: float) -> None:
        core = self._core
        cur = core.stage.commanded
        distance = math.hypot(x - cur[0], y - cur[1])
        dz = abs(z - cur[2])
        duration = 0.0
        if distance > 0:
            duration += distance / core.config.stage.xy_speed_um_s + core.config.stage.xy_settle_s
        if dz > 0:
            duration += dz / Z_SPEED_UM_S + Z_SETTLE_S
        core.spend("stage_move", duration)
        core.stage.move_xyz(x, y, z, core.clock.now_s())
        self._emit(duration)

    @logged
    def move_to(
        self,
        *,
        x_um: float | None = None,
        y_um: float | None = None,
        z_um: float | None = None,
        backlash_compensate: bool = False,
    ) -> None:
        cur = self._core.stage.commanded
        x = float(cur[0] if x_um is None else x_um)
        y = float(cur[1] if y_um is None else y_um)
        z = float(cur[2] if z_um is None else z_um)
        check_stage_xyz(self.limits, x, y, z)
        self._fault()
        via = xy_approach_um((cur[0], cur[1]), (x, y), XY_APPROACH_UM)
        if backlash_compensate and via is not None:
            self._translate(*via, z)
        self._translate(x, y, z)

    @logged
    def move_by(
        self,
        *,
        dx_um: float = 0.0,
        dy_um: float = 0.0,
        dz_um: float = 0.0,
        backlash_compensate: bool = False,
    ) -> None:
        cur = self._core.stage.commanded
        self.move_to(
            x_um=float(cur[0]) + dx_um,
            y_um=float(cur[1]) + dy_um,
            z_um=float(cur[2]) + dz_um,
            backlash_compensate=backlash_compensate,
        )

    # -- tilt ---------------------------------------------------------------------------------
    def _rotate(self, tilt_deg: float) -> None:
        core = self._core
        delta = abs(tilt_deg - core.stage.commanded[3])
        if delta == 0:
            return
        duration = delta / core.config.stage.tilt_speed_deg_s + core.config.stage.tilt_settle_s
        core.spend("stage_tilt", duration)
        core.stage.tilt(tilt_deg, core.clock.now_s())
        self._emit(duration)

    @logged
    def tilt_to(self, tilt_deg: float, *, backlash_compensate: bool = False) -> None:
        limit = self.limits.tilt_deg
        check_tilt(self.limits, tilt_deg)
        self._fault()
        current = float(self._core.stage.commanded[3])
        via = tilt_approach_deg(current, tilt_deg, TILT_APPROACH_DEG, limit)
        if backlash_compensate and via is not None:
            self._rotate(via)
        self._rotate(tilt_deg)

    # -- axis offset --------------------------------------------------------------------------
    @property
    def tilt_axis_offset_um(self) -> float:
        return self._axis_offset_setting

    @logged
    def set_tilt_axis_offset_um(self, offset_um: float) -> None:
        if not math.isfinite(offset_um) or abs(offset_um) > 50:
            raise StageLimitError("tilt-axis offset", offset_um, -50.0, 50.0, "µm")
        self._axis_offset_setting = float(offset_um)

    def _emit(self, duration: float) -> None:
        pos = self.position()
        self._core.events.emit(
            StageMoved(
                time_s=self._core.clock.now_s(),
                x_um=pos.x_um,
                y_um=pos.y_um,
                z_um=pos.z_um,
                tilt_deg=pos.tilt_deg,
                duration_s=duration,
            )
        )
