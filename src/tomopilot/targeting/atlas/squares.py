"""Grid squares in an atlas, their ice thickness from counts, and their ranking.

1. **Squares.** Grid bars let nothing through, so the atlas is thresholded at a fraction of its
   bright level and its connected bright regions are the squares' openings. Each gets its centre
   (specimen µm, through the map's matrix), its area and the statistics of its interior.
2. **Thickness.** With the energy filter in, counts fall as I = I₀·exp(−t/λ) (the zero-loss
   Beer–Lambert law, λ the inelastic mean free path, ~350 nm in vitreous ice at 300 kV), so a
   square's apparent thickness is t = λ·ln(I₀/I) from its median counts. I₀ is vacuum: torn
   film of a broken square, or the brightest part of the atlas if none is torn (then every
   thickness is underestimated by the same amount and the ranking is unchanged), or a value
   the user measured (``vacuum_counts``). At atlas pixels the holes are not resolved, so the
   apparent thickness averages holes and carbon: it is below the ice in the holes, and
   monotonic in it.
3. **Flags and ranking.** A square is *partial* (cut by the rim or a contaminated bar: much
   smaller than the typical opening), *empty* (thinner than ``min_nm`` over all of it: dry
   film, or torn nearly everywhere), *broken* (more than ``broken_fraction`` of it at vacuum
   counts) or *too thick* (its film thicker than ``max_nm``). The others are ranked by how
   far their thickness lies from ``target_nm``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from tomopilot.targeting.errors import TargetingError
from tomopilot.targeting.map_image import MapImage

ICE_MFP_NM = 350.0  # inelastic mean free path of vitreous ice at 300 kV, zero-loss filtered
BAR_LEVEL = 0.3  # bright regions: above this fraction of the atlas's bright level
VACUUM_LEVEL = 0.97  # pixels this close to I0 are vacuum
TORN_CONTRAST = 1.08  # ... and this much brighter than the square's film


@dataclass
class Square:
    """A square found in an atlas."""

    label: int
    centre_um: tuple[float, float]
    centre_px: tuple[float, float]
    area_um2: float
    median_counts: float
    vacuum_fraction: float
    thickness_nm: float = math.nan
    flags: list[str] = field(default_factory=list)
    rank: int | None = None

    @property
    def usable(self) -> bool:
        """No flag: a candidate for targets."""
        return not self.flags


@dataclass
class SquareSurvey:
    """Every square of an atlas, the vacuum reference used and how it was found."""

    squares: list[Square]
    vacuum_counts: float
    vacuum_source: str
    mfp_nm: float

    def ranked(self) -> list[Square]:
        """Usable squares, best first."""
        return sorted((s for s in self.squares if s.rank is not None), key=lambda s: s.rank or 0)


def find_squares(
    atlas: MapImage, *, min_area_um2: float = 200.0
) -> tuple[list[Square], NDArray[np.int32]]:
    """Bright connected regions of the atlas (the openings between the bars) and their labels."""
    data = ndimage.gaussian_filter(np.asarray(atlas.data, np.float64), 1.0)
    bright = float(np.percentile(data, 99.5))
    if bright <= 0:
        raise TargetingError("the atlas is dark: no squares to find")
    mask = data > BAR_LEVEL * bright
    mask = ndimage.binary_opening(mask, iterations=1)
    labels, n = ndimage.label(mask)
    pixel_area = atlas.pixel_um**2
    squares = []
    raw = np.asarray(atlas.data, np.float64)
    for label in range(1, n + 1):
        region = labels == label
        area = float(region.sum()) * pixel_area
        if area < min_area_um2:
            continue
        interior = ndimage.binary_erosion(region, iterations=2)
        values = raw[interior] if interior.sum() >= 9 else raw[region]
        row, col = ndimage.center_of_mass(region)
        centre = atlas.to_specimen(np.array([[col + 0.5, row + 0.5]]))[0]
        squares.append(
            Square(
                label=label,
                centre_um=(float(centre[0]), float(centre[1])),
                centre_px=(float(col + 0.5), float(row + 0.5)),
                area_um2=area,
                median_counts=float(np.median(values)),
                vacuum_fraction=0.0,
            )
        )
    return squares, labels.astype(np.int32)


def _vacuum_pixels(values: NDArray[np.float64], i0: float) -> NDArray[np.bool_]:
    """Pixels at vacuum: near I0, and clearly brighter than the square's film (its lower
    quartile), so the brightest thin square is not called torn when I0 came from it."""
    level = max(VACUUM_LEVEL * i0, TORN_CONTRAST * float(np.percentile(values, 25)))
    return np.asarray(values >= level)


def _trimmed_mean(values: NDArray[np.float64]) -> float:
    """Mean without the darkest 5 % (contamination). Holes and carbon are not resolved at
    atlas pixels, so the mean, not the median, is the square's transmission."""
    return float(np.mean(values[values >= np.percentile(values, 5)]))


