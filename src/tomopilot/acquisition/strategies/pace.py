"""``pace``: a faithful PACEtomo (reference/pacetomo.md §1–3), quirks included.

Targets are reached by image shift from target 1. Each target carries, per branch, a rigid
rotation model (n₀, z₀) that predicts its lateral motion Δy and depth change Δz at every tilt.
Target 1's own Record is the tracking image: its offset, found by cross-correlation with its
previous raw Record, is added to every other target before they are imaged; each target's own
alignment then removes its residual for the next tilt, and z₀ is refitted from the last
``dataPoints`` displacements.

Quirks reproduced because they change results:

- Alignment references are the *raw* previous images, so offsets are a running sum of pairwise
  shifts and alignment noise accumulates (§1.4.2).
- Only target 1's offset is propagated; the others' residuals wait a tilt (§1.4.3).
- The model's n₀ is the specimen shift from target 1 (minus taOffsetPos/Neg): target 1 is
  assumed to lie on the tilt axis (§1.2).
- Focus follows the model's Δz only; focus already applied is never corrected by measurement
  unless ``addAF`` is on, which measures on target 1 only (§1.3, §1.4.6).
- With groupSize = 1 the addAF condition never holds, so addAF never fires (§1.4.6).
- Target 1 is recorded at every executed tilt, even after its own branch was flagged (§1.4.5).
- The first negative-branch shift is replaced by the model's prediction when ignoreNegStart is
  set, and so is the first shift after a recovery (§1.4.4).
- The depth refit ignores the intentional defocus steps between targets (it never sees them).
- trackTwice retakes target 1 when it moved more than alignLimit in x *or* y since its last
  Record; the second image replaces the first and the other targets receive both shifts
  (§1.4.1, §1.4.3). trackMag records target 1 at its own magnification, so its series has
  another pixel size and its start image cannot be aligned to its map (taken at Record mag).

Where it departs from PACEtomo, so that a series cannot run away (``pace_align``): a peak too
weak to be believed is not applied (the target's correction, its reference image and, for
target 1, the other targets stay as they were; the refit takes the model's own prediction), a
shift of more than 0.15 of the field (``ALIAS_SUSPECT_FIELD_FRACTION``) is checked against its
alias, and when target 1's Record lost it, a View finds it again and its Record is retaken,
centred (a recovery: every target's next refit point is the model's). A retake whose own peak
cannot be believed (a dark image) says nothing: the correction that centred it stands, and the
last believed Record stays the reference.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.plan.tilt_schemes import TiltStep
from tomopilot.acquisition.strategies.base import ExposureRequest, Outcome, TargetInfo, Toolkit
from tomopilot.acquisition.strategies.geometry_model import (
    increments,
    initial_depth_um,
    refit_depth,
)
from tomopilot.acquisition.strategies.pace_align import (
    believed_shift,
    missed_field,
    relocate_in_view,
    retake_centred,
)
from tomopilot.instrument.types import Image

_log = logging.getLogger(__name__)


@dataclass
class BranchState:
    """One target's model on one branch (PACEtomo's _pbr/_nbr block)."""

    n0_um: float
    z0_um: float
    focus_um: float
    is_set_um: list[float]
    offset_um: list[float] = field(default_factory=lambda: [0.0, 0.0])
    ss_prev_y_um: float = 0.0
    last_tilt_deg: float = 0.0
    points: list[list[float]] = field(default_factory=list)  # (d, θ, θ_previous)
    skip: str | None = None
    reference: str | None = None
    images: int = 0
    recovered: bool = False


@dataclass
class PaceTarget:
    """A target with its two branch states (shared while at the start tilt)."""

    info: TargetInfo
    start: BranchState
    plus: BranchState | None = None
    minus: BranchState | None = None

    def branch(self, name: str) -> BranchState:
        if name == "start" or self.plus is None or self.minus is None:
            return self.start
        return self.plus if name == "+" else self.minus


class PaceStrategy:
    """PACEtomo's tracking and focusing (see module docstring)."""

    name = "pace"

    def __init__(self, settings: AcquisitionSettings) -> None:
        self.settings = settings
        self.targets: dict[int, PaceTarget] = {}
        self.start_tilt_deg = 0.0
        self.focus0_um = 0.0
        self._toolkit: Toolkit | None = None
        self._images: dict[str, Image] = {}

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
        self._images = dict(references)
        self.start_tilt_deg = start_tilt_deg
        self.focus0_um = focus0_um
        alpha = math.radians(start_tilt_deg)
        for info in targets:
            x, y = info.ss_um
            z0 = initial_depth_um(x, y, s.pretilt_deg, s.rotation_deg)
            level = focus0_um + (info.defocus_um - s.max_defocus_um)
            focus = level - z0 * math.cos(alpha) - y * math.sin(alpha)
            is_x, is_y = start_is_um[info.index]
            state = BranchState(
                n0_um=y,
                z0_um=z0,
                focus_um=focus,
                is_set_um=[is_x, is_y],
                ss_prev_y_um=is_y,
                last_tilt_deg=start_tilt_deg,
                reference=f"map:{info.index}",
                skip="skipped in the targets file" if info.skip else None,
            )
            self.targets[info.index] = PaceTarget(info=info, start=state)

    # -- per exposure -----------------------------------------------------------------------
    def alive(self, target: int, branch: str) -> bool:
        if target == 1:
            return True  # quirk: the tracking target is recorded at every executed tilt
        return self.targets[target].branch(branch).skip is None

    def _add_af_due(self, step: TiltStep) -> bool:
        s = self.settings
        if not s.add_autofocus or step.branch == "start":
            return False
        offset = abs(step.tilt_deg - self.start_tilt_deg)
        span = s.group_size * s.step_deg
        return offset > s.step_deg + 1e-6 and math.isclose(offset % span, s.step_deg, abs_tol=1e-6)

    def prepare(self, target: int, step: TiltStep) -> ExposureRequest:
        s = self.settings
        tgt = self.targets[target]
        state = tgt.branch(step.branch)
        dy = dz = 0.0
        if step.branch != "start":
            taoff = s.tilt_axis_offset_pos_um if step.branch == "+" else s.tilt_axis_offset_neg_um
            n0 = tgt.info.ss_um[1] - taoff
            state.n0_um = n0
            dy, dz = increments(n0, state.z0_um, step.tilt_deg, state.last_tilt_deg)
            state.focus_um -= dz
        image_shift = (state.is_set_um[0], state.is_set_um[1] + dy)
        focus = state.focus_um + s.focus_slope_um_per_deg * (step.tilt_deg - self.start_tilt_deg)
        target_defocus = tgt.info.defocus_um
        exposure = None
        if step.branch == "start" and s.zero_defocus_um != 0:
            focus += s.zero_defocus_um - s.max_defocus_um
            target_defocus += s.zero_defocus_um - s.max_defocus_um
        if step.branch == "start" and s.zero_exp_time_s > 0:
            exposure = s.zero_exp_time_s
        if target == 1:
            if self._add_af_due(step):
                focus = self._add_autofocus(step, image_shift, focus)
            if s.track_defocus_um != 0 and s.track_defocus_um < s.max_defocus_um:
                focus += s.track_defocus_um - s.max_defocus_um
            if s.track_exp_time_s > 0:
                exposure = s.track_exp_time_s
                if step.branch == "start":
                    exposure = max(s.track_exp_time_s, s.zero_exp_time_s)
        return ExposureRequest(
            image_shift_um=image_shift,
            focus_um=focus,
            target_defocus_um=target_defocus,
            exposure_s=exposure,
            magnification=s.track_mag if target == 1 and s.track_mag > 0 else None,
            predicted_dy_um=dy,
            predicted_dz_um=dz,
        )

    def _add_autofocus(
        self, step: TiltStep, image_shift: tuple[float, float], focus: float
    ) -> float:
        """Measure on target 1 without applying; shift the whole branch by the error."""
        assert self._toolkit is not None
        scope = self._toolkit.scope
        scope.optics.set_image_shift_um(*image_shift)
        scope.optics.set_focus_um(focus)
        measured = scope.measurements.measure_defocus_um()
        error = measured - self.settings.max_defocus_um
        for tgt in self.targets.values():
            tgt.branch(step.branch).focus_um -= error
        return focus - error

    def observe(
        self, target: int, step: TiltStep, image: Image, request: ExposureRequest
    ) -> Outcome:
        s = self.settings
        assert self._toolkit is not None
        tgt = self.targets[target]
        state = tgt.branch(step.branch)
        reference = self._images.get(state.reference or "")
        limit = None if target == 1 else s.align_limit_um
        start = step.branch == "start"
        base = np.zeros(2) if start else np.array(state.offset_um)
        shift: np.ndarray | None = np.zeros(2)
        if reference is not None and not (start and s.no_zero_rec_align):
            shift = believed_shift(self._toolkit, reference, image, limit)
        applied = np.array(request.image_shift_um)
        retake, retake_movie = None, None
        relocated = False
        witness = image  # the image of this tilt that located target 1
        if shift is None and target == 1:  # target 1's Record lost it: a View finds it again
            assert reference is not None
            shift, witness = relocate_in_view(self._toolkit, reference)
            relocated = shift is not None
            if relocated:
                self._mark_recovered(step)
        kept: Image | None = image  # the image the next correlation is made against
        if shift is None:  # nothing believable: no correction, and the reference is kept
            _log.info("pace: target %d at %g°: no believable peak", target, step.tilt_deg)
            offset = missed = np.zeros(2)
            kept = None
            state.recovered = True  # the refit gets the model's own prediction
        else:
            offset = missed = base + shift
        series_is, series_offset = applied, offset  # the series' image: where taken, its miss
        if shift is not None and target == 1 and reference is not None:
            retake_due = (
                missed_field(image, offset) if relocated else self._track_twice_due(step, shift)
            )
            if retake_due:
                retake, retake_movie, series_is, found = retake_centred(
                    self._toolkit, request, (reference, base), (witness, offset)
                )
                if found is not None:
                    series_offset = found
                    applied, offset, kept = series_is, found, retake
                    missed = missed + found
                else:
                    # Neither the last reference nor the image that just found the target
                    # believes the retake (a dark image): it says nothing of where the target
                    # is. The correction that centred it stands (its expected miss is zero),
                    # and so does the image the next correlation is made against: the first
                    # Record, or, when that one lost the target (relocated), the previous
                    # reference and its offset.
                    series_offset = np.zeros(2)
                    if relocated:
                        kept = None
        if kept is not None:
            state.offset_um = offset.tolist()
        state.is_set_um = (applied + offset).tolist()
        if target == 1:
            self._propagate(step, missed)
        self._refit(tgt, state, step, request)
        if kept is not None:
            key = f"img:{target}:{step.branch}"
            self._images[key] = kept
            state.reference = key
        state.images += 1
        outcome = Outcome(
            alignment_um=(float(series_offset[0]), float(series_offset[1])),
            specimen_shift_um=(float(series_is[0]), float(series_is[1])),
            eucentric_offset_um=float(state.z0_um),
            retake=retake,
            retake_movie=retake_movie,
        )
        outcome.aborted = self._check_abort(target, state, image)
        if step.branch == "start":
            tgt.plus = copy.deepcopy(state)
            tgt.minus = copy.deepcopy(state)
        return outcome

    def _mark_recovered(self, step: TiltStep) -> None:
        """After target 1 was re-found in a View, every target's next displacement holds the
        re-centring: as after PACEtomo's recovery, the refit takes the model's prediction."""
        for tgt in self.targets.values():
            tgt.branch(step.branch).recovered = True

    def _track_twice_due(self, step: TiltStep, shift: np.ndarray) -> bool:
        """trackTwice: target 1 moved more than alignLimit in x or y since its last Record."""
        s = self.settings
        if not s.track_twice or step.branch == "start":
            return False
        return bool(np.any(np.abs(shift) > s.align_limit_um))

    def correct_heights(self, corrections_um: dict[int, float]) -> None:
        """refineGeo: every branch model of a target gets the corrected z₀."""
        for index, correction in corrections_um.items():
            tgt = self.targets[index]
            for state in (tgt.start, tgt.plus, tgt.minus):
                if state is not None:
                    state.z0_um += correction

    def _propagate(self, step: TiltStep, offset: np.ndarray) -> None:
        """Target 1's offset, seen as common stage error, moves every other target's base."""
        for index, tgt in self.targets.items():
            if index == 1:
                continue
            branches = [tgt.start] if step.branch == "start" else [tgt.branch(step.branch)]
            for state in branches:
                state.is_set_um = (np.array(state.is_set_um) + offset).tolist()

    def _refit(
        self, tgt: PaceTarget, state: BranchState, step: TiltStep, request: ExposureRequest
    ) -> None:
        s = self.settings
        ss_now = state.is_set_um[1]
        model_d = request.predicted_dy_um
        first_negative = step.branch == "-" and state.images == 1
        if step.branch == "start" or state.recovered or (first_negative and s.ignore_neg_start):
            d = model_d
            state.recovered = False
        else:
            d = ss_now - state.ss_prev_y_um
        if step.branch != "start":
            state.points.append([d, step.tilt_deg, state.last_tilt_deg])
            state.points = state.points[-s.data_points :]
            state.z0_um = refit_depth(state.n0_um, [tuple(p) for p in state.points], state.z0_um)  # type: ignore[misc]
        state.ss_prev_y_um = ss_now
        state.last_tilt_deg = step.tilt_deg

    def _check_abort(self, target: int, state: BranchState, image: Image) -> str | None:
        s = self.settings
        reason = None
        if math.hypot(*state.is_set_um) > s.image_shift_limit_um - s.align_limit_um:
            reason = "image shift beyond the limit"
        elif s.min_counts_per_s > 0 and image.mean_counts_per_s < s.min_counts_per_s:
            reason = f"too dark ({image.mean_counts_per_s:.2f} < {s.min_counts_per_s:g} counts/s)"
        if reason is not None:
            state.skip = reason
        return reason

    def abort(self, target: int, branch: str, reason: str) -> None:
        """Stop imaging ``target`` on ``branch`` (the engine calls this on IS-limit errors)."""
        tgt = self.targets[target]
        for name in ["+", "-"] if branch == "start" else [branch]:
            tgt.branch(name).skip = reason
        if branch == "start":
            tgt.start.skip = reason

    # -- resume -----------------------------------------------------------------------------
    def recover(self, step: TiltStep, shift_um: tuple[float, float]) -> None:
        offset = np.array(shift_um)
        for tgt in self.targets.values():
            state = tgt.branch(step.branch)
            state.is_set_um = (np.array(state.is_set_um) + offset).tolist()
            state.recovered = True

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "start_tilt_deg": self.start_tilt_deg,
            "focus0_um": self.focus0_um,
            "targets": {},
        }
        for index, tgt in self.targets.items():
            out["targets"][str(index)] = {
                "info": asdict(tgt.info),
                "start": asdict(tgt.start),
                "plus": None if tgt.plus is None else asdict(tgt.plus),
                "minus": None if tgt.minus is None else asdict(tgt.minus),
            }
        return out

    def restore(
        self, state: dict[str, Any], references: dict[str, Image], toolkit: Toolkit | None = None
    ) -> None:
        self.start_tilt_deg = float(state["start_tilt_deg"])
        self.focus0_um = float(state["focus0_um"])
        self.targets = {}
        for key, data in state["targets"].items():
            info = data["info"]
            target_info = TargetInfo(
                index=int(info["index"]),
                ss_um=(float(info["ss_um"][0]), float(info["ss_um"][1])),
                defocus_um=float(info["defocus_um"]),
                skip=bool(info["skip"]),
            )
            self.targets[int(key)] = PaceTarget(
                info=target_info,
                start=BranchState(**data["start"]),
                plus=None if data["plus"] is None else BranchState(**data["plus"]),
                minus=None if data["minus"] is None else BranchState(**data["minus"]),
            )
        self._images = dict(references)
        if toolkit is not None:
            self._toolkit = toolkit

    def reference_keys(self) -> set[str]:
        """The images the current state refers to (the engine reloads them on resume)."""
        keys = set()
        for tgt in self.targets.values():
            for state in (tgt.start, tgt.plus, tgt.minus):
                if state is not None and state.reference:
                    keys.add(state.reference)
        return keys
