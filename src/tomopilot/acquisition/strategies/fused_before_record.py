"""What ``fused`` measures before the first Record of a tilt.

Before target 1's Record, a short binned shot of a spot next to it measures the tilt's common
step (``fused_track``); when the spot is not found where the trend put it (a run-away ramping
up, a jump), a View of target 1 measures the step instead (``fused_relocate``). Once per branch
the Focus area beside target 1 reads the defocus planned for target 1 (``fused_focus``).
"""

from __future__ import annotations

import numpy as np

from tomopilot.acquisition.plan.target_defocus import defocus_range_um
from tomopilot.acquisition.plan.tilt_schemes import TiltStep
from tomopilot.acquisition.strategies.fused_focus import FOCUS_CHECK_DEFOCUS_UM
from tomopilot.acquisition.strategies.fused_model import FusedModel
from tomopilot.acquisition.strategies.fused_state import TiltRound

# The spot's shots (binned to ~32 Å) are aligned with a plain correlation: removing a 130 Å
# background at that pixel left mostly noise, and the spot was lost beyond ±20° (autoloader
# lamella, seed 1: target 1 within 50 nm at 68 % of its tilts against 83 % with the plain one).
SPOT_FLATTEN_A: float | None = None


class FusedBeforeRecord(FusedModel):
    """The tracking spot's shot, its View fallback and the focus check (module docstring)."""

    def first_shift_um(self, step: TiltStep) -> tuple[float, float] | None:
        """The image shift of the tilt's first exposure, the tracking spot's shot, before the
        stage tilts to ``step`` (None: no spot shot comes first). The engine sets it then, so
        that with ``settle_in_startup`` its settling runs while the stage tilts."""
        if self.spot is None or self._toolkit is None or step.branch == "start":
            return None
        previous = self.round
        if previous.step_index != step.index:
            self.spot.learn(previous.step_index, previous.lateral)  # as _measure_spot does
        trend = self._trend(step)
        return self.spot.aim(
            step.branch, step.tilt_deg, (trend[0], trend[1], trend[2]), self._rotate
        )

    def _spot_due(self, step: TiltStep) -> bool:
        r = self.round
        return (
            self.spot is not None
            and self._toolkit is not None
            and step.branch != "start"
            and not r.lateral
            and not r.spot_tried
        )

    def _measure_spot(self, step: TiltStep, previous: TiltRound) -> None:
        """The tracking spot's shot before the first Record of the tilt (``fused_track``)."""
        assert self.spot is not None and self._toolkit is not None
        self.round.spot_tried = True
        if previous.step_index != step.index:
            self.spot.learn(previous.step_index, previous.lateral)
        trend = self._trend(step)
        trend[2] += self.focus.axis_depth_um(step.branch, step.tilt_deg)
        self.round.spot = self.spot.measure(
            self._toolkit,
            step.branch,
            step.tilt_deg,
            step.index,
            (trend[0], trend[1], trend[2]),
            self._rotate,
            SPOT_FLATTEN_A,
            self.settings,
        )
        last = self.spot.last
        if self.round.spot is None and last is not None and last.get("failed"):
            # Not found where the trend put it: the step left the spot's small field (a
            # run-away ramping up, a jump). A View of target 1 measures the step instead,
            # before target 1's Record rather than after it.
            self.round.spot = self._view_common_step(step, trend)
            if self.round.spot is not None:
                self.spot.reanchor(self.round.spot)

    def _view_common_step(self, step: TiltStep, trend: list[float]) -> list[float] | None:
        """The common (x, y) step at this tilt from a View of target 1 (None: not found)."""
        assert self._toolkit is not None
        if 1 not in self.targets or not self.alive(1, step.branch):
            return None
        state = self.targets[1].branch(step.branch)
        y_pred, _ = self._rotate(state, step.branch, step.tilt_deg)
        applied = np.array([state.x_um + trend[0], y_pred + trend[1]])
        self._toolkit.scope.optics.set_image_shift_um(float(applied[0]), float(applied[1]))
        absolute = self._relocate(1, step)
        if absolute is None:
            return None
        true_xy = applied + absolute
        return [float(true_xy[0] - state.x_um), float(true_xy[1] - y_pred)]

    def _focus_check_due(self, step: TiltStep) -> bool:
        return (
            self.settings.focus_check
            and self._toolkit is not None
            and not self.round.lateral
            and not self.round.depth
            and self.focus.due(step.branch, step.tilt_deg)
            and 1 in self.targets
            and self.alive(1, step.branch)
        )

    def _check_focus(self, step: TiltStep) -> None:
        """The Focus area beside target 1 read at the focus planned for target 1
        (``fused_focus``): the axis's unpredicted motion along the beam at this tilt."""
        assert self._toolkit is not None
        s = self.settings
        one = self.targets[1]
        state = one.branch(step.branch)
        cx, cy, cz = self._common(step)
        y, z = self._rotate(state, step.branch, step.tilt_deg)
        axis_z = self.focus.axis_depth_um(step.branch, step.tilt_deg)
        scope = self._toolkit.scope
        # The set-up's autofocus made the Focus area read the most underfocused level at F0;
        # target 1's level lies (its defocus - maxDefocus) from F0. The reading is taken
        # nearer focus (a known lens change), where the autofocus's scale error costs less.
        planned = defocus_range_um(s)[0] + (one.info.defocus_um - s.max_defocus_um)
        nearer = FOCUS_CHECK_DEFOCUS_UM - planned if planned < FOCUS_CHECK_DEFOCUS_UM else 0.0
        scope.optics.set_image_shift_um(state.x_um + cx, y + cy)
        scope.optics.set_focus_um(one.level_um - (z + cz + axis_z) + nearer)
        measured = scope.measurements.measure_defocus_um()
        self.focus.record(step.branch, step.tilt_deg, measured - (planned + nearer))
