"""``fused``'s relocation of target 1 by a short View.

When the first target at a tilt cannot be aligned, or its peak is weak and puts it far from the
field centre (every other target would follow it), a short View of target 1 relocates the common
error (a run-away onset, a jump, a hole edge crossing the field at high tilt; a View costs about
1 % of a Record's dose and 2–3 s). The last View of target 1 on the branch, stretched for the
change of foreshortening since it was taken, is aligned with the fresh one. A weak Record peak
that agrees with the View is kept for its finer pixel; a Record the View found far off its target
does not become the next reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.plan.tilt_schemes import TiltStep
from tomopilot.acquisition.strategies.alias_check import unalias_shift
from tomopilot.acquisition.strategies.base import Toolkit
from tomopilot.acquisition.strategies.fused_align import MIN_SIGNIFICANCE, Peak
from tomopilot.acquisition.strategies.fused_state import FusedBranch
from tomopilot.instrument.types import Image, LowDoseArea

VIEW_MIN_SIGNIFICANCE = 6.0
# A relocation View needs the big features of a 5 µm field, not the View preset's full dose:
# a short exposure saves most of a second per View (read-out and overheads stay).
RELOCATION_VIEW_EXPOSURE_S = 0.3
# A View pixel is ~3 nm but its alignment, stretched over a change of tilt, is good to a few
# tens of nm: a Record peak this close to the View's answer is the same match.
VIEW_AGREE_UM = 0.06
#: key of target 1's last View on a branch in the strategy's images: ``view:1:<branch>``
VIEW_KEY = "view:1"


def _zero_offsets() -> dict[str, list[float]]:
    return {"+": [0.0, 0.0], "-": [0.0, 0.0]}


@dataclass
class ViewRelocation:
    """Per branch: the tilt of target 1's last View and the target's offset in it."""

    tilt_deg: dict[str, float] = field(default_factory=lambda: {"+": 0.0, "-": 0.0})
    offset_um: dict[str, list[float]] = field(default_factory=_zero_offsets)
    recoveries: int = 0

    def start(self, images: dict[str, Image], view: Image, tilt_deg: float) -> None:
        """The set-up's wide View of target 1: what a lost target is searched for in later."""
        for branch in ("+", "-"):
            images[f"{VIEW_KEY}:{branch}"] = view
            self.tilt_deg[branch] = tilt_deg
            self.offset_um[branch] = [0.0, 0.0]

    def relocate(
        self,
        toolkit: Toolkit,
        settings: AcquisitionSettings,
        images: dict[str, Image],
        step: TiltStep,
    ) -> NDArray[np.float64] | None:
        """Target 1's offset from the field centre (µm) in a fresh View at the current image
        shift, or None (no View to compare with, or no peak). Costs one short View exposure."""
        branch = step.branch
        reference = images.get(f"{VIEW_KEY}:{branch}")
        if reference is None:
            return None
        self.recoveries += 1
        preset = toolkit.scope.optics.preset(LowDoseArea.VIEW)
        view = toolkit.record(
            exposure_s=min(preset.exposure_s, RELOCATION_VIEW_EXPOSURE_S), area=LowDoseArea.VIEW
        )
        p = math.radians(settings.pretilt_deg * math.cos(math.radians(settings.rotation_deg)))
        stretch = math.cos(math.radians(step.tilt_deg) + p) / math.cos(
            math.radians(self.tilt_deg[branch]) + p
        )
        found = toolkit.shift_stretched_um(reference, view, stretch)
        if found is None or found[1] < VIEW_MIN_SIGNIFICANCE:
            return None
        offset: NDArray[np.float64] = np.asarray(found[0], dtype=np.float64) + np.array(
            self.offset_um[branch]
        )
        images[f"{VIEW_KEY}:{branch}"] = view
        self.tilt_deg[branch] = step.tilt_deg
        self.offset_um[branch] = offset.tolist()
        return offset


def confirm_record(
    toolkit: Toolkit,
    state: FusedBranch,
    reference: Image,
    image: Image,
    found: Peak | None,
    base: NDArray[np.float64],
    absolute: NDArray[np.float64],
) -> NDArray[np.float64]:
    """The Record's own weak peak, where the View relocation confirms it.

    Peaks fall with tilt (longer path, less contrast, more change between projections), so
    a peak refused against the target's low-tilt peaks may still be right. When it lands
    within VIEW_AGREE_UM of the View's answer the Record's finer pixel wins, and its height
    becomes the new yardstick; otherwise the View's answer stands and the yardstick restarts
    from the floor.
    """
    if found is not None and found[1] >= MIN_SIGNIFICANCE:
        candidate = base + unalias_shift(toolkit, reference, image, found[0])
        if float(np.hypot(*(candidate - absolute))) <= VIEW_AGREE_UM:
            state.peaks = [found[1]]
            return np.asarray(candidate, dtype=np.float64)
    state.peaks = []
    return absolute


__all__ = ["VIEW_KEY", "ViewRelocation", "confirm_record"]
