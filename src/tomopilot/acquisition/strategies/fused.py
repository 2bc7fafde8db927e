"""``fused``: our strategy — every target's measurements inform every other target.

PACEtomo tracks on target 1 alone and follows focus with an open-loop model. ``fused`` keeps,
per target, its current position (x, y) and depth z, and moves them with the rigid rotation
about the tilt axis from one tilt to the next. Where that axis lies — across it from target 1
and in depth (what the rough eucentricity and the axis-offset calibration missed) — is fitted
to target 1's whole lateral track so far (``fused_axis``); each other target's depth relative
to target 1 is fitted to its lateral offset from target 1 at every tilt (a rigid specimen turns
that offset with it, free of the stage's common step). What the rotation does not explain of
the lateral motion is the *common* part, shared by all targets (stage run-out, drift, jumps,
run-away branches). After a target was aligned at a tilt, it is the median over the targets
aligned so far at that tilt, applied to every target imaged after. Before the first target, it
is extrapolated from the branch's history of common increments: the median of the last three
when it stands out of the branch's noise (slow run-out; a one-off jump is ignored), and beyond
36° a significant last increment across the axis persists, its growth extrapolated (damped)
when the step before moved the same way — a run-away branch as it ramps up.

Alignment is one cross-correlation of each Record with the target's last aligned Record
(``fused_align``); when the first target at a tilt cannot be aligned, or its peak is weak and
far from the field centre, a short View of target 1 relocates the common error
(``fused_relocate``). A target not found at two successive tilts of a branch ends that branch
rather than exposing the wrong place. Before target 1's Record, a short binned shot of a spot
next to it measures the tilt's common step (``fused_track``).

Depth is also measured directly (``fused_depth``): each Record's Thon rings give its defocus,
hence the target's depth (defocus = focus + z). The common part of those measurements corrects
the focus of the targets still to be imaged at the same tilt (closed-loop focus at no extra
dose), and their next tilt of the branch starts from the last common correction.

Once per branch, at the first tilt 39° from the start, the Focus area beside target 1 reads
the defocus planned for target 1 (``fused_focus``): what the axis's own motion along the beam
(run-out in z, the z part of the stage's steps and drift) did, which no lateral measurement
shows and, at the usual screening pixel, no Thon ring either. It corrects that tilt and the
rest of the branch.

The compute per Record is one cross-correlation and one 1D CTF fit on the central crop.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict
from typing import Any

import numpy as np

from tomopilot.acquisition.plan.tilt_schemes import TiltStep
from tomopilot.acquisition.strategies.base import ExposureRequest, Outcome, Toolkit
from tomopilot.acquisition.strategies.fused_align import (
    REFERENCE_MAX_OFFSET_FIELDS,
    match_record,
    specimen_stretch,
)
from tomopilot.acquisition.strategies.fused_axis import AxisTracker, RelativeTrack
from tomopilot.acquisition.strategies.fused_before_record import FusedBeforeRecord
from tomopilot.acquisition.strategies.fused_depth import (
    CTF_MAX_INNOVATION_UM,
    ctf_depth_update,
    measure_depth_um,
)
from tomopilot.acquisition.strategies.fused_focus import FocusCheck
from tomopilot.acquisition.strategies.fused_relocate import VIEW_KEY, ViewRelocation, confirm_record
from tomopilot.acquisition.strategies.fused_state import FusedBranch, FusedTarget, TiltRound
from tomopilot.acquisition.strategies.fused_track import TrackSpot
from tomopilot.instrument.types import Image

HISTORY_STEPS = 8
# A target not found at this many successive tilts of a branch (and not relocated by a View)
# has left the field for good: its branch ends rather than exposing the wrong place.
LOST_LIMIT = 2


class FusedStrategy(FusedBeforeRecord):
    """Joint tracking and closed-loop focus (see module docstring); the motion model is
    ``fused_model``'s, the measurements before a tilt's first Record ``fused_before_record``'s."""

    name = "fused"

    def prepare(self, target: int, step: TiltStep) -> ExposureRequest:
        tgt = self.targets[target]
        state = tgt.branch(step.branch)
        previous = self.round
        cx, cy, cz = self._common(step)
        if self._spot_due(step):
            self._measure_spot(step, previous)
            cx, cy, cz = self._common(step)
        if self._focus_check_due(step):
            self._check_focus(step)
        y, z = self._rotate(state, step.branch, step.tilt_deg)
        axis_z = self.focus.axis_depth_um(step.branch, step.tilt_deg)
        focus = tgt.level_um - (z + cz + axis_z)
        return ExposureRequest(
            image_shift_um=(state.x_um + cx, y + cy),
            focus_um=focus,
            target_defocus_um=tgt.info.defocus_um,
            predicted_dy_um=y - state.y_um + cy,
            predicted_dz_um=z - state.z_um + cz,
        )

    # -- learning ---------------------------------------------------------------------------
    def _relative_depth(
        self, target: int, step: TiltStep, y_um: float, depth_um: float, z_var_um2: float
    ) -> float:
        """The target's depth after its lateral offset from target 1 at this tilt was measured
        (``fused_axis.RelativeTrack``): target 1's depth plus the rigid offset's, weighed
        against the depth predicted (Kalman gain; the fit is a better prior, not a new
        independent measurement, so the variance stays)."""
        track = self.relative.get(target)
        first = self.targets.get(1)
        if track is None or first is None:
            return depth_um
        one = first.branch(step.branch)
        if one.last_tilt_deg != step.tilt_deg or one.lost or one.skip is not None:
            return depth_um  # target 1 was not found at this tilt
        track.add(step.tilt_deg, y_um - one.y_um)
        relative, variance = track.depth_um(step.tilt_deg)
        gain = z_var_um2 / (z_var_um2 + variance)
        return depth_um + gain * (one.z_um + relative - depth_um)

    def observe(
        self, target: int, step: TiltStep, image: Image, request: ExposureRequest
    ) -> Outcome:
        s = self.settings
        assert self._toolkit is not None
        tgt = self.targets[target]
        state = tgt.branch(step.branch)
        first_at_tilt = not self.round.lateral
        limit = None if first_at_tilt else s.align_limit_um
        reference = self._images.get(state.reference or "")
        field_um = min(image.data.shape) * image.pixel_size_a * 1e-4
        stretch = 1.0
        if state.ref_tilt_deg is not None:
            stretch = specimen_stretch(s, state.ref_tilt_deg, step.tilt_deg)
        match = match_record(self._toolkit, state, reference, image, limit, stretch)
        found, aligned, shift = match.found, match.aligned, match.shift
        base = np.array(state.ref_offset_um) if step.branch != "start" else np.zeros(2)
        absolute = None
        if first_at_tilt and step.branch != "start" and (not aligned or match.suspect(base)):
            absolute = self._relocate(target, step)
            aligned = aligned or absolute is not None
            if absolute is not None and reference is not None:
                absolute = confirm_record(
                    self._toolkit, state, reference, image, found, base, absolute
                )
        if absolute is not None:
            offset = absolute
        else:
            offset = base + shift if aligned else np.array(state.offset_um)
        applied = np.array(request.image_shift_um)
        true_xy = applied + offset
        y_pred, z_pred = self._rotate(state, step.branch, step.tilt_deg)
        unexplained = true_xy - np.array([state.x_um, y_pred])
        depth = state.z_um + request.predicted_dz_um  # the depth focused for, common part included
        if target != 1 and aligned:
            depth = self._relative_depth(target, step, float(true_xy[1]), depth, state.z_var_um2)
        measured = measure_depth_um(image, request.focus_um)
        if measured is not None:  # the target's depth about the axis: the axis's own z aside
            measured -= self.focus.axis_depth_um(step.branch, step.tilt_deg)
        z_var = state.z_var_um2
        z_common = depth - z_pred
        if measured is not None and abs(measured - depth) > CTF_MAX_INNOVATION_UM:
            measured = None  # an outlier fit: the Thon rings were misread
        if measured is not None:
            residual = measured - depth
            innovation = residual
            if step.branch == "start" and self.round.depth:
                # At the start tilt depths are relative to target 1, focused by the autofocus:
                # what its Record's fit still reads is the fit's bias, shared by all.
                innovation = residual - self.round.depth[0]
            self.round.depth.append(residual + z_common)
            depth, z_var = ctf_depth_update(depth, z_var, innovation)
        if step.branch != "start" and aligned:
            self.round.lateral.append(unexplained.tolist())
        start = step.branch == "start"
        if not aligned:
            # Keep the prediction; the reference stays the last good image. At the start tilt
            # nothing is lost: the set-up put the target there (its Preview aligned to the map
            # at this tilt), and a map from the selection tilt, at another pixel size, often
            # gives no significant peak against the start Record.
            state.lost += 0 if start else 1
            true_xy = applied + np.array(state.offset_um)
        else:
            state.lost = 0
        state.x_um, state.y_um = float(true_xy[0]), float(true_xy[1])
        state.z_um, state.z_var_um2 = float(depth), float(z_var)
        state.offset_um = offset.tolist()
        state.last_tilt_deg = step.tilt_deg
        if target == 1:
            self._learn_axis(step, state, aligned)
        key = f"img:{target}:{step.branch}"
        off_field = (
            absolute is not None
            and float(np.hypot(*offset)) > REFERENCE_MAX_OFFSET_FIELDS * field_um
        )
        if (aligned and not off_field) or reference is None or start:
            # A Record the View (not its own correlation) found far off its target shows mostly
            # somewhere else: the next Record, centred again, would barely overlap it. The
            # older reference stays. The start Record is both branches' reference (as in
            # PACEtomo): a tilt step from the next Records, where the map is the selection
            # tilt and another pixel size away.
            self._images[key] = image
            state.reference = key
            state.ref_tilt_deg = step.tilt_deg
            state.ref_offset_um = offset.tolist()
        state.images += 1
        if step.branch != "start" and self.round.lateral:
            summary = [
                step.tilt_deg,
                statistics.median(v[0] for v in self.round.lateral),
                statistics.median(v[1] for v in self.round.lateral),
                statistics.median(self.round.depth) if self.round.depth else 0.0,
            ]
            history = self.history[step.branch]
            if self.history_step[step.branch] == step.index:
                history[-1] = summary
            else:
                history.append(summary)
                del history[:-HISTORY_STEPS]
            self.history_step[step.branch] = step.index
        outcome = Outcome(
            alignment_um=(float(offset[0]), float(offset[1])),
            specimen_shift_um=(float(applied[0]), float(applied[1])),
            eucentric_offset_um=float(state.z_um),
        )
        if measured is not None:
            outcome.ctf_defocus_um = float(measured + request.focus_um)
        outcome.aborted = self._check_abort(state, image, step)
        if step.branch == "start":
            tgt.plus = FusedBranch(**asdict(state))
            tgt.minus = FusedBranch(**asdict(state))
        return outcome

    def _check_abort(self, state: FusedBranch, image: Image, step: TiltStep) -> str | None:
        s = self.settings
        reason = None
        if step.branch != "start" and state.lost >= LOST_LIMIT:
            reason = f"tracking lost ({state.lost} tilts without a correlation peak)"
        elif math.hypot(state.x_um, state.y_um) > s.image_shift_limit_um - s.align_limit_um:
            reason = "image shift beyond the limit"
        elif s.min_counts_per_s > 0 and image.mean_counts_per_s < s.min_counts_per_s:
            reason = f"too dark ({image.mean_counts_per_s:.2f} < {s.min_counts_per_s:g} counts/s)"
        if reason is not None:
            state.skip = reason
        return reason

    def abort(self, target: int, branch: str, reason: str) -> None:
        tgt = self.targets[target]
        if branch == "start":
            tgt.start.skip = reason
            for state in (tgt.plus, tgt.minus):
                if state is not None:
                    state.skip = reason
        else:
            tgt.branch(branch).skip = reason

    # -- resume -----------------------------------------------------------------------------
    def recover(self, step: TiltStep, shift_um: tuple[float, float]) -> None:
        states = [tgt.branch(step.branch) for tgt in self.targets.values()]
        if self.spot is not None and step.branch in self.spot.states:
            states.append(self.spot.states[step.branch])  # the spot moved with the targets
        for state in states:
            state.x_um += shift_um[0]
            state.y_um += shift_um[1]
        self.axis.moved(step.tilt_deg, shift_um[1])  # not a step of the geometry's

    def correct_heights(self, corrections_um: dict[int, float]) -> None:
        """Nothing to add: every Record's CTF fit, the start round's included, already updated
        each target's depth (Kalman); refineGeo's correction, fitted to the same Records,
        would count them twice."""

    def state(self) -> dict[str, Any]:
        return {
            "start_tilt_deg": self.start_tilt_deg,
            "axis_um": self.axis_um,
            "axis_height_um": self.axis_height_um,
            "axis": self.axis.to_dict(),
            "relative": {str(i): t.to_dict() for i, t in self.relative.items()},
            "focus_check": self.focus.to_dict(),
            "history": self.history,
            "history_step": self.history_step,
            "round": asdict(self.round),
            "view_tilt_deg": self.relocation.tilt_deg,
            "view_offset_um": self.relocation.offset_um,
            "recoveries": self.relocation.recoveries,
            "spot": None if self.spot is None else self.spot.to_dict(),
            "targets": {str(i): t.to_dict() for i, t in self.targets.items()},
        }

    def restore(
        self, state: dict[str, Any], references: dict[str, Image], toolkit: Toolkit | None = None
    ) -> None:
        self.start_tilt_deg = float(state["start_tilt_deg"])
        self.axis_um = {k: float(v) for k, v in state["axis_um"].items()}
        self.axis_height_um = {
            k: float(v) for k, v in state.get("axis_height_um", {"+": 0.0, "-": 0.0}).items()
        }
        if "axis" in state:
            self.axis = AxisTracker.from_dict(state["axis"])
        if "relative" in state:
            self.relative = {
                int(k): RelativeTrack.from_dict(v) for k, v in state["relative"].items()
            }
        self.focus = FocusCheck.from_dict(
            state.get("focus_check", {"start_tilt_deg": self.start_tilt_deg})
        )
        self.history = {k: [[float(x) for x in p] for p in v] for k, v in state["history"].items()}
        self.history_step = {k: int(v) for k, v in state["history_step"].items()}
        self.round = TiltRound(**state["round"])
        self.relocation = ViewRelocation(
            tilt_deg={k: float(v) for k, v in state["view_tilt_deg"].items()},
            offset_um={k: [float(x) for x in v] for k, v in state["view_offset_um"].items()},
            recoveries=int(state.get("recoveries", 0)),
        )
        spot = state.get("spot")
        self.spot = None if spot is None else TrackSpot.from_dict(spot, references)
        self.targets = {int(k): FusedTarget.from_dict(v) for k, v in state["targets"].items()}
        self._images = dict(references)
        if toolkit is not None:
            self._toolkit = toolkit

    def reference_keys(self) -> set[str]:
        keys = {f"{VIEW_KEY}:{branch}" for branch in ("+", "-")}  # target 1's relocation Views
        for tgt in self.targets.values():
            for state in (tgt.start, tgt.plus, tgt.minus):
                if state is not None and state.reference:
                    keys.add(state.reference)
        if self.spot is not None:
            keys |= self.spot.keys()  # the tracking spot's last images
        return keys

    def held_images(self) -> dict[str, Image]:
        """Target 1's Views (the set-up's or a relocation's) and the tracking spot's last
        images, which no stack holds."""
        held = {k: v for k, v in self._images.items() if k.startswith("view:")}
        if self.spot is not None:
            held.update(self.spot.held_images())
        return held
