"""``fused``'s motion model: each target's state, the tilt axis and the common motion.

Every target keeps its position (x, y) and depth z per branch; from one tilt to the next they
turn rigidly about the branch's tilt axis (placed from target 1's track, ``fused_axis``), plus
the *common* motion no rotation explains (stage run-out, drift, jumps, run-away branches):
measured at this tilt when a target or the tracking spot has shown it, extrapolated from the
branch's history of common increments before that (``common_motion``). The set-up builds this
state; ``fused_before_record`` and ``fused`` measure and learn on top of it.
"""

from __future__ import annotations

import math
import statistics

import numpy as np

from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.plan.tilt_schemes import TiltStep
from tomopilot.acquisition.strategies.base import TargetInfo, Toolkit
from tomopilot.acquisition.strategies.common_motion import predict_common_motion
from tomopilot.acquisition.strategies.fused_axis import AxisTracker, RelativeTrack
from tomopilot.acquisition.strategies.fused_depth import PRIOR_DEPTH_SIGMA_UM
from tomopilot.acquisition.strategies.fused_focus import FocusCheck
from tomopilot.acquisition.strategies.fused_relocate import ViewRelocation
from tomopilot.acquisition.strategies.fused_state import FusedBranch, FusedTarget, TiltRound
from tomopilot.acquisition.strategies.fused_track import TrackSpot, start_spot
from tomopilot.acquisition.strategies.geometry_model import initial_depth_um
from tomopilot.instrument.types import Image


class FusedModel:
    """The targets' states and how they move from tilt to tilt (see module docstring)."""

    def __init__(self, settings: AcquisitionSettings) -> None:
        self.settings = settings
        self.targets: dict[int, FusedTarget] = {}
        self.start_tilt_deg = 0.0
        # The tilt axis per branch in fused's frame: its lateral position (image shift y, µm)
        # and how far below target 1's start depth it lies (µm); see ``fused_axis``.
        self.axis_um = {"+": 0.0, "-": 0.0}
        self.axis_height_um = {"+": 0.0, "-": 0.0}
        self.axis = AxisTracker(
            prior_offset_um={
                "+": -settings.tilt_axis_offset_pos_um,
                "-": -settings.tilt_axis_offset_neg_um,
            }
        )
        self.history: dict[str, list[list[float]]] = {"+": [], "-": []}
        self.history_step: dict[str, int] = {"+": -10, "-": -10}
        self.round = TiltRound()
        self.relocation = ViewRelocation()
        self._toolkit: Toolkit | None = None
        self._images: dict[str, Image] = {}
        self.spot: TrackSpot | None = None
        self.relative: dict[int, RelativeTrack] = {}
        self.focus = FocusCheck()

    # -- set-up -----------------------------------------------------------------------------
    def setup(
        self,
        targets: list[TargetInfo],
        start_tilt_deg: float,
        focus0_um: float,
        start_is_um: dict[int, tuple[float, float]],
        toolkit: Toolkit,
        references: dict[str, Image],
    ) -> None:
        s = self.settings
        self._toolkit = toolkit
        self.start_tilt_deg = start_tilt_deg
        self.focus = FocusCheck(start_tilt_deg=start_tilt_deg)
        alpha = math.radians(start_tilt_deg)
        for info in targets:
            x, y = info.ss_um
            z0 = initial_depth_um(x, y, s.pretilt_deg, s.rotation_deg)
            depth = y * math.sin(alpha) + z0 * math.cos(alpha)  # relative to target 1
            is_x, is_y = start_is_um[info.index]
            level = focus0_um + (info.defocus_um - s.max_defocus_um)
            # Target 1 is focused to F0 by the autofocus, so depths are relative to it.
            state = FusedBranch(
                x_um=is_x,
                y_um=is_y,
                z_um=depth,
                z_var_um2=PRIOR_DEPTH_SIGMA_UM**2 if info.index != 1 else 0.05**2,
                last_tilt_deg=start_tilt_deg,
                reference=f"map:{info.index}",
                skip="skipped in the targets file" if info.skip else None,
            )
            self.targets[info.index] = FusedTarget(info=info, level_um=level, start=state)
            if info.index != 1:
                self.relative[info.index] = RelativeTrack(start_tilt_deg, depth)
        self._images = dict(references)
        if 1 in start_is_um:
            # A wide View of target 1: what a lost tracking target is searched for in later.
            toolkit.scope.optics.set_image_shift_um(*start_is_um[1])
            view = toolkit.view()
            self.relocation.start(self._images, view, start_tilt_deg)
            if s.track_spot:
                self.spot = start_spot(
                    s, self.targets, start_is_um, toolkit, start_tilt_deg, view=view
                )

    # -- prediction -------------------------------------------------------------------------
    def alive(self, target: int, branch: str) -> bool:
        return self.targets[target].branch(branch).skip is None

    def _common(self, step: TiltStep) -> tuple[float, float, float]:
        """Expected unexplained (x, y, z) motion of any target at this step.

        After a target was imaged at this tilt, the median of what the rotation did not explain
        for the targets imaged so far; before that, the branch's extrapolated trend.
        """
        r = self.round
        if r.step_index != step.index:
            self.round = r = TiltRound(step_index=step.index)
        if step.branch == "start":
            return 0.0, 0.0, 0.0
        cx, cy, cz = self._trend(step)
        if r.lateral:
            cx = statistics.median(v[0] for v in r.lateral)
            cy = statistics.median(v[1] for v in r.lateral)
        elif r.spot is not None:
            cx, cy = r.spot
        if r.depth:
            cz = statistics.median(r.depth)
        return cx, cy, cz

    def _trend(self, step: TiltStep) -> list[float]:
        """Common motion expected at this step before any target has shown it (x, y, z)."""
        return predict_common_motion(self.history[step.branch], step.tilt_deg)

    def _rotate(self, state: FusedBranch, branch: str, tilt_deg: float) -> tuple[float, float]:
        """(y, z) of a target after rotating from its last tilt to ``tilt_deg`` about the
        branch's tilt axis (``fused_axis``)."""
        axis = self.axis_um.get(branch, 0.0)
        below = self.axis_height_um.get(branch, 0.0)
        delta = math.radians(tilt_deg - state.last_tilt_deg)
        n, m = state.y_um - axis, state.z_um + below
        y = axis + n * math.cos(delta) - m * math.sin(delta)
        z = n * math.sin(delta) + m * math.cos(delta) - below
        return y, z

    def _learn_axis(self, step: TiltStep, state: FusedBranch, aligned: bool) -> None:
        """Target 1 was measured: refit the axis (``fused_axis``) and place it in the frame."""
        if step.branch == "start":
            self.axis.start(step.tilt_deg, state.y_um)
            branches = ["+", "-"]
        else:
            self.axis.observe(step.branch, step.tilt_deg, state.y_um if aligned else None)
            branches = [step.branch]
        fit = self.axis.current()
        for branch in branches:
            self.axis_um[branch] = state.y_um - fit.lateral_um(branch, step.tilt_deg)
            self.axis_height_um[branch] = fit.depth_um(branch, step.tilt_deg) - state.z_um

    def _relocate(self, target: int, step: TiltStep) -> np.ndarray | None:
        """Target 1's offset from the field centre by a View (``fused_relocate``); None for
        any other target, or when the View did not find it."""
        assert self._toolkit is not None
        if target != 1:
            return None
        return self.relocation.relocate(self._toolkit, self.settings, self._images, step)
