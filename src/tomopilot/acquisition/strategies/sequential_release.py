"""What the backlash release before a sequential target's start reference moved (Leginon's
backlash correction, leginon.md §3 step 4: an image of the parent preset before the release and
one after, phase-correlated, the shift added to the image shift).

Our start reference is a Preview registered to the target's map, which needs texture at the
Record's scale. Thin ice in a hole has none: the Preview's peak stands under its floor (or the
camera's fixed pattern puts one at zero shift), and what the release moved (0.1-0.3 µm on an
autoloader, up to ~1 µm on a side-entry stage) would stay in the whole series. So a View (the
wide field, which holds the hole's edge) is taken at each target before the release; when the
Preview after it cannot be believed, a View after it is correlated with that one (the tracking
Views' correlation and floor), and only when that fails too is the map searched for in a wider
field.
"""

from __future__ import annotations

import logging

from tomopilot.acquisition.strategies.base import Toolkit
from tomopilot.acquisition.strategies.map_register import register_to_map
from tomopilot.acquisition.strategies.sequential_dose import count_dose
from tomopilot.acquisition.strategies.sequential_state import SequentialTarget
from tomopilot.acquisition.strategies.sequential_steps import (
    MIN_VIEW_TRACKING_SIGNIFICANCE,
    locate_map_wider,
    tracking_displacement_um,
)
from tomopilot.instrument.types import Image, LowDoseArea

_log = logging.getLogger(__name__)


def view_before_release(toolkit: Toolkit, image_shift_um: tuple[float, float]) -> Image:
    """A View at a target's image shift, the release's "before" image."""
    toolkit.scope.optics.set_image_shift_um(*image_shift_um)
    return toolkit.view()


def moved_by_release(
    toolkit: Toolkit, before: Image, image_shift_um: tuple[float, float], tilt_deg: float
) -> tuple[tuple[float, float] | None, Image]:
    """The specimen's displacement (µm, as the map registration's: added to the image shift)
    since ``before``, from a View taken now at ``image_shift_um``; None when the correlation has
    no believable peak. Also the View taken (its dose lands on the target)."""
    toolkit.scope.optics.set_image_shift_um(*image_shift_um)
    after = toolkit.view()
    found = tracking_displacement_um(
        toolkit, before, after, tilt_deg, tilt_deg, MIN_VIEW_TRACKING_SIGNIFICANCE
    )
    return found, after


def take_start_reference(
    toolkit: Toolkit,
    target: SequentialTarget,
    references: dict[str, Image],
    before: Image | None,
    tilt_deg: float,
) -> Image:
    """The target's reference at the start tilt: a Preview at its image shift, registered to
    its map, catches what the backlash release and the drift wait moved; the target's start
    image shift takes it. When the Preview's peak cannot be believed (thin ice in a hole, or a
    move beyond half its field), the Views around the release measure the move, and when
    they cannot either, a wider field looks for the map. Every image's dose is counted on the
    target. Returns the Preview (to judge the start Record's texture by)."""
    number = target.info.index
    toolkit.scope.optics.set_image_shift_um(*target.start_is_um)
    preview = toolkit.scope.camera.acquire(LowDoseArea.PREVIEW)
    count_dose(target, "start", preview.dose_e_a2)
    ref = references.get(f"map:{number}")
    registered = None if ref is None else register_to_map(toolkit, ref, preview)
    found: tuple[float, float] | None = (
        None if registered is None else (float(registered[0]), float(registered[1]))
    )
    if found is None and before is not None:
        found, after = moved_by_release(toolkit, before, target.start_is_um, tilt_deg)
        count_dose(target, "start", after.dose_e_a2)
        _log.info(
            "target %d: its start Preview did not register to its map; the Views around the "
            "backlash release %s",
            number,
            "did not either"
            if found is None
            else f"measured ({found[0]:+.3f}, {found[1]:+.3f}) µm",
        )
    if found is None and ref is not None:
        # Nor the Views (or no release): a wider field (the whole chip, else a View) looks
        # for the map; what the release moved would stay in the whole series.
        doses: list[float] = []
        wider = locate_map_wider(toolkit, ref, doses)
        count_dose(target, "start", sum(doses))
        found = None if wider is None else (float(wider[0][0]), float(wider[0][1]))
        _log.info(
            "target %d: its start Preview did not register to its map; %s",
            number,
            "nor in a wider field" if wider is None else f"a {wider[1]} found it",
        )
    if found is not None:
        sx, sy = target.start_is_um
        target.start_is_um = (sx + found[0], sy + found[1])
    return preview
