"""``fused``'s alignment of a Record with its target's last aligned Record.

One cross-correlation over the whole map, after subtracting each image's smooth background: on
holey film beyond ~36° a hole's rim or dark carbon enters the field, and without that step the
taper prints the frame onto the rim's background and the true peak sinks to the noise (pace
keeps SerialEM's plain correlation). A peak is accepted only above a floor and above a fraction
of the target's own recent peaks, so a dark, thick high tilt whose peak collapses is refused
instead of followed. A large shift is checked against its alias one field away (a circular
correlation cannot tell them apart) on the images' real overlap.

The reference is first stretched across the tilt axis by the change of the specimen's
foreshortening between its tilt and the image's (cos(θ + p) / cos(θ_ref + p), p the pretilt
about the axis), about the target's place in it, as IMOD's tiltxcorr does. Unstretched, a
Record and its reference differ by that stretch (6 % per 3° step at 57°, 13 % at 67° on a
10°-pretilted lamella), and the peak leans towards wherever the field's texture is: a few nm
per step, but every Record is aligned with the last, so it adds up. On the autoloader lamella
(seed 3) target 1's own alignment drifted 100 nm across the axis by +60° (the + branch, 70°
from the lamella's plane), and its next Record missed by as much.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from tomopilot.acquisition.plan.settings import AcquisitionSettings
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

# Below this change of foreshortening the reference is used as it is.
MIN_STRETCH = 1e-3

Peak = tuple[NDArray[np.float64], float]


def pretilt_about_axis_deg(settings: AcquisitionSettings) -> float:
    """The pretilt's component about the tilt axis: the specimen plane lies at stage tilt
    plus this from the beam's normal."""
    return settings.pretilt_deg * math.cos(math.radians(settings.rotation_deg))


def specimen_stretch(settings: AcquisitionSettings, ref_tilt_deg: float, tilt_deg: float) -> float:
    """How much a specimen feature's distance across the tilt axis changes from an image at
    ``ref_tilt_deg`` to one at ``tilt_deg``: the ratio of the specimen plane's cosines, the
    pretilt's component about the axis included (a lamella milled at 10° lies 10° further
    from the beam on one branch than on the other)."""
    p = math.radians(pretilt_about_axis_deg(settings))
    before = math.cos(math.radians(ref_tilt_deg) + p)
    after = math.cos(math.radians(tilt_deg) + p)
    if before <= 1e-3 or after <= 1e-3:
        return 1.0
    return after / before


def stretch_reference(
    toolkit: Toolkit, reference: Image, stretch_y: float, about_um: NDArray[np.float64]
) -> Image:
    """``reference`` stretched by ``stretch_y`` across the tilt axis about the point
    ``about_um`` (µm from its centre, where the target was in it), which stays where it is."""
    if abs(stretch_y - 1.0) < MIN_STRETCH:
        return reference
    matrix = toolkit.camera_matrix(reference)
    unit = matrix / np.sqrt(abs(np.linalg.det(matrix)))  # rotation: specimen -> camera
    stretch = unit @ np.diag([1.0, stretch_y]) @ np.linalg.inv(unit)  # (x, y) pixels
    inverse = np.linalg.inv(stretch)[::-1, ::-1]  # ndimage works in (row, column)
    col, row = matrix @ np.asarray(about_um, dtype=np.float64)  # the fixed point, pixels
    fixed = (np.array(reference.data.shape) - 1) / 2.0 + np.array([row, col])
    data = np.asarray(reference.data, dtype=np.float32)
    warped = ndimage.affine_transform(
        data, inverse, offset=fixed - inverse @ fixed, order=1, mode="nearest"
    )
    return replace(reference, data=np.asarray(warped, dtype=np.float32))


@dataclass
class RecordMatch:
    """A Record against its reference: the raw peak, whether it was accepted, and the shift."""

    found: Peak | None
    aligned: bool
    shift: NDArray[np.float64]

    def offset_um(self, base_um: NDArray[np.float64]) -> NDArray[np.float64]:
        """Where the target is in the image (µm from its centre): it was at ``base_um`` in the
        reference, the fixed point of the stretch."""
        return np.asarray(base_um, dtype=np.float64) + self.shift

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
    stretch_y: float = 1.0,
) -> RecordMatch:
    """Align ``image`` with ``reference`` (stretched by ``stretch_y`` about the target's place
    in it, ``state.ref_offset_um``); an accepted peak joins the target's recent peaks."""
    shift: NDArray[np.float64] = np.zeros(2)
    aligned = reference is not None
    found = None
    if reference is not None:
        if reference.data.shape == image.data.shape and math.isclose(
            reference.pixel_size_a, image.pixel_size_a, rel_tol=1e-6
        ):
            base = np.asarray(state.ref_offset_um, dtype=np.float64)
            reference = stretch_reference(toolkit, reference, stretch_y, base)
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
    "pretilt_about_axis_deg",
    "specimen_stretch",
    "stretch_reference",
]
