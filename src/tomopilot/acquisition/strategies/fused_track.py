"""``fused``'s tracking spot: the common step of a tilt, measured before target 1's Record.

Target 1's Record is the first image at every tilt, so without help it carries the stage's
unpredicted step of that tilt (σ ≈ 50 nm per 3° on a good autoloader; PACE23): on the demo its
Records were within 50 nm of the target 29 % of the time against 88–100 % for the others. The
spot is a patch of specimen next to target 1, along the tilt axis (where the beam's footprint
does not grow with tilt) and clear of every target's beam. At every tilt after the start, a
short, binned exposure at Record magnification (the Preview area, ``SHOT_DOSE_FRACTION`` of a
Record's exposure time, so that much of its dose, none of it on a target) is aligned with the
spot's previous image; what the rotation does not explain is the common step, which target 1's
Record then gets before it is exposed. The spot's own depth error, which would pass for a
common step (δz·sin Δθ), is learnt as the targets' depths are: from how its step differed from
the targets' median at the previous tilt of the branch.

Costs per tilt: one exposure's start-up and read-out (about 1.2 s with early return) and the
image shift to the spot; dose ``SHOT_DOSE_FRACTION`` of a Record, off the targets.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.strategies.alias_check import unalias_shift
from tomopilot.acquisition.strategies.base import Toolkit
from tomopilot.acquisition.strategies.fused_align import (
    UPSAMPLE,
    specimen_stretch,
    stretch_reference,
)
from tomopilot.acquisition.strategies.fused_spot_place import (
    place_spot,
    shot_binning,
    shot_field_um,
    textured_spot,
)
from tomopilot.acquisition.strategies.fused_state import FusedBranch, FusedTarget
from tomopilot.acquisition.strategies.geometry_model import initial_depth_um
from tomopilot.geometry.scope_state import temporary_preset
from tomopilot.instrument.types import Image, LowDoseArea

SHOT_DOSE_FRACTION = 0.04  # of a Record's exposure time (and dose: same magnification)
MIN_SIGNIFICANCE = 6.0
MIN_SIGNIFICANCE_RELATIVE = 0.4
# A peak down to this fraction of the needed significance is kept when the step it shows is
# within what the stage was seen to move (TrackSpot.plausible_step_um): STEP_MARGIN times the
# median of the branch's last RECENT_STEPS measured misses of its trend, at least
# MIN_PLAUSIBLE_UM and at most PLAUSIBLE_STEP_UM (a few of a good stage's settling steps).
WEAK_FRACTION = 0.7
PLAUSIBLE_STEP_UM = 0.15
MIN_PLAUSIBLE_UM = 0.04
RECENT_STEPS = 4
STEP_MARGIN = 1.5
# ... but not when the stage was seen to step by more than this since the branch's last shot
# (a jump or a run-away on the other branch moves the whole stage; the trend of this branch has
# not seen it, so "near the prediction" is no evidence: a false peak is as likely there).
UNSEEN_STEP_UM = 0.5
LOST_LIMIT = 2  # shots in a row not aligned: the spot is given up on that branch
SPOT_NOISE_UM = 0.01
DEPTH_SIGMA_UM = 0.5
MAX_INDIVIDUAL_UM = 0.1
#: held-image key of the spot's last image on a branch: ``spot:1:<branch>`` (next to target 1)
SPOT_KEY = "spot:1"

Rotate = Callable[[FusedBranch, str, float], tuple[float, float]]


@dataclass
class TrackSpot:
    """The spot's state: its offset from target 1, and per branch where it is and its image."""

    offset_um: tuple[float, float]
    level_um: float
    states: dict[str, FusedBranch] = field(default_factory=dict)
    peaks: list[float] = field(default_factory=list)
    shots: int = 0
    last: dict[str, Any] | None = None  # the last shot's step, branch, step sine and y residual
    images: dict[str, Image] = field(default_factory=dict, repr=False)
    significance: float | None = None  # of the last shot's peak
    # the common steps measured, oldest first: (branch, |miss of the trend| µm), the last few
    steps: list[tuple[str, float]] = field(default_factory=list)
    _missed: Image | None = field(default=None, repr=False)  # the last shot, if not aligned

    def setup(self, toolkit: Toolkit, is_um: tuple[float, float], z_um: float, tilt: float) -> None:
        """The first shot, at the start tilt; both branches start from it."""
        x, y = is_um[0] + self.offset_um[0], is_um[1] + self.offset_um[1]
        state = FusedBranch(x_um=x, y_um=y, z_um=z_um, z_var_um2=DEPTH_SIGMA_UM**2)
        state.last_tilt_deg = state.ref_tilt_deg = tilt
        image = self._shot(toolkit, (x, y), self.level_um - z_um)
        self.images = {"+": image, "-": image}
        self.states = {"+": state, "-": FusedBranch(**asdict(state))}

    def _shot(self, toolkit: Toolkit, is_um: tuple[float, float], focus_um: float) -> Image:
        scope = toolkit.scope
        scope.optics.set_image_shift_um(*is_um)
        scope.optics.set_focus_um(focus_um)
        record = scope.optics.preset(LowDoseArea.RECORD)
        binning = shot_binning(toolkit)
        self.shots += 1
        with temporary_preset(
            scope,
            LowDoseArea.PREVIEW,
            exposure_s=record.exposure_s * SHOT_DOSE_FRACTION,
            binning=binning,
            magnification=record.magnification,
            unbinned_pixel_size_a=record.unbinned_pixel_size_a,
            defocus_offset_um=0.0,
        ):
            return scope.camera.acquire(LowDoseArea.PREVIEW)

    def aim(
        self, branch: str, tilt_deg: float, trend_um: tuple[float, float, float], rotate: Rotate
    ) -> tuple[float, float] | None:
        """Where :meth:`measure` will put the spot's shot (image shift, µm); None if it takes
        none on ``branch``. Known before the stage tilts: the prediction needs no image."""
        state = self.states.get(branch)
        if state is None or state.skip is not None:
            return None
        y_pred, _ = rotate(state, branch, tilt_deg)
        return (state.x_um + trend_um[0], y_pred + trend_um[1])

    def measure(
        self,
        toolkit: Toolkit,
        branch: str,
        tilt_deg: float,
        step_index: int,
        trend_um: tuple[float, float, float],
        rotate: Rotate,
        flatten_a: float | None,
        settings: AcquisitionSettings | None = None,
    ) -> list[float] | None:
        """The common (x, y) step at this tilt, or None when the spot could not be aligned.

        With ``settings``, the spot's last image is stretched for the change of foreshortening
        since it was taken (``fused_align.specimen_stretch``) before the two are correlated."""
        state = self.states.get(branch)
        if state is None or state.skip is not None:
            return None
        y_pred, z_pred = rotate(state, branch, tilt_deg)
        applied = (state.x_um + trend_um[0], y_pred + trend_um[1])  # as aim() gives it
        image = self._shot(toolkit, applied, self.level_um - (z_pred + trend_um[2]))
        reference = self.images.get(branch)
        if reference is None:  # after a resume: this shot anchors the spot again
            state.x_um, state.y_um = applied
            state.z_um, state.last_tilt_deg = z_pred, tilt_deg
            state.ref_offset_um, state.ref_tilt_deg = [0.0, 0.0], tilt_deg
            self.images[branch] = image
            self.last = None
            return None
        if settings is not None and state.ref_tilt_deg is not None:
            stretch = specimen_stretch(settings, state.ref_tilt_deg, tilt_deg)
            base = np.asarray(state.ref_offset_um, dtype=np.float64)
            reference = stretch_reference(toolkit, reference, stretch, base)
        found = toolkit.shift_um(reference, image, flatten_a=flatten_a, upsample=UPSAMPLE)
        needed = MIN_SIGNIFICANCE
        if self.peaks:
            needed = max(needed, MIN_SIGNIFICANCE_RELATIVE * statistics.median(self.peaks))
        sin_step = math.sin(math.radians(tilt_deg - state.last_tilt_deg))
        self.significance = None if found is None else float(found[1])
        shift = None
        if found is not None and WEAK_FRACTION * needed <= found[1] < needed:
            # A weak peak that puts the spot where it was expected, within what the stage was
            # seen to move: a false peak lands anywhere in the field, the more rarely inside
            # that radius the smaller it is; refusing a true one would send a View, whose
            # stretched match over a large change of tilt is riskier. Judged on the step as it
            # would be taken: the alias check may move the peak a field away, where nothing
            # says it is plausible.
            shift = unalias_shift(toolkit, reference, image, found[0])
            miss_um = np.asarray(state.ref_offset_um) + shift  # from where it was put
            calm = self.unseen_step_um(branch) <= UNSEEN_STEP_UM
            if calm and float(np.hypot(*miss_um)) <= self.plausible_step_um(branch):
                needed = float(found[1])
        if found is None or found[1] < needed:
            state.lost += 1
            if state.lost >= LOST_LIMIT:
                state.skip = "tracking spot lost"
            self.last = {
                "step_index": step_index,
                "branch": branch,
                "failed": True,
                "predicted_um": [state.x_um, y_pred],
                "applied_um": list(applied),
                "tilt_deg": tilt_deg,
            }
            self._missed = image
            state.x_um, state.y_um = applied
            state.z_um, state.last_tilt_deg = z_pred, tilt_deg
            return None
        self.peaks = [*self.peaks[-5:], found[1]]
        if shift is None:
            shift = unalias_shift(toolkit, reference, image, found[0])
        offset = np.asarray(state.ref_offset_um) + shift
        true_xy = np.asarray(applied) + offset
        unexplained = true_xy - np.array([state.x_um, y_pred])
        state.lost = 0
        state.x_um, state.y_um = float(true_xy[0]), float(true_xy[1])
        state.z_um, state.last_tilt_deg = float(z_pred), tilt_deg
        state.ref_offset_um, state.ref_tilt_deg = offset.tolist(), tilt_deg
        self.images[branch] = image
        self.note_step(branch, unexplained - np.asarray(trend_um[:2]))
        self.last = {
            "step_index": step_index,
            "branch": branch,
            "sin_step": sin_step,
            "tilt_step_deg": math.degrees(math.asin(max(-1.0, min(1.0, sin_step)))),
            "y_um": float(unexplained[1]),
        }
        return [float(unexplained[0]), float(unexplained[1])]

    def reanchor(self, step_um: list[float]) -> None:
        """The shot just missed, but the common step was measured otherwise (a View): the spot
        is where that step put it, and the missed shot, which shows it there, is the next
        reference (an older one, more tilts away, would soon not correlate either)."""
        last, image = self.last, self._missed
        if last is None or not last.get("failed") or image is None:
            return
        state = self.states[last["branch"]]
        true_xy = np.asarray(last["predicted_um"]) + np.asarray(step_um)
        state.x_um, state.y_um = float(true_xy[0]), float(true_xy[1])
        state.ref_offset_um = (true_xy - np.asarray(last["applied_um"])).tolist()
        state.ref_tilt_deg = last.get("tilt_deg")
        state.lost, state.skip = 0, None
        self.images[last["branch"]] = image
        trend = np.asarray(last["applied_um"]) - np.asarray(last["predicted_um"])
        self.note_step(last["branch"], np.asarray(step_um) - trend)
        self.last, self._missed = None, None

    def note_step(self, branch: str, miss_um: Any) -> None:
        """A common step measured on ``branch`` (by the spot, a View or the targets), as its
        miss from the branch's trend."""
        self.steps = [*self.steps[-7:], (branch, float(np.hypot(miss_um[0], miss_um[1])))]

    def plausible_step_um(self, branch: str) -> float:
        """How far from where the trend expected it a weak peak may put the spot on ``branch``:
        what the stage was seen to move there (:data:`STEP_MARGIN` times the median of the
        branch's last :data:`RECENT_STEPS` measured misses of its trend), at least
        :data:`MIN_PLAUSIBLE_UM`, at most :data:`PLAUSIBLE_STEP_UM`. Zero, so no weak peak is
        taken, before the branch measured a step of its own (nothing to judge by) and while
        the spot never gave a full-strength peak (set up again after a resume, it may sit where
        the field does not correlate, and a weak peak there is as likely noise)."""
        if not any(peak >= MIN_SIGNIFICANCE for peak in self.peaks):
            return 0.0
        own = [size for other, size in self.steps if other == branch][-RECENT_STEPS:]
        if not own:
            return 0.0
        typical = STEP_MARGIN * statistics.median(own)
        return min(PLAUSIBLE_STEP_UM, max(MIN_PLAUSIBLE_UM, typical))

    def unseen_step_um(self, branch: str) -> float:
        """The largest miss of the trend measured on another branch since ``branch``'s last
        one: how far the stage may have moved that ``branch``'s trend has not seen (a jump
        moves the whole stage; 0 when none)."""
        unseen = 0.0
        for other, size in reversed(self.steps):
            if other == branch:
                break
            unseen = max(unseen, size)
        return unseen

    def learn(self, step_index: int, targets_lateral: list[list[float]]) -> None:
        """After a round: the spot's depth from its step against the targets' median, or, if it was
        not found, its position from the targets' common step."""
        last = self.last
        if last is None or last["step_index"] != step_index or not targets_lateral:
            return
        state = self.states[last["branch"]]
        if last.get("failed"):
            # The spot was not found (a jump, say) but the targets were: it moved with them.
            cx = statistics.median(v[0] for v in targets_lateral)
            cy = statistics.median(v[1] for v in targets_lateral)
            state.x_um = last["predicted_um"][0] + cx
            state.y_um = last["predicted_um"][1] + cy
            state.lost, state.skip = 0, None
            trend = np.asarray(last["applied_um"]) - np.asarray(last["predicted_um"])
            self.note_step(last["branch"], np.array([cx, cy]) - trend)
            self.last = None
            return
        individual = last["y_um"] - statistics.median(v[1] for v in targets_lateral)
        sin_step = last["sin_step"]
        if abs(individual) > MAX_INDIVIDUAL_UM or abs(sin_step) < 1e-3:
            return
        meas = -individual / sin_step
        gain = state.z_var_um2 / (state.z_var_um2 + (SPOT_NOISE_UM / sin_step) ** 2)
        state.z_um += gain * meas * math.cos(math.radians(last["tilt_step_deg"]))
        state.z_var_um2 *= 1 - gain
        self.last = None

    def held_images(self) -> dict[str, Image]:
        """The spot's last image on each branch, by the key a resume reloads it under."""
        return {f"{SPOT_KEY}:{branch}": image for branch, image in self.images.items()}

    def keys(self) -> set[str]:
        """The keys of :meth:`held_images` (the images a resume must reload)."""
        return {f"{SPOT_KEY}:{branch}" for branch in self.states}

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form; the images are held images (see :meth:`held_images`)."""
        return {
            "offset_um": list(self.offset_um),
            "level_um": self.level_um,
            "states": {k: asdict(v) for k, v in self.states.items()},
            "peaks": list(self.peaks),
            "shots": self.shots,
            "last": self.last,
            "significance": self.significance,
            "steps": [list(s) for s in self.steps],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], references: dict[str, Image]) -> TrackSpot:
        """Back from :meth:`to_dict`, its images from ``references`` (a resume's reloaded
        held images; a branch whose image is missing is anchored again by its next shot)."""
        offset = data["offset_um"]
        states = {k: FusedBranch(**v) for k, v in data.get("states", {}).items()}
        significance = data.get("significance")
        return cls(
            offset_um=(float(offset[0]), float(offset[1])),
            level_um=float(data["level_um"]),
            states=states,
            peaks=[float(p) for p in data.get("peaks", [])],
            shots=int(data.get("shots", 0)),
            last=data.get("last"),
            images={
                b: references[f"{SPOT_KEY}:{b}"] for b in states if f"{SPOT_KEY}:{b}" in references
            },
            significance=None if significance is None else float(significance),
            steps=[(str(b), float(v)) for b, v in data.get("steps", [])],
        )


def start_spot(
    settings: AcquisitionSettings,
    targets: dict[int, FusedTarget],
    start_is_um: dict[int, tuple[float, float]],
    toolkit: Toolkit,
    start_tilt_deg: float,
    *,
    view: Image | None = None,
) -> TrackSpot | None:
    """Choose the spot next to target 1 and take its first image (None: nowhere clear).

    Of the places clear of every target's beam, the spot goes where target 1's set-up ``view``
    shows the most texture over the spot's field (:func:`~.fused_spot_place.texture`): a shot
    of 4 % of a Record's dose correlates on a hole's rim or a particle field, hardly on bare
    carbon.
    """
    order = [1] + [i for i in targets if i != 1 and i in start_is_um]
    beam = toolkit.scope.optics.preset(LowDoseArea.RECORD).beam_diameter_um
    positions = [start_is_um[i] for i in order]
    limit = settings.image_shift_limit_um
    offset = None
    if view is not None:
        offset = textured_spot(toolkit, view, positions, beam, limit, shot_field_um(toolkit))
    if offset is None:
        offset = place_spot(positions, beam, limit)
    if offset is None or 1 not in targets:
        return None
    first = targets[1]
    x, y = first.info.ss_um[0] + offset[0], first.info.ss_um[1] + offset[1]
    alpha = math.radians(start_tilt_deg)
    z0 = initial_depth_um(x, y, settings.pretilt_deg, settings.rotation_deg)
    spot = TrackSpot(offset_um=offset, level_um=first.level_um)
    spot.setup(toolkit, start_is_um[1], y * math.sin(alpha) + z0 * math.cos(alpha), start_tilt_deg)
    return spot


__all__ = ["SHOT_DOSE_FRACTION", "TrackSpot", "start_spot"]
