"""The ``sequential`` strategy's tracking Views (Leginon's tracking preset).

Before a Record, a View at the predicted image shift is correlated with the group's previous
View (:func:`track_with_view`); the Record is taken where the View found the target. The
start tilt's View is both groups' first reference.

After the Record, its own tracking re-anchors the group's View (:func:`anchor_views_on_record`),
so the Views' per-step errors do not add up along the half series.

Which Records get one (``track_with_view``): every Record (``true``, the default), none
(``false``), or (``auto``) the start tilt's, then every Record of both branches when the
start Record does not correlate with the Preview taken just before it at the same place
(:func:`start_tracks`: nothing fixed to the specimen at the Record's scale survives from one
exposure to the next, so Record-to-Record tracking has nothing to lock onto), and those of a
branch once one of its tilted Records gave no believable tracking peak of its own and could
not be found again in a View either (:func:`switch_to_views`; a Record that a View finds
again had texture, the target had only left its reach, after a stage jump, say).
:func:`view_dose_e_a2` is what the next tracking View adds to a target's dose (for the dose
cap).
"""

from __future__ import annotations

import logging
import math

from tomopilot.acquisition.housekeeping_ops import DEWAR_MARGIN_S, protect_from_dewar
from tomopilot.acquisition.plan.sequential_settings import SequentialSettings
from tomopilot.acquisition.plan.tilt_schemes import TiltStep
from tomopilot.acquisition.strategies.base import Toolkit
from tomopilot.acquisition.strategies.fused_align import pretilt_about_axis_deg
from tomopilot.acquisition.strategies.sequential_dose import count_dose
from tomopilot.acquisition.strategies.sequential_state import (
    Reference,
    SequentialTarget,
    group_of,
)
from tomopilot.acquisition.strategies.sequential_steps import (
    MIN_VIEW_TRACKING_SIGNIFICANCE,
    tracking_displacement_um,
)
from tomopilot.acquisition.strategies.sequential_tracking import (
    carried_offset_um,
    measure_offset,
    relocate_in_view,
)
from tomopilot.instrument.errors import ImageShiftLimitError
from tomopilot.instrument.types import Image, LowDoseArea

_log = logging.getLogger(__name__)

# Time from a tracking View to the engine's dewar check before its Record (the View's
# exposure and read-out, its correlation, the focus): a fill due within this after the
# View is started before it.
VIEW_TO_RECORD_S = 15.0
# A tracking View that finds nothing after a tilt step is tried from half the step, and what
# is left halved again, down to steps this small.
HALF_STEP_MIN_DEG = 2.0


def track_with_view(
    toolkit: Toolkit,
    images: dict[str, Image],
    t: SequentialTarget,
    step: TiltStep,
    predicted_um: tuple[float, float],
    relocate_fraction: float,
) -> tuple[float, float]:
    """Leginon's tracking image: a View at the predicted image shift, correlated with the
    group's previous View; where the Record should be taken (the prediction when the View
    finds nothing believable). The start tilt's View is both groups' first reference.
    ``images`` holds the Views (updated)."""
    try:
        toolkit.scope.optics.set_image_shift_um(*predicted_um)
    except ImageShiftLimitError:
        # Beyond the limit no View is taken: the engine meets the limit with the Record's
        # image shift and ends the branch, as without tracking Views.
        return predicted_um
    t.view_position_um = None
    if step.branch == "start":
        view = _view_clear_of_dewar(toolkit, t, step.branch)
        key = f"view:{t.info.index}:{step.branch}"
        images[key] = view
        first = Reference(key, (0.0, 0.0), step.tilt_deg)
        t.view_references = {0: first, 1: first}
        t.view_position_um = predicted_um
        return predicted_um
    position = _view_and_track(
        toolkit, images, t, step, step.tilt_deg, predicted_um, relocate_fraction
    )
    reference = t.view_references.get(group_of(step.branch))
    # Only where the last tilt's View found the target: a View with nothing to track by
    # (no texture) finds nothing at half the step either.
    last = reference is not None and math.isclose(
        abs(step.tilt_deg - reference.tilt_deg), toolkit.settings.step_deg, abs_tol=0.5
    )
    if position is None and reference is not None and last:
        position = _by_half_step(
            toolkit, images, t, step, reference.tilt_deg, predicted_um, relocate_fraction
        )
    if position is None:
        _log.info("target %d at %g°: no tracking peak in its View", t.info.index, step.tilt_deg)
        return predicted_um
    t.view_position_um = position
    return position