def survey_squares(
    atlas: MapImage,
    *,
    vacuum_counts: float | None = None,
    mfp_nm: float = ICE_MFP_NM,
    min_nm: float = 30.0,
    max_nm: float = 180.0,
    target_nm: float = 60.0,
    broken_fraction: float = 0.1,
    partial_fraction: float = 0.7,
) -> SquareSurvey:
    """Find, measure, flag and rank the squares of an atlas (see module docstring)."""
    squares, labels = find_squares(atlas)
    if not squares:
        raise TargetingError("no grid squares were found in the atlas")
    smooth = ndimage.gaussian_filter(np.asarray(atlas.data, np.float64), 1.0)
    values = {}
    for square in squares:
        region = ndimage.binary_erosion(labels == square.label, iterations=2)
        if region.sum() < 9:
            region = labels == square.label
        values[square.label] = smooth[region]
    if vacuum_counts is not None:
        i0, source = float(vacuum_counts), "given"
    else:
        everything = np.concatenate(list(values.values()))
        i0, source = float(np.percentile(everything, 99.9)), "brightest square pixels"
        # Where squares are torn, vacuum is their bright mode: take its median, not the
        # noise-raised top percentile.
        torn = [v[_vacuum_pixels(v, i0)] for v in values.values()]
        torn = [
            t
            for t, v in zip(torn, values.values(), strict=True)
            if t.size > broken_fraction * v.size
        ]
        if torn:
            i0, source = float(np.median(np.concatenate(torn))), "vacuum of broken squares"
    if i0 <= 0:
        raise TargetingError(f"the vacuum reference must be positive, not {i0:g} counts")
    typical_area = float(np.median([s.area_um2 for s in squares]))
    for square in squares:
        v = values[square.label]
        vacuum = _vacuum_pixels(v, i0)
        square.vacuum_fraction = float(np.mean(vacuum))
        film = v[~vacuum]
        counts = _trimmed_mean(film) if film.size >= max(9, v.size // 10) else i0
        square.thickness_nm = float(mfp_nm * math.log(i0 / max(counts, 1e-9)))
        whole_nm = mfp_nm * math.log(i0 / max(_trimmed_mean(v), 1e-9))
        if square.area_um2 < partial_fraction * typical_area:
            square.flags.append("partial")
        if whole_nm < min_nm:
            square.flags.append("empty")  # no ice to speak of, film or not
        elif square.vacuum_fraction > broken_fraction:
            square.flags.append("broken")
        elif square.thickness_nm < min_nm:
            square.flags.append("empty")
        elif square.thickness_nm > max_nm:
            square.flags.append("too thick")
    usable = sorted((s for s in squares if s.usable), key=lambda s: abs(s.thickness_nm - target_nm))
    for rank, square in enumerate(usable, start=1):
        square.rank = rank
    return SquareSurvey(squares=squares, vacuum_counts=i0, vacuum_source=source, mfp_nm=mfp_nm)
