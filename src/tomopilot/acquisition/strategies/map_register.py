"""A Preview registered to its target's map, only when the match can be believed.

Maps of thin, featureless ice (or a target moved out of the field) correlate with nothing:
the correlation's highest peak is then noise, anywhere, often near zero shift, and taken for
the target's miss it moves the target away (the sequential recentring walked 0.3-0.5 µm off
targets the stage had reached within 0.1 µm). :func:`register_to_map` returns a shift only
for a peak that stands out and lies within half the map's field.

A circular correlation also shows a true shift s at s − N (N the field): a backlash release
that moved a lamella 0.53 µm across a 0.82 µm Preview registered as −0.29 µm, and its series
started one field (0.82 µm) off its map target. A peak beyond MAP_ALIAS_CHECK_FRACTION of the
field is therefore scored against its alias on the images' real overlap
(:func:`~tomopilot.acquisition.strategies.alias_check.unalias_shift`); when the alias wins,
the shift lies beyond half the field and no shift is returned (the caller then looks wider).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from tomopilot.acquisition.strategies.alias_check import unalias_shift
from tomopilot.acquisition.strategies.base import Toolkit
from tomopilot.instrument.types import Image

# A Preview registered to its map (the same field, 256-512² at 16-32 Å): believed from this
# peak height on (twin, holes of six grids in R2/1 film: true peaks 6-16, noise ones 4.1-4.6
# on maps of thin featureless ice; lamella targets 19-31).
MIN_MAP_SIGNIFICANCE = 5.5
# A peak this far out (fraction of the field, along a camera axis) may be the alias of a shift
# of more than half the field: a true shift of (1 − f) fields shows at f.
MAP_ALIAS_CHECK_FRACTION = 0.15


def register_to_map(toolkit: Toolkit, reference: Image, image: Image) -> NDArray[np.float64] | None:
    """The specimen displacement (µm) from a target's map ``reference`` to ``image`` (same
    area), when it can be believed: a correlation peak of at least MIN_MAP_SIGNIFICANCE,
    within half the map's field (beyond, the overlap is under half the field). None otherwise:
    a map with little texture, or a target moved out of the field, gives a noise peak
    anywhere, often near zero, which would pass for "centred"."""
    found = toolkit.shift_um(reference, image)
    if found is None or found[1] < MIN_MAP_SIGNIFICANCE:
        return None
    shift = unalias_shift(
        toolkit,
        reference,
        image,
        np.asarray(found[0], dtype=np.float64),
        check_fraction=MAP_ALIAS_CHECK_FRACTION,
    )
    field_um = min(reference.data.shape) * reference.pixel_size_a * 1e-4
    if math.hypot(*shift) > field_um / 2:
        return None
    return np.asarray(shift, dtype=np.float64)