def _view_and_track(
    toolkit: Toolkit,
    images: dict[str, Image],
    t: SequentialTarget,
    step: TiltStep,
    tilt_deg: float,
    at_um: tuple[float, float],
    relocate_fraction: float,
) -> tuple[float, float] | None:
    """A View at ``at_um`` (the stage at ``tilt_deg``) correlated with the group's reference
    View: where the target is (image shift µm), the View then the group's reference; None
    when no believable peak lies within ``relocate_fraction`` of the View's field."""
    try:
        toolkit.scope.optics.set_image_shift_um(*at_um)
    except ImageShiftLimitError:
        return None
    view = _view_clear_of_dewar(toolkit, t, step.branch)
    group = group_of(step.branch)
    reference = t.view_references.get(group)
    previous = None if reference is None else images.get(reference.key)
    if reference is None or previous is None:
        return None
    found = tracking_displacement_um(
        toolkit,
        previous,
        view,
        reference.tilt_deg,
        tilt_deg,
        MIN_VIEW_TRACKING_SIGNIFICANCE,
        pretilt_about_axis_deg(toolkit.settings),
    )
    field_um = min(view.data.shape) * view.pixel_size_a * 1e-4
    if found is None or math.hypot(*found) > relocate_fraction * field_um:
        return None
    carried = carried_offset_um(toolkit, reference.offset_um, reference.tilt_deg, tilt_deg)
    offset = (carried[0] + found[0], carried[1] + found[1])
    key = f"view:{t.info.index}:{step.branch}"
    images[key] = view
    t.view_references[group] = Reference(key, offset, tilt_deg)
    return (at_um[0] + offset[0], at_um[1] + offset[1])


def _by_half_step(
    toolkit: Toolkit,
    images: dict[str, Image],
    t: SequentialTarget,
    step: TiltStep,
    reference_tilt_deg: float,
    predicted_um: tuple[float, float],
    relocate_fraction: float,
) -> tuple[float, float] | None:
    """Ours: a View that finds nothing after a tilt step of HALF_STEP_MIN_DEG or more is
    tried again from half the step. A stage sliding on a run-away branch can move the target
    by half a hole lattice's foreshortened pitch in one step (twin seed 1's grid: ~1 µm from
    30° to 45°, the pitch across the axis 2.1 µm): the View then shows the target hole at one
    edge and its neighbour at the other, and no peak stands out. At half the step the move is
    half as large: the View found there becomes the reference, and the View at the step is
    taken where it put the target (if that finds nothing either, what is left of the step is
    halved in turn). The stage returns to the step's tilt by the step's own approach.
    Leginon goes on at the prediction."""
    if abs(step.tilt_deg - reference_tilt_deg) < HALF_STEP_MIN_DEG:
        return None
    scope = toolkit.scope
    middle = 0.5 * (step.tilt_deg + reference_tilt_deg)
    scope.stage.tilt_to(middle)
    found = _view_and_track(toolkit, images, t, step, middle, predicted_um, relocate_fraction)
    if step.approach_deg is not None:
        scope.stage.tilt_to(step.approach_deg)
    scope.stage.tilt_to(step.tilt_deg)
    if found is None:
        return None
    _log.info(
        "target %d at %g°: its View found nothing; from %g° it did",
        t.info.index,
        step.tilt_deg,
        middle,
    )
    position = _view_and_track(toolkit, images, t, step, step.tilt_deg, found, relocate_fraction)
    if position is None:  # the rest of the slide still too far: halve what is left
        return _by_half_step(toolkit, images, t, step, middle, found, relocate_fraction)
    return position


def anchor_views_on_record(
    t: SequentialTarget, group: int, record_position_um: tuple[float, float]
) -> None:
    """After a Record whose own tracking found the target (at ``record_position_um``, image
    shift µm): the group's last View is re-anchored there, so the next View is measured from
    where the Records say the target is. The Views' chain alone (each View from the last,
    2 nm per step against the twin's truth) adds its errors up over a half series, 15 nm RMS
    and up to 53 nm by ±60° on the calm lamella; the Records' correlation is finer (a field a
    quarter as wide at a seventh of the pixel) and is re-anchored at every Record in turn.
    Only when this tilt's View found the target (its reference is this View)."""
    reference = t.view_references.get(group)
    found = t.view_position_um
    if reference is None or found is None:
        return
    view_is = (found[0] - reference.offset_um[0], found[1] - reference.offset_um[1])
    offset = (record_position_um[0] - view_is[0], record_position_um[1] - view_is[1])
    t.view_references[group] = Reference(reference.key, offset, reference.tilt_deg)


