"""Beam footprints on a tilted specimen: ellipses, their overlap and their outlines.

A round beam of radius R that meets the specimen tilted by θ about the tilt axis (x) covers an
ellipse on the specimen with semi-axes R along x and R / cos θ across the axis (y). Two
footprints of equal θ overlap when the distance between their centres, with its y component
squeezed by cos θ, is below 2R (pacetomo.md §6, SPACEtomo's pruning rule).

Examples
--------
>>> round(scaled_distance_um((0.0, 0.0), (0.0, 2.0), max_tilt_deg=60.0), 6)
1.0
>>> footprints_overlap((0.0, 0.0), (0.0, 2.0), beam_radius_um=0.75, max_tilt_deg=60.0)
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

Point = tuple[float, float]


def scaled_distance_um(a: Point, b: Point, *, max_tilt_deg: float) -> float:
    """Distance between two specimen points with the y component multiplied by cos θ."""
    cos_t = math.cos(math.radians(max_tilt_deg))
    return math.hypot(b[0] - a[0], (b[1] - a[1]) * cos_t)


def footprints_overlap(
    a: Point, b: Point, *, beam_radius_um: float, max_tilt_deg: float, gap_um: float = 0.0
) -> bool:
    """Whether the beam footprints centred on ``a`` and ``b`` overlap at ``max_tilt_deg``.

    ``gap_um`` asks for a margin: footprints closer than it also count as overlapping.
    Footprints that touch exactly (within 1 pm) do not overlap.
    """
    limit = 2.0 * beam_radius_um + gap_um
    return scaled_distance_um(a, b, max_tilt_deg=max_tilt_deg) < limit - 1e-6


def overlapping_pairs(
    points_um: Sequence[Point] | NDArray[np.floating],
    *,
    beam_radius_um: float,
    max_tilt_deg: float,
    gap_um: float = 0.0,
) -> list[tuple[int, int]]:
    """Index pairs (i < j) of points whose footprints overlap at ``max_tilt_deg``."""
    pts = np.asarray(points_um, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 2:
        return []
    scaled = pts * np.array([1.0, math.cos(math.radians(max_tilt_deg))])
    diff = scaled[:, None, :] - scaled[None, :, :]
    dist = np.sqrt(np.sum(diff**2, axis=-1))
    limit = 2.0 * beam_radius_um + gap_um - 1e-6
    rows, cols = np.nonzero(np.triu(dist < limit, k=1))
    return [(int(i), int(j)) for i, j in zip(rows, cols, strict=True)]


def ellipse_outline_um(
    centre_um: Point, *, beam_radius_um: float, max_tilt_deg: float, n_vertices: int = 32
) -> NDArray[np.float64]:
    """Outline (n, 2) of a footprint with vertices equally spaced in arc length (closed: no).

    Semi-axes are R along x (the tilt axis) and R / cos θ along y, as PACEtomo draws its beam
    polygons in the Navigator.
    """
    a = beam_radius_um
    b = beam_radius_um / math.cos(math.radians(max_tilt_deg))
    t = np.linspace(0.0, 2.0 * math.pi, 4097)
    x, y = a * np.cos(t), b * np.sin(t)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
    wanted = np.linspace(0.0, arc[-1], n_vertices + 1)[:-1]
    tv = np.interp(wanted, arc, t)
    return np.stack([centre_um[0] + a * np.cos(tv), centre_um[1] + b * np.sin(tv)], axis=1)


def ellipse_samples_um(
    centre_um: Point, *, beam_radius_um: float, max_tilt_deg: float, n_rings: int = 6
) -> NDArray[np.float64]:
    """Points filling a footprint (centre, rings and rim), for testing what it covers."""
    b_scale = 1.0 / math.cos(math.radians(max_tilt_deg))
    out = [np.array([[0.0, 0.0]])]
    for ring in range(1, n_rings + 1):
        r = beam_radius_um * ring / n_rings
        n = 8 * ring
        t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
        out.append(np.stack([r * np.cos(t), r * b_scale * np.sin(t)], axis=1))
    return np.concatenate(out) + np.asarray(centre_um, dtype=np.float64)


def points_in_polygon(
    points_um: NDArray[np.floating], polygon_um: NDArray[np.floating]
) -> NDArray[np.bool_]:
    """Even-odd test of points (n, 2) against a polygon (m, 2); a repeated last vertex is fine."""
    pts = np.asarray(points_um, dtype=np.float64).reshape(-1, 2)
    poly = np.asarray(polygon_um, dtype=np.float64).reshape(-1, 2)
    x, y = pts[:, 0][:, None], pts[:, 1][:, None]
    x0, y0 = poly[:, 0][None, :], poly[:, 1][None, :]
    x1, y1 = np.roll(poly[:, 0], -1)[None, :], np.roll(poly[:, 1], -1)[None, :]
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    hits = crosses & (x < x_at)
    return np.asarray(np.sum(hits, axis=1) % 2 == 1)
