"""Where a sequential target is in its Record: the tracking measurements after a Record.

:func:`measure_offset` is Leginon's tracking correlation of a Record with the group's previous
image that correlated; :func:`relocate_in_view` is ours, a View that finds the group's last
good Record when the correlation fails (Leginon has no way back once the target leaves the
field). :func:`carried_offset_um` carries a reference's offset to the next tilt.
"""

from __future__ import annotations

import logging
import math

from tomopilot.acquisition.strategies.base import Toolkit
from tomopilot.acquisition.strategies.fused_align import specimen_stretch
from tomopilot.acquisition.strategies.sequential_dose import count_dose
from tomopilot.acquisition.strategies.sequential_state import Reference, SequentialTarget
from tomopilot.acquisition.strategies.sequential_steps import (
    MIN_VIEW_SIGNIFICANCE,
    tracking_displacement_um,
)
from tomopilot.instrument.types import Image

_log = logging.getLogger(__name__)


def carried_offset_um(
    toolkit: Toolkit, offset_um: tuple[float, float], from_tilt_deg: float, to_tilt_deg: float
) -> tuple[float, float]:
    """The target's offset from a field centre (µm, x along the tilt axis) in an image at
    ``from_tilt_deg``, as it appears at ``to_tilt_deg`` where the field centre has followed
    the specimen: both points lie in the specimen's plane, so their distance across the axis
    follows the cosine of the plane's tilt (pretilt included). Leginon adds the offsets as
    they were; a target 40 nm off at 0° is then counted 80 nm off at 60°, and the chain of
    references adds that up step by step (twin truth, calm lamella: Record-to-Record 8.2 nm
    RMS off the true offsets, 2.9 nm carried, seed 1)."""
    stretch = specimen_stretch(toolkit.settings, from_tilt_deg, to_tilt_deg)
    return (offset_um[0], offset_um[1] * stretch)


def measure_offset(
    toolkit: Toolkit,
    images: dict[str, Image],
    t: SequentialTarget,
    group: int,
    image: Image,
    tilt_deg: float,
    start_tilt_deg: float,
) -> tuple[float, float] | None:
    """The target's offset from the field centre in ``image`` (µm), by correlation with the
    group's previous image; None if nothing correlates."""
    reference = t.references.get(group)
    if reference is None:
        return None
    previous = images.get(reference.key)
    if previous is None:  # after a resume: the start Record stands in
        previous = images.get(f"img:{t.info.index}:start")
        reference = Reference(f"img:{t.info.index}:start", (0.0, 0.0), start_tilt_deg)
        if previous is None:
            return None
    found = tracking_displacement_um(toolkit, previous, image, reference.tilt_deg, tilt_deg)
    if found is None:
        _log.info("target %d at %g°: no tracking peak", t.info.index, tilt_deg)
        return None
    carried = carried_offset_um(toolkit, reference.offset_um, reference.tilt_deg, tilt_deg)
    return (carried[0] + found[0], carried[1] + found[1])


def relocate_in_view(
    toolkit: Toolkit, images: dict[str, Image], t: SequentialTarget, group: int, tilt_deg: float
) -> tuple[float, float] | None:
    """Where the target is in a View at the current image shift, by finding the group's
    last good Record in it (the View's dose is counted on the target)."""
    reference = t.references.get(group)
    previous = None if reference is None else images.get(reference.key)
    if reference is None or previous is None:
        return None
    view = toolkit.view()
    count_dose(t, "-" if group == 1 else "+", view.dose_e_a2)
    found = toolkit.locate_in_wider(previous, view)
    if found is None or found[1] < MIN_VIEW_SIGNIFICANCE:
        _log.info("target %d: not found in a View either", t.info.index)
        return None
    d = found[0]
    _log.info("target %d relocated in a View: %.0f nm", t.info.index, 1e3 * math.hypot(*d))
    carried = carried_offset_um(toolkit, reference.offset_um, reference.tilt_deg, tilt_deg)
    return (float(d[0]) + carried[0], float(d[1]) + carried[1])
