"""Torn-away film in a square image, and how far each hole is from it.

Where the holey film is torn away the beam meets nothing: a large area at the vacuum level,
far brighter than the carbon (which carries its own scattering and a layer of ice). A
microscopist drops a hole at such a tear's edge even when it still holds ice: the film beside
it is gone (it flexes under the beam, and its ice thins towards the tear). The finder does the
same: the torn area is every pixel brighter than midway between the carbon's level and the
vacuum's, kept only where a disc wider than a hole fits inside (so no hole, even one that lost
its ice, counts as torn film), and a hole whose centre lies nearer to it than
:data:`FILM_AROUND` radii has no film all round.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

FILM_AROUND = 1.33  # an intact hole has film out to a third of its radius beyond its edge
OPENING_RADII = 1.3  # torn area: wide enough for a disc of this many hole radii


def _disc(radius: float) -> NDArray[np.bool_]:
    n = math.ceil(radius)
    yy, xx = np.mgrid[-n : n + 1, -n : n + 1]
    return np.asarray(np.hypot(xx, yy) <= radius)


def _opening(mask: NDArray[np.bool_], footprint: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Binary opening with the image continued beyond its border (so a torn area reaching
    the border keeps its shape there)."""
    reach = footprint.shape[0] // 2 + 1
    padded = np.pad(mask, reach, mode="edge")
    opened = ndimage.binary_opening(padded, structure=footprint)
    return np.asarray(opened[reach:-reach, reach:-reach])


def torn_area(
    data: NDArray[np.float64],
    opaque: NDArray[np.bool_],
    radius_px: float,
    carbon_level: float,
    vacuum_level: float | None = None,
) -> NDArray[np.bool_]:
    """Pixels of torn-away film: at the vacuum level, in areas wider than a hole.

    ``carbon_level`` is the film's own level (the ring around its holes); ``vacuum_level``,
    if not given, is taken from the image (its brightest smoothed level, then the median of
    the torn area found with it)."""
    smooth = ndimage.gaussian_filter(data, max(1.0, radius_px / 4))
    clear = ~opaque
    if not clear.any():
        return np.zeros(data.shape, bool)
    level_known = vacuum_level is not None
    vacuum = (
        float(vacuum_level)
        if vacuum_level is not None
        else float(np.percentile(smooth[clear], 99.5))
    )
    footprint = _disc(OPENING_RADII * radius_px)
    torn = np.zeros(data.shape, bool)
    for _ in range(1 if level_known else 2):
        if vacuum <= carbon_level:
            return np.zeros(data.shape, bool)
        level = 0.5 * (carbon_level + vacuum)
        torn = _opening((smooth > level) & clear, footprint)
        if not torn.any():
            break
        vacuum = float(np.median(data[torn]))
    return np.asarray(torn)


def distance_to_torn_px(torn: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Each pixel's distance (px) to the nearest torn pixel; infinite where none is torn."""
    if not torn.any():
        return np.full(torn.shape, np.inf)
    return np.asarray(ndimage.distance_transform_edt(~torn), np.float64)


def gap_at(distance_px: NDArray[np.float64], x: float, y: float) -> float:
    """The distance map at a point (x, y in pixel units, pixel centres at +0.5)."""
    if not np.isfinite(distance_px).any():
        return math.inf
    return float(ndimage.map_coordinates(distance_px, [[y - 0.5], [x - 0.5]], order=1)[0])
