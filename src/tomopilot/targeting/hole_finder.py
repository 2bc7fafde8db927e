"""Holes in a square image: where they are, which hold ice, and which make targets.

A Square-preset image shows the square's opening with the holey film: at these pixels the holes
are discs of the film's known diameter, brighter than the carbon around them (the carbon adds
its own scattering to the ice). The finder

1. marks what lets nothing through (grid bars, thick contamination: below ``OPAQUE_LEVEL`` of
   the bright level) and paints it with the film's median, so bar edges do not look like holes;
2. correlates the image with a zero-mean disc of the hole radius (a disc minus its ring) and
   keeps local maxima above the noise and above half the typical strong response;
3. measures each candidate's disc and the ring around it (r…1.5 r): a ring touching opaque
   pixels means a hole cut by a bar or under contamination, a ring as bright as the disc means
   torn film (no carbon around); both are dropped. Torn film comes in patches, so a hole just
   under the torn line whose lattice neighbours are film holes is kept (shot noise on an
   intact hole); only one clearly without carbon is torn on its own. A hole nearer than a
   third of its radius to torn-away film (:mod:`~tomopilot.targeting.torn_film`: the areas
   at the vacuum level wider than a hole) is dropped too: no film all round it. The lattice
   is fitted again on the detections well inside the film, two radii from bars and tears;
4. classes the rest: holes with ice sit at the square's common disc/ring ratio (the carbon's
   own attenuation) and at the brightness of the typical hole around them; a hole whose ice is
   gone, or a lattice point in torn-away film, is brighter by exp(t/λ): above ``EMPTY_RATIO``
   times either, it is *empty*;
5. estimates each hole's ice as λ·ln(I₀/I) when the vacuum counts I₀ are given.

:func:`choose_targets` picks holes for tilt series: intact, away from bars and from each other,
each with a focus position on carbon along the tilt axis (Leginon's "focus off target").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from tomopilot.imaging.autocorrelation import refine_peak
from tomopilot.imaging.hole_template import match_disc
from tomopilot.targeting.errors import TargetingError
from tomopilot.targeting.map_image import MapImage
from tomopilot.targeting.torn_film import FILM_AROUND, distance_to_torn_px, gap_at, torn_area

OPAQUE_LEVEL = 0.3  # below this fraction of the bright level nothing gets through
EMPTY_RATIO = 1.05  # disc/ring this far above the square's median: the hole's ice is gone
TORN_RATIO = 1.035  # disc/ring below this: no carbon around the disc (torn film)
TORN_SHARE = 0.5  # ... or below half the typical hole's contrast, where that is lower
TORN_CLEAR = 0.2  # under a fifth of it, torn whatever the neighbours (see the finder)
ICE_MFP_NM = 350.0
# A bar's edge is known to about a pixel: a hole whose rim comes within half a pixel of it
# (its centre within r + 1 px of the nearest opaque pixel's centre) is taken as cut by it.
BAR_MARGIN_PX = 1.0


@dataclass(frozen=True)
class FoundHole:
    """A hole found in a square image."""

    centre_um: tuple[float, float]
    centre_px: tuple[float, float]
    score: float
    disc_counts: float
    ring_ratio: float
    intact: bool
    ice_nm: float = math.nan


@dataclass(frozen=True)
class HoleFinding:
    """Everything the finder kept, and what it dropped and why (counts)."""

    holes: list[FoundHole]
    dropped: dict[str, int]
    radius_px: float

    @property
    def intact(self) -> list[FoundHole]:
        """The holes with ice."""
        return [h for h in self.holes if h.intact]


def _disc_and_ring(
    data: NDArray[np.float64], opaque: NDArray[np.bool_], x: float, y: float, r: float
) -> tuple[float, float, float]:
    """Mean of the disc (0.8 r), mean of the ring (1.15 r…1.5 r, opaque pixels left out), and
    the opaque fraction of the hole itself (r, counting what lies outside the image)."""
    ny, nx = data.shape
    reach = math.ceil(1.5 * r) + 1
    c0, c1 = max(0, int(x) - reach), min(nx, int(x) + reach + 1)
    r0, r1 = max(0, int(y) - reach), min(ny, int(y) + reach + 1)
    yy, xx = np.mgrid[r0:r1, c0:c1]
    dist = np.hypot(xx + 0.5 - x, yy + 0.5 - y)
    patch = data[r0:r1, c0:c1]
    dark = opaque[r0:r1, c0:c1]
    disc = dist <= 0.8 * r
    ring = (dist >= 1.15 * r) & (dist <= 1.5 * r) & ~dark
    hole = dist <= r
    missing = max(0.0, 1.0 - float(hole.sum()) / (math.pi * r * r))
    opaque_fraction = float(dark[hole].mean()) + missing if hole.any() else 1.0
    if not disc.any() or not ring.any():
        return math.nan, math.nan, 1.0
    return float(patch[disc].mean()), float(patch[ring].mean()), opaque_fraction


def _square_lattice(
    points: NDArray[np.float64], pitch_px: float | None
) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    """Origin (2,) and basis (2 × 2, columns a and b) of the square lattice the points lie on."""
    if len(points) < 4:
        return None
    diff = points[:, None, :] - points[None, :, :]
    dist = np.hypot(diff[..., 0], diff[..., 1])
    np.fill_diagonal(dist, np.inf)
    nearest = dist.min(axis=1)
    pitch = pitch_px if pitch_px is not None else float(np.median(nearest))
    close = (dist > 0.7 * pitch) & (dist < 1.3 * pitch)
    vectors = diff[close]
    if len(vectors) < 4:
        return None
    angles = np.arctan2(vectors[:, 1], vectors[:, 0])
    theta = float(np.angle(np.mean(np.exp(4j * angles)))) / 4  # a square lattice: mod 90°
    basis = pitch * np.array(
        [[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]]
    )
    # Origin from the phases of the points near the middle, then least squares on the inliers
    # over a growing neighbourhood (so a pitch a few % off cannot mislabel far holes).
    # Start from the central detection most holes agree with (a stray one would mislead).
    inverse = np.linalg.inv(basis)
    central = np.argsort(np.hypot(*(points - np.median(points, axis=0)).T))[:10]

    def agreeing(k: int) -> int:
        rel = points - points[k]
        near = np.hypot(*rel.T) <= 4 * pitch
        off = rel[near] - np.round(rel[near] @ inverse.T) @ basis.T
        return int(np.sum(np.hypot(*off.T) < 0.25 * pitch))

    middle = points[max(central, key=agreeing)]
    reach_all = float(np.max(np.hypot(*(points - middle).T)))
    origin = middle.astype(np.float64)
    for reach in (4 * pitch, 8 * pitch, 16 * pitch, reach_all + pitch):
        near = np.hypot(*(points - middle).T) <= reach
        for _ in range(2):
            idx = np.round((points[near] - origin) @ np.linalg.inv(basis).T)
            residual = np.hypot(*(points[near] - origin - idx @ basis.T).T)
            keep = residual < 0.25 * float(np.hypot(*basis[:, 0]))
            if keep.sum() < 4:
                return None
            design = np.concatenate([np.ones((int(keep.sum()), 1)), idx[keep]], axis=1)
            coef, *_ = np.linalg.lstsq(design, points[near][keep], rcond=None)
            origin, basis = coef[0], coef[1:].T
        if reach > reach_all:
            break
    # Last, only the points on the lattice within a tenth of its pitch: a few detections
    # pulled aside (at bar edges, by a tear) tilt the basis at 0.25 pitch, which moved the
    # far holes by 0.05-0.1 µm.
    for _ in range(3):
        idx = np.round((points - origin) @ np.linalg.inv(basis).T)
        residual = np.hypot(*(points - origin - idx @ basis.T).T)
        keep = residual < 0.1 * float(np.hypot(*basis[:, 0]))
        if keep.sum() < 4:
            break
        design = np.concatenate([np.ones((int(keep.sum()), 1)), idx[keep]], axis=1)
        coef, *_ = np.linalg.lstsq(design, points[keep], rcond=None)
        origin, basis = coef[0], coef[1:].T
    return origin, basis


def _lattice_nodes(
    origin: NDArray[np.float64], basis: NDArray[np.float64], shape: tuple[int, int], r: float
) -> NDArray[np.float64]:
    """Lattice points (x, y) whose whole hole lies inside an image of ``shape``."""
    ny, nx = shape
    corners = np.array([[0, 0], [nx, 0], [0, ny], [nx, ny]], float)
    frac = (corners - origin) @ np.linalg.inv(basis).T
    lo, hi = np.floor(frac.min(axis=0)) - 1, np.ceil(frac.max(axis=0)) + 1
    ii, jj = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1))
    nodes = np.stack([ii.ravel(), jj.ravel()], 1) @ basis.T + origin
    inside = (
        (nodes[:, 0] >= r) & (nodes[:, 0] <= nx - r) & (nodes[:, 1] >= r) & (nodes[:, 1] <= ny - r)
    )
    return np.asarray(nodes[inside])


def find_holes_in_square(
    square: MapImage,
    hole_diameter_um: float,
    *,
    pitch_um: float | None = None,
    vacuum_counts: float | None = None,
    mfp_nm: float = ICE_MFP_NM,
    max_opaque_fraction: float = 0.05,
) -> HoleFinding:
    """Holes of ``hole_diameter_um`` (on a square lattice of ``pitch_um``, if known) in a
    square image (see module docstring)."""
    r = hole_diameter_um / 2 / square.pixel_um
    if r < 2.0:
        raise TargetingError(
            f"holes of {hole_diameter_um:g} µm are {2 * r:.1f} px across in this image; "
            "take the square at a higher magnification (at least 4 px per hole)"
        )
    data = np.asarray(square.data, np.float64)
    bright = float(np.percentile(data, 99.0))
    if bright <= 0:
        raise TargetingError("the square image is dark")
    opaque = ndimage.gaussian_filter(data, 1.0) < OPAQUE_LEVEL * bright  # not single noisy pixels
    dropped = {"off lattice": 0, "cut or covered": 0, "torn film": 0}
    if opaque.all():
        return HoleFinding([], dropped, r)
    film_level = float(np.median(data[~opaque]))
    painted = np.where(opaque, film_level, data)
    response, sign = match_disc(painted, r)
    response = response * sign  # bright discs positive
    size = max(3, round(r * 2) | 1)
    peaks = (response == ndimage.maximum_filter(response, size=size)) & ~opaque
    strong = response[peaks & (response > 0)]
    if strong.size == 0:
        return HoleFinding([], dropped, r)
    typical = float(np.median(np.sort(strong)[strong.size // 2 :]))
    rows, cols = np.nonzero(peaks & (response > 0.35 * typical))
    found = np.array(
        [
            (cc + 0.5, rr + 0.5)
            for rr, cc in (
                refine_peak(response, int(row), int(col), radius=max(2, int(r // 3)))
                for row, col in zip(rows, cols, strict=True)
            )
        ]
    ).reshape(-1, 2)
    # The holes lie on a lattice: fit it to the detections that look like holes in film (not
    # noise in torn-away vacuum, not at bars), then look at every lattice point.
    pitch_px = pitch_um / square.pixel_um if pitch_um is not None else None
    looks_like_hole = []
    for x, y in found:
        disc, ring, dark = _disc_and_ring(data, opaque, float(x), float(y), r)
        looks_like_hole.append(dark == 0 and ring > 0 and disc / ring >= TORN_RATIO)
    like = np.asarray(looks_like_hole, bool)
    lattice = _square_lattice(found[like], pitch_px)
    positions = found if lattice is None else _lattice_nodes(*lattice, data.shape, r)
    # Torn film: the area at the vacuum level (the film's level from the lattice's holes in
    # film), and each pixel's distance to it.
    clearance = ndimage.distance_transform_edt(~opaque)
    rings = []
    for x, y in positions:
        disc, ring, dark = _disc_and_ring(data, opaque, float(x), float(y), r)
        if dark == 0 and ring > 0 and disc / ring >= TORN_RATIO:
            rings.append(ring)
    to_torn = distance_to_torn_px(
        torn_area(data, opaque, r, float(np.median(rings)), vacuum_counts)
        if rings
        else np.zeros(data.shape, bool)
    )
    # The lattice again from the detections well inside the film (two radii from bars and
    # torn film), where nothing pulls a detection aside.
    if lattice is not None:
        row = np.clip(found[:, 1].astype(int), 0, data.shape[0] - 1)
        col = np.clip(found[:, 0].astype(int), 0, data.shape[1] - 1)
        inner = like & (clearance[row, col] >= 2 * r) & (to_torn[row, col] >= 2 * r)
        if inner.sum() >= 8:
            lattice = _square_lattice(found[inner], pitch_px) or lattice
        positions = _lattice_nodes(*lattice, data.shape, r)
        if len(positions):
            gap = np.hypot(*(found[:, None, :] - positions[None, :, :]).transpose(2, 0, 1))
            dropped["off lattice"] = int(np.sum(gap.min(axis=1) > 0.5 * r))
    # A hole cut by a bar: its rim touches what lets nothing through (BAR_MARGIN_PX).
    measured = []
    for x, y in positions:
        disc, ring, dark = _disc_and_ring(data, opaque, float(x), float(y), r)
        cut = gap_at(clearance, x, y) < r + BAR_MARGIN_PX
        if cut or dark > max_opaque_fraction or not math.isfinite(disc):
            dropped["cut or covered"] += 1
            continue
        ratio = disc / ring if ring > 0 else math.inf
        score = float(response[min(int(y), data.shape[0] - 1), min(int(x), data.shape[1] - 1)])
        measured.append((float(x), float(y), score, disc, ratio))
    # Torn film: the disc hardly brighter than its ring. "Hardly" scales with the contrast the
    # square's holes in film have (smaller holes, or a coarser pixel, blur it): a fixed
    # TORN_RATIO at the contrast of R2/1 holes at 77 Å, proportionally less below it.
    in_film = [m[4] for m in measured if m[4] >= TORN_RATIO]
    typical_ratio = float(np.median(in_film)) if in_film else TORN_RATIO
    torn_below = min(TORN_RATIO, 1.0 + TORN_SHARE * (typical_ratio - 1.0))
    # Torn film comes in patches: a hole just under the line amid film holes (its lattice
    # neighbours' median above it) is shot noise on an intact hole; only a hole clearly without
    # carbon (under TORN_CLEAR of the typical contrast) is torn on its own.
    pitch = float(np.hypot(*lattice[1][:, 0])) if lattice is not None else 3.0 * r
    all_xy = np.array([(m[0], m[1]) for m in measured]).reshape(-1, 2)
    all_ratio = np.array([m[4] for m in measured])
    clearly_torn = 1.0 + TORN_CLEAR * (typical_ratio - 1.0)
    candidates = []
    for x, y, score, disc, ratio in measured:
        keep = ratio >= torn_below
        if not keep and ratio >= clearly_torn:
            gap = np.hypot(all_xy[:, 0] - x, all_xy[:, 1] - y)
            near = (gap > 0.5 * pitch) & (gap <= 1.5 * pitch)
            keep = near.sum() >= 3 and float(np.median(all_ratio[near])) >= torn_below
        # ... and a hole at a tear's edge has no film all round (torn_film.py).
        if keep and gap_at(to_torn, x, y) >= FILM_AROUND * r:
            candidates.append((x, y, score, disc, ratio))
    dropped["torn film"] = len(measured) - len(candidates)
    if not candidates:
        return HoleFinding([], dropped, r)
    common = float(np.median([c[4] for c in candidates]))
    xy = np.array([(c[0], c[1]) for c in candidates])
    discs = np.array([c[3] for c in candidates])
    ratios = np.array([c[4] for c in candidates])
    # Holes with ice look alike nearby: the disc of a typical hole around each candidate (holes
    # whose ratio is the common one), so vacuum and holes that lost their ice stand out even
    # where the ice changes across the square.
    confident = np.abs(ratios / common - 1.0) < 0.02
    reference = np.full(
        len(candidates), float(np.median(discs[confident] if confident.any() else discs))
    )
    for k, (x, y) in enumerate(xy):
        near = confident & (np.hypot(xy[:, 0] - x, xy[:, 1] - y) <= 5 * pitch)
        if near.sum() >= 5:
            reference[k] = float(np.median(discs[near]))
    centres = square.to_specimen(xy)
    holes = []
    for k, ((x, y, score, disc, ratio), centre) in enumerate(zip(candidates, centres, strict=True)):
        intact = ratio <= EMPTY_RATIO * common and disc <= EMPTY_RATIO * reference[k]
        ice = (
            mfp_nm * math.log(vacuum_counts / disc)
            if vacuum_counts is not None and intact and disc > 0
            else math.nan
        )
        holes.append(
            FoundHole(
                centre_um=(float(centre[0]), float(centre[1])),
                centre_px=(x, y),
                score=score,
                disc_counts=disc,
                ring_ratio=ratio,
                intact=intact,
                ice_nm=ice,
            )
        )
    return HoleFinding(holes, dropped, r)


@dataclass(frozen=True)
class HoleTarget:
    """A hole chosen for a tilt series and where to focus for it (on carbon, along the axis)."""

    centre_um: tuple[float, float]
    focus_um: tuple[float, float]
    ice_nm: float


def focus_point(
    centre_um: tuple[float, float],
    holes_um: NDArray[np.float64],
    hole_radius_um: float,
    *,
    axis_angle_deg: float = 0.0,
    distance_um: tuple[float, float] = (2.0, 5.0),
) -> tuple[float, float]:
    """A focus position on carbon along the tilt axis: of the points ``distance_um`` away on
    either side, the one farthest from every hole edge (Leginon focuses off the target, on the
    axis, so the defocus there is the target's at every tilt)."""
    a = math.radians(axis_angle_deg)
    direction = np.array([math.cos(a), math.sin(a)])
    steps = np.linspace(distance_um[0], distance_um[1], 13)
    points = np.concatenate([steps[:, None] * direction, -steps[:, None] * direction])
    points = points + np.asarray(centre_um)
    if len(holes_um) == 0:
        best = points[0]
    else:
        gap = np.min(
            np.hypot(*(points[:, None, :] - holes_um[None, :, :]).transpose(2, 0, 1)), axis=1
        )
        best = points[int(np.argmax(gap - hole_radius_um))]
    return float(best[0]), float(best[1])


def choose_targets(
    finding: HoleFinding,
    hole_diameter_um: float,
    *,
    count: int = 5,
    min_separation_um: float = 6.0,
    ice_range_nm: tuple[float, float] | None = None,
    axis_angle_deg: float = 0.0,
) -> list[HoleTarget]:
    """Up to ``count`` intact holes, best first, at least ``min_separation_um`` apart (so no
    beam pre-exposes another target), each with a focus point on carbon along the tilt axis.

    Holes are ranked by how surrounded they are by other intact holes (far from bars, tears
    and contamination), then by how close their ice lies to the middle of ``ice_range_nm``.
    """
    intact = finding.intact
    if ice_range_nm is not None:
        lo, hi = ice_range_nm
        intact = [h for h in intact if not math.isfinite(h.ice_nm) or lo <= h.ice_nm <= hi]
    if not intact:
        return []
    centres = np.array([h.centre_um for h in intact])
    every = np.array([h.centre_um for h in finding.holes])
    neighbours = np.sum(
        np.hypot(*(centres[:, None, :] - centres[None, :, :]).transpose(2, 0, 1)) < 8.0, axis=1
    )
    middle = (ice_range_nm[0] + ice_range_nm[1]) / 2 if ice_range_nm else None

    def key(k: int) -> tuple[float, float]:
        ice_gap = (
            abs(intact[k].ice_nm - middle)
            if middle is not None and math.isfinite(intact[k].ice_nm)
            else 0.0
        )
        return (-float(neighbours[k]), ice_gap)

    chosen: list[HoleTarget] = []
    for k in sorted(range(len(intact)), key=key):
        c = intact[k].centre_um
        if any(math.dist(c, t.centre_um) < min_separation_um for t in chosen):
            continue
        focus = focus_point(c, every, hole_diameter_um / 2, axis_angle_deg=axis_angle_deg)
        chosen.append(HoleTarget(centre_um=c, focus_um=focus, ice_nm=intact[k].ice_nm))
        if len(chosen) == count:
            break
    return chosen
