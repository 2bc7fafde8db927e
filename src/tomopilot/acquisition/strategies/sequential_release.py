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

from tomopilot.acquisition.strategies.base import Toolkit
from tomopilot.acquisition.strategies.sequential_steps import (
    MIN_VIEW_TRACKING_SIGNIFICANCE,
    tracking_displacement_um,
)
from tomopilot.instrument.types import Image


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
