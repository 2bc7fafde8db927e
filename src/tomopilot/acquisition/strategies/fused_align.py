"""``fused``'s alignment of a Record with its target's last aligned Record.

One cross-correlation over the whole map, after subtracting each image's smooth background: on
holey film beyond ~36° a hole's rim or dark carbon enters the field, and without that step the
taper prints the frame onto the rim's background and the true peak sinks to the noise (pace
keeps SerialEM's plain correlation). A peak is accepted only above a floor and above a fraction
of the target's own recent peaks, so a dark, thick high tilt whose peak collapses is refused
instead of followed. A large shift is checked against its alias one field away (a circular
correlation cannot tell them apart) on the images' real overlap.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tomopilot.acquisition.strategies.alias_check import unalias_shift
from tomopilot.acquisition.strategies.base import Toolkit
from tomopilot.acquisition.strategies.fused_state import FusedBranch
from tomopilot.instrument.types import Image

# A peak's height over its correlation map's spread: noise alone gives 3–5 on a 512² map,
# true matches 6–60 depending on the specimen's contrast. A peak is accepted above the floor
# and above a fraction of the target's own recent peaks (a dark, thick high tilt whose peak
# collapses is refused rather than followed).
MIN_SIGNIFICANCE = 5.5
MIN_SIGNIFICANCE_RELATIVE = 0.4
# Records are correlated after removing their smooth background (a Gaussian of this σ, Å): a
# hole's rim or dark carbon entering the field at high tilt otherwise dominates the correlation
# (on holey film beyond ~36° the true peak fell to the noise level and was refused or missed).
FLATTEN_A = 130.0
# The first target's weak peak that puts it this far from the field centre is checked by a View
# before every other target follows it: a false peak there moves them all (a lamella after a
# jump, 6° from its last good reference, gave one at significance 8.7 and 0.5 µm).
SUSPECT_SIGNIFICANCE = 12.0
SUSPECT_MISS_UM = 0.3
# Sub-pixel refinement: 1/8 px is 2 Å on a 16 Å Record, 4 Å on a 32 Å spot shot, far below
# the 50 nm a target must be within and the 10 nm a lateral residual is trusted to; the
# aligner's default of 1/20 px took half of fused's compute per Record.
UPSAMPLE = 8
# A Record whose target sat further than this (in fields) from its centre is no reference.
REFERENCE_MAX_OFFSET_FIELDS = 0.25

Peak = tuple[NDArray[np.float64], float]


@dataclass
class RecordMatch:
    """A Record against its reference: the raw peak, whether it was accepted, and the shift."""

    found: Peak | None
    aligned: bool
    shift: NDArray[np.float64]

    def suspect(self, base_um: NDArray[np.float64]) -> bool:
        """An accepted but weak peak that puts the target far from the field centre."""
        return (
            self.aligned
            and self.found is not None
            and self.found[1] < SUSPECT_SIGNIFICANCE
            and float(np.hypot(*(base_um + self.shift))) > SUSPECT_MISS_UM
        )


def match_record(
    toolkit: Toolkit,
    state: FusedBranch,
    reference: Image | None,
    image: Image,
    limit_um: float | None,
) -> RecordMatch:
    """Align ``image`` with ``reference``; an accepted peak joins the target's recent peaks."""
    shift: NDArray[np.float64] = np.zeros(2)
    aligned = reference is not None
    found = None
    if reference is not None:
        found = toolkit.shift_um(
            reference, image, limit_um=limit_um, flatten_a=FLATTEN_A, upsample=UPSAMPLE
        )
        needed = MIN_SIGNIFICANCE
        if state.peaks:
            needed = max(needed, MIN_SIGNIFICANCE_RELATIVE * statistics.median(state.peaks))
        aligned = found is not None and found[1] >= needed
        if found is not None and aligned:
            shift = unalias_shift(toolkit, reference, image, found[0])
            state.peaks = [*state.peaks[-5:], found[1]]
    return RecordMatch(found=found, aligned=aligned, shift=shift)


__all__ = [
    "FLATTEN_A",
    "MIN_SIGNIFICANCE",
    "REFERENCE_MAX_OFFSET_FIELDS",
    "UPSAMPLE",
    "RecordMatch",
    "match_record",
]
