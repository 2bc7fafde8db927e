"""Beam footprints, spiral order and polygon fill (hypothesis)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tomopilot.geometry import ellipse_outline_um, footprints_overlap, overlapping_pairs
from tomopilot.geometry.footprints import points_in_polygon
from tomopilot.geometry.geo_points import pattern_geo_points, unsafe_geo_points
from tomopilot.targeting import fill_polygon, spiral_indices
from tomopilot.targeting.polygon_fill import fill_vectors_um


def test_spiral_of_size_one_is_pacetomos() -> None:
    assert spiral_indices(1) == [
        (0, 0),
        (1, 0),
        (1, 1),
        (0, 1),
        (-1, 1),
        (-1, 0),
        (-1, -1),
        (0, -1),
        (1, -1),
    ]


@given(st.integers(0, 8))
def test_spiral_covers_the_square_once_in_unit_steps(size: int) -> None:
    order = spiral_indices(size)
    assert len(order) == (2 * size + 1) ** 2 == len(set(order))
    assert order[0] == (0, 0)
    assert all(max(abs(i), abs(j)) <= size for i, j in order)
    steps = np.abs(np.diff(np.array(order), axis=0)).sum(axis=1)
    assert np.all(steps == 1)
    rings = [max(abs(i), abs(j)) for i, j in order]
    assert rings == sorted(rings)  # each ring is finished before the next starts


@given(st.floats(0.2, 5.0), st.floats(0.0, 75.0))
def test_ellipse_outline_is_equally_spaced(radius: float, tilt: float) -> None:
    outline = ellipse_outline_um((1.0, -2.0), beam_radius_um=radius, max_tilt_deg=tilt)
    assert outline.shape == (32, 2)
    a, b = radius, radius / math.cos(math.radians(tilt))
    t = np.unwrap(np.arctan2((outline[:, 1] + 2.0) / b, (outline[:, 0] - 1.0) / a))
    t = np.append(t, t[0] + 2 * math.pi)
    arcs = []
    for t0, t1 in itertools.pairwise(t):
        u = np.linspace(t0, t1, 201)
        speed = np.hypot(a * np.sin(u), b * np.cos(u))
        arcs.append(float(np.sum((speed[1:] + speed[:-1]) / 2 * np.diff(u))))
    assert max(arcs) / min(arcs) < 1.001
    assert outline[:, 0].max() - 1.0 == pytest.approx(radius, rel=1e-3)
    assert outline[:, 1].max() + 2.0 == pytest.approx(
        radius / math.cos(math.radians(tilt)), rel=1e-2
    )


@st.composite
def convex_polygons(draw: st.DrawFn) -> np.ndarray:
    n = draw(st.integers(3, 9))
    angles = np.sort(
        np.array(draw(st.lists(st.floats(0, 2 * math.pi), min_size=n, max_size=n, unique=True)))
    )
    rx, ry = draw(st.floats(2, 25)), draw(st.floats(2, 25))
    cx, cy = draw(st.floats(-500, 500)), draw(st.floats(-500, 500))
    return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1)


@settings(max_examples=60, deadline=None)
@given(convex_polygons(), st.floats(0.4, 3.0), st.floats(0.0, 70.0), st.floats(-80.0, 80.0))
def test_polygon_fill_no_overlap_and_inside(
    polygon: np.ndarray, beam_diameter: float, max_tilt: float, pattern_rot: float
) -> None:
    try:
        fill = fill_polygon(
            polygon,
            beam_diameter_um=beam_diameter,
            max_tilt_deg=max_tilt,
            pattern_rot_deg=pattern_rot,
        )
    except ValueError:
        return  # a polygon too thin for any pattern point
    ss = fill.targets.ss_array_um()
    stage = ss + np.array(fill.stage_origin_um)
    assert points_in_polygon(stage, polygon).all()
    assert ss[0].tolist() == [0.0, 0.0]
    assert overlapping_pairs(ss, beam_radius_um=beam_diameter / 2, max_tilt_deg=max_tilt) == []
    # neighbours along A just touch: the fill is as dense as the rule allows
    a, _ = fill_vectors_um(beam_diameter, max_tilt, pattern_rot)
    cos_t = math.cos(math.radians(max_tilt))
    assert math.hypot(a[0], a[1] * cos_t) == pytest.approx(beam_diameter)


def test_overlap_rule() -> None:
    assert footprints_overlap((0, 0), (0, 2.9), beam_radius_um=0.75, max_tilt_deg=60)
    assert not footprints_overlap((0, 0), (0, 3.0), beam_radius_um=0.75, max_tilt_deg=60)
    assert not footprints_overlap((0, 0), (1.5, 0), beam_radius_um=0.75, max_tilt_deg=60)
    assert footprints_overlap((0, 0), (1.5, 0), beam_radius_um=0.75, max_tilt_deg=60, gap_um=0.1)


def test_pattern_geo_points_avoid_targets() -> None:
    a, b = (2.5, 0.3), (-0.3, 2.5)
    points = pattern_geo_points(a, b, 2)
    assert len(points) == 5
    assert points[0] == pytest.approx((1.5 * (a[0] + b[0]), 1.5 * (a[1] + b[1])))
    holes = [(i * a[0] + j * b[0], i * a[1] + j * b[1]) for i in range(-2, 3) for j in range(-2, 3)]
    assert (
        unsafe_geo_points(points, holes, focus_beam_radius_um=0.3, target_beam_radius_um=0.6) == []
    )
    assert unsafe_geo_points(
        [(0.2, 0.0)], holes, focus_beam_radius_um=0.3, target_beam_radius_um=0.6
    ) == [0]
