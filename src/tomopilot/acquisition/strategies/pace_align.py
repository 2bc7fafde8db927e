"""``pace``'s reading of a Record-to-Record correlation: believed or not, and a lost target 1
found again in a View.

PACEtomo applies whatever peak the correlation of a Record with the target's previous raw
Record gives (reference/pacetomo.md §1.4.1). When the specimen moved by more than half a
Record field between the two (a side-entry holder's jump at the start of the second branch, a
run-away branch beyond 40°, a sudden jump), the fields no longer share the target: the peak is
noise (significance 3–6.5 on a 512² map, where true matches between successive tilts stand
10–65 high), or, for a move of more than half a field that still overlaps, the circular
correlation's alias one field away. Applied, such a peak is wrong by up to a field; target 1
hands it to every other target, each target's next correlation is made against a Record that
no longer shows it, and the rigid-rotation refit turns the false displacements into heights of
tens of µm whose predicted Δy and Δz throw the series further off (on the side-entry lamella,
seed 7, ±24°: 3.2 µm RMS, worse than not tracking at all).

So a peak is believed only from :data:`MIN_SIGNIFICANCE` on, and a shift of more than
:data:`ALIAS_SUSPECT_FIELD_FRACTION` (0.15) of the field is checked against its alias on the
images' real overlap (fused's check starts at twice that, alias_check.ALIAS_CHECK_FRACTION).
When target 1's Record cannot be believed, a View at its image shift (a 5.7 µm field, about
1 % of a Record's dose) is searched for target 1's last believed Record, as SerialEM re-finds
a lost target at a lower magnification and PACEtomo realigns with View at its set-up; a Record
that missed its target by more than a quarter of its field is then taken again, centred (as
trackTwice does).
"""

from __future__ import annotations

import logging
import math

import numpy as np
from numpy.typing import NDArray

from tomopilot.acquisition.strategies.alias_check import unalias_shift
from tomopilot.acquisition.strategies.base import ExposureRequest, Toolkit
from tomopilot.instrument.types import Image, Movie

_log = logging.getLogger(__name__)

# A Record-to-Record peak is believed from this height over its map's spread on: noise alone
# reaches 3–6.5 on 512² and 256² maps, true matches between successive tilts 10–65 (lamella
# and holey film to ±60°, autoloader and side-entry stages).
MIN_SIGNIFICANCE = 8.0
# A Record-to-Record shift beyond this fraction of the field is suspected of being the alias of
# a move one field away, and checked on the images' overlap: a true move of up to 0.85 fields
# (0.7 µm on a 0.82 µm Record) is told from the alias it prints at 0.15 fields or more (a
# side-entry + branch resuming 0.6 µm off gave its peak at 0.25).
ALIAS_SUSPECT_FIELD_FRACTION = 0.15
# The last believed Record located in a View (resampled to the View's pixel): believed from
# this peak height on, as sequential's relocations.
MIN_VIEW_SIGNIFICANCE = 10.0
# A Record whose target the View put further than this fraction of the field from its centre
# missed it, and is taken again; closer, it still shows the target and stays in the series.
MISSED_FIELD_FRACTION = 0.25


def believed_shift(
    toolkit: Toolkit, reference: Image, image: Image, limit_um: float | None
) -> NDArray[np.float64] | None:
    """The specimen's displacement from ``reference`` to ``image`` (µm), or None when no peak
    can be believed (too weak, or its alias resolved outside ``limit_um``)."""
    found = toolkit.shift_um(reference, image, limit_um=limit_um)
    if found is None or found[1] < MIN_SIGNIFICANCE:
        return None
    shift = unalias_shift(
        toolkit,
        reference,
        image,
        np.asarray(found[0], np.float64),
        check_fraction=ALIAS_SUSPECT_FIELD_FRACTION,
    )
    if limit_um is not None and float(np.max(np.abs(shift))) > limit_um:
        return None
    return np.asarray(shift, np.float64)


def missed_field(image: Image, offset_um: NDArray[np.float64]) -> bool:
    """Whether a target ``offset_um`` from the centre of ``image`` lies outside its middle."""
    field_um = float(min(image.data.shape)) * image.pixel_size_a * 1e-4
    return math.hypot(float(offset_um[0]), float(offset_um[1])) > MISSED_FIELD_FRACTION * field_um


def relocate_in_view(
    toolkit: Toolkit, reference: Image
) -> tuple[NDArray[np.float64] | None, Image]:
    """Where ``reference``'s field lies in a View taken now at the current image shift, as the
    specimen's displacement from it (µm, the meaning of :func:`believed_shift`), or None; and
    the View."""
    view = toolkit.view()
    found = toolkit.locate_in_wider(reference, view)
    if found is None or found[1] < MIN_VIEW_SIGNIFICANCE:
        _log.info("pace: target 1 not found in a View either")
        return None, view
    shift = np.asarray(found[0], np.float64)
    _log.info("pace: target 1 relocated in a View, %.0f nm", 1e3 * math.hypot(*shift))
    return shift, view


def retake_centred(
    toolkit: Toolkit,
    request: ExposureRequest,
    reference: tuple[Image, NDArray[np.float64]],
    found: tuple[Image, NDArray[np.float64]],
) -> tuple[Image, Movie | None, NDArray[np.float64], NDArray[np.float64] | None]:
    """A second Record of target 1, re-centred on where an image of this tilt ``found`` it.

    ``reference`` is target 1's last believed Record and its offset (the target's position in
    it, µm), ``found`` the image of this tilt that located the target (its first Record, or a
    View taken at the same image shift) and the target's position in it. Returns the new image
    (and its movie if the run saves frames), the image shift it was taken at, and the target's
    position in it: from its peak against ``reference`` (PACEtomo aligns the second Record as
    the first), or, when that cannot be believed, against the image that found the target
    seconds before; None when neither can be believed. The image replaces the first in the
    tilt series (PACEtomo's trackTwice: more dose on the tracking series, for bad stages).
    """
    offset_um = found[1]
    applied = np.asarray(request.image_shift_um, np.float64) + offset_um
    toolkit.scope.optics.set_image_shift_um(float(applied[0]), float(applied[1]))
    image, movie = toolkit.series_record(request.exposure_s, magnification=request.magnification)
    return image, movie, applied, _retake_offset_um(toolkit, image, reference, found)


def _retake_offset_um(
    toolkit: Toolkit,
    image: Image,
    reference: tuple[Image, NDArray[np.float64]],
    found: tuple[Image, NDArray[np.float64]],
) -> NDArray[np.float64] | None:
    """Target 1's position in its retake ``image`` (µm), or None (see :func:`retake_centred`)."""
    shift = believed_shift(toolkit, reference[0], image, None)
    if shift is not None:
        return reference[1] + shift
    witness, offset_um = found
    same_pixel = math.isclose(witness.pixel_size_a, image.pixel_size_a, rel_tol=1e-3)
    if same_pixel and witness.data.shape == image.data.shape:  # the first Record
        shift = believed_shift(toolkit, witness, image, None)
        return None if shift is None else offset_um + shift
    located = toolkit.locate_in_wider(image, witness)  # the View: the retake's field in it
    if located is None or located[1] < MIN_VIEW_SIGNIFICANCE:
        return None
    return offset_um - np.asarray(located[0], np.float64)


__all__ = [
    "ALIAS_SUSPECT_FIELD_FRACTION",
    "MIN_SIGNIFICANCE",
    "MIN_VIEW_SIGNIFICANCE",
    "believed_shift",
    "missed_field",
    "relocate_in_view",
    "retake_centred",
]