def _view_clear_of_dewar(toolkit: Toolkit, t: SequentialTarget, branch: str) -> Image:
    """The tracking View, with no dewar fill between it and its Record (``check_dewar``).

    The engine's dewar check comes after ``prepare()``: a fill it waited out there would fall
    between this View and its Record, and the View's measurement would be stale by the
    fill's wait and the drift it starts. A fill due within the View's time to its Record is
    started (and waited out) before the View; one that began during the View is waited out
    and the View taken again. Each View's dose is counted on the target."""
    scope = toolkit.scope
    check = toolkit.settings.check_dewar
    if check:
        protect_from_dewar(scope, DEWAR_MARGIN_S + VIEW_TO_RECORD_S)
    view = toolkit.view()
    count_dose(t, branch, view.dose_e_a2)
    if check and scope.housekeeping.dewar_status().filling:
        _log.info("target %d: a dewar fill began during its tracking View", t.info.index)
        protect_from_dewar(scope)
        view = toolkit.view()
        count_dose(t, branch, view.dose_e_a2)
    return view


def tracks_on_views(options: SequentialSettings, t: SequentialTarget, branch: str) -> bool:
    """Whether ``branch``'s next Record of ``t`` gets a tracking View before it."""
    mode = options.track_with_view
    if mode is True:
        return True
    if mode is False:
        return False
    return branch == "start" or branch in t.view_branches


def start_tracks(toolkit: Toolkit, preview: Image, record: Image, tilt_deg: float) -> bool:
    """Whether the start Record holds texture its tracking can follow: the Records' own
    correlation (the same binning, filter and significance floor) finds the target of the
    Preview taken just before it at the same tilt and place."""
    return tracking_displacement_um(toolkit, preview, record, tilt_deg, tilt_deg) is not None


def switch_to_views(
    toolkit: Toolkit,
    images: dict[str, Image],
    t: SequentialTarget,
    step: TiltStep,
    image_shift_um: tuple[float, float],
    options: SequentialSettings,
) -> None:
    """``auto``: this branch's Record just gave no believable tracking peak, nor found the
    branch's last good Record in a View, so the branch tracks on Views from now on; a View
    taken at once (at the Record's tilt and image shift) measures where this Record's target
    was (``t.view_position_um``, None if not found)."""
    t.view_branches.add(step.branch)
    _log.info(
        "target %d at %g°: the Record gives no tracking peak; the %s branch tracks on Views",
        t.info.index,
        step.tilt_deg,
        step.branch,
    )
    track_with_view(toolkit, images, t, step, image_shift_um, options.relocate_fraction)


def view_dose_e_a2(
    options: SequentialSettings, toolkit: Toolkit | None, t: SequentialTarget, branch: str
) -> float:
    """The dose of the tracking View before ``branch``'s next Record of ``t`` (0 if none)."""
    if toolkit is None or not tracks_on_views(options, t, branch):
        return 0.0
    return float(toolkit.scope.optics.preset(LowDoseArea.VIEW).dose_e_a2)


def offset_in_record(
    toolkit: Toolkit,
    images: dict[str, Image],
    t: SequentialTarget,
    step: TiltStep,
    image: Image,
    image_shift_um: tuple[float, float],
    options: SequentialSettings,
    start_tilt_deg: float,
) -> tuple[float, float] | None:
    """Where the target was in a tilted Record (µm from its image shift; None if nothing
    correlates): Leginon's tracking correlation (:func:`measure_offset`). When that finds it
    beyond ``relocate_fraction`` of the field or not at all, a View finds the group's last good
    Record (``relocate_with_view``); failing that, an ``auto`` branch goes on on Views
    (:func:`switch_to_views`). Where the branch's tracking View found the target, that wins;
    else the Record's finer tracking re-anchors the Views."""
    group = group_of(step.branch)
    ix, iy = image_shift_um
    offset = measure_offset(toolkit, images, t, group, image, step.tilt_deg, start_tilt_deg)
    field_um = min(image.data.shape) * image.pixel_size_a * 1e-4
    far = offset is None or math.hypot(*offset) > options.relocate_fraction * field_um
    if far and t.view_position_um is None:
        found = None
        if options.relocate_with_view:
            found = relocate_in_view(toolkit, images, t, group, step.tilt_deg)
        offset = found or offset
        switches = (
            options.track_with_view == "auto"
            and step.branch not in t.view_branches
            and bool(t.view_references)
        )
        if found is None and switches:
            switch_to_views(toolkit, images, t, step, image_shift_um, options)
    if far and t.view_position_um is not None:  # the tracking View found it
        return (t.view_position_um[0] - ix, t.view_position_um[1] - iy)
    if offset is not None:
        anchor_views_on_record(t, group, (ix + offset[0], iy + offset[1]))
    return offset
