"""Where to measure the specimen geometry: suggested geo points and their safety.

Geo points are read with the Focus area at zero offset, so each reading exposes a disc of the
Focus beam around the point. A point must keep that disc off every target's beam (at the
selection tilt) and inside the image-shift reach.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

Point = tuple[float, float]


def pattern_geo_points(vec_a_um: Point, vec_b_um: Point, size: int) -> list[Point]:
    """PACEtomo's automatic geo points for a hole pattern (pacetomo.md §5.7).

    The four points (n − ½)(±A ± B), which lie on the film between the pattern's outer holes,
    plus ½(A + B) next to the centre when n > 1.
    """
    a = np.asarray(vec_a_um, np.float64)
    b = np.asarray(vec_b_um, np.float64)
    k = size - 0.5
    points = [k * (sa * a + sb * b) for sa in (1, -1) for sb in (1, -1)]
    if size > 1:
        points.append(0.5 * (a + b))
    return [(float(p[0]), float(p[1])) for p in points]


def unsafe_geo_points(
    geo_um: Sequence[Point],
    targets_um: Sequence[Point],
    *,
    focus_beam_radius_um: float,
    target_beam_radius_um: float,
) -> list[int]:
    """Indices of geo points whose Focus beam would touch a target's beam at 0°."""
    if not geo_um or not targets_um:
        return []
    g: NDArray[np.float64] = np.asarray(geo_um, np.float64).reshape(-1, 2)
    t: NDArray[np.float64] = np.asarray(targets_um, np.float64).reshape(-1, 2)
    dist = np.linalg.norm(g[:, None, :] - t[None, :, :], axis=-1)
    close = np.any(dist < focus_beam_radius_um + target_beam_radius_um, axis=1)
    return [int(i) for i in np.flatnonzero(close)]


def lamella_geo_points(half_width_um: float, half_length_um: float, *, n: int = 5) -> list[Point]:
    """A spread of ``n`` (5 or 9) points over a rectangle around target 1, corners inset by ⅓."""
    if n not in (5, 9):
        raise ValueError(f"n must be 5 or 9, not {n}")
    hx, hy = half_width_um * 2 / 3, half_length_um * 2 / 3
    corners = [(hx, hy), (-hx, hy), (-hx, -hy), (hx, -hy)]
    if n == 5:
        return [(0.0, 0.0), *corners]
    edges = [(hx, 0.0), (0.0, hy), (-hx, 0.0), (0.0, -hy)]
    return [(0.0, 0.0), *corners, *edges]
