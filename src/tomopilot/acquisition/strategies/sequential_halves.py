"""Between a sequential target's halves: back to the start tilt and recentre on a Preview.

After the first half (start tilt and the + branch) the stage returns to the start tilt (with a
backlash release), a Preview at the start image shift is correlated with the start Record,
and the − branch's predictor group starts from where the target was found there.
"""

from __future__ import annotations

import logging
import math

from tomopilot.acquisition.plan.sequential_settings import SequentialSettings
from tomopilot.acquisition.strategies.base import Toolkit
from tomopilot.acquisition.strategies.sequential_dose import count_dose
from tomopilot.acquisition.strategies.sequential_state import Reference, SequentialTarget
from tomopilot.acquisition.strategies.sequential_steps import (
    MIN_VIEW_SIGNIFICANCE,
    backlash_release,
    tracking_displacement_um,
)
from tomopilot.instrument.types import Image, LowDoseArea

_log = logging.getLogger(__name__)


def recentre_between_halves(
    toolkit: Toolkit,
    images: dict[str, Image],
    t: SequentialTarget,
    options: SequentialSettings,
    start_tilt_deg: float,
    *,
    from_above: bool = False,
) -> None:
    """Back to the start tilt, recentre on a Preview, group 1 starts from there (``images``
    gains the Preview as group 1's first reference). ``from_above``: the backlash release
    comes down to the start tilt (the − half's tilts are then approached downwards)."""
    o = options
    scope = toolkit.scope
    if o.backlash_release:
        backlash_release(
            toolkit, start_tilt_deg, o.backlash_steps, o.backlash_pause_s, from_above=from_above
        )
    else:
        scope.stage.tilt_to(start_tilt_deg)
    scope.optics.set_image_shift_um(*t.start_is_um)
    preview = scope.camera.acquire(LowDoseArea.PREVIEW)
    count_dose(t, "-", preview.dose_e_a2)  # on the target, as the − branch's first image
    number = t.info.index
    start = images.get(f"img:{number}:start")
    centre = t.start_is_um  # where the Preview was taken
    offset = (0.0, 0.0)  # the target's offset from its centre
    # A correlation is circular: a target more than half a field away comes back as an alias
    # a field off (a 0.5 µm jump in a 0.8 µm field reads −0.3 µm). A shift is believed only
    # within the fraction of the field the Records' tracking believes; beyond, a View finds it.
    field_um = min(preview.data.shape) * preview.pixel_size_a * 1e-4
    if start is not None:
        field_um = min(field_um, min(start.data.shape) * start.pixel_size_a * 1e-4)
        reach_um = o.relocate_fraction * field_um
        found = tracking_displacement_um(toolkit, start, preview, start_tilt_deg, start_tilt_deg)
        if found is not None and math.hypot(*found) < reach_um:
            offset = found
        elif o.relocate_with_view:
            # The reversal moved the target (nearly) out of the Preview: find the start
            # Record in a View and take the Preview again over it (ours; Leginon
            # re-registers the parent image).
            view = toolkit.view()
            count_dose(t, "-", view.dose_e_a2)
            hit = toolkit.locate_in_wider(start, view)
            seen = (
                None
                if hit is None or hit[1] < MIN_VIEW_SIGNIFICANCE
                else (centre[0] + float(hit[0][0]), centre[1] + float(hit[0][1]))
            )
            reachable = (
                seen is not None and max(map(abs, seen)) <= scope.optics.image_shift_limit_um
            )
            if seen is not None and not reachable:
                # Beyond image-shift reach: group 1 starts where the View saw the target, and
                # the engine ends the − half at the image-shift limit.
                centre, offset = seen, (0.0, 0.0)
            elif seen is not None:
                centre = seen
                scope.optics.set_image_shift_um(*centre)
                preview = scope.camera.acquire(LowDoseArea.PREVIEW)
                count_dose(t, "-", preview.dose_e_a2)
                found = tracking_displacement_um(
                    toolkit, start, preview, start_tilt_deg, start_tilt_deg
                )
                near = found is not None and math.hypot(*found) < reach_um
                offset = found if found is not None and near else offset
                _log.info("target %d found again in a View between the halves", number)
    position = (centre[0] + offset[0], centre[1] + offset[1])
    t.predictor.add_position(1, start_tilt_deg, *position)
    images[f"pre:{number}"] = preview
    t.references[1] = Reference(f"pre:{number}", offset, start_tilt_deg)
    t.second_half_ready = True
