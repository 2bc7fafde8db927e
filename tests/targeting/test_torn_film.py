"""Torn-away film in a square image: where it is, and how far each hole is from it."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from tomopilot.targeting.torn_film import distance_to_torn_px, gap_at, torn_area

R_PX = 9.0  # hole radius
PITCH_PX = 27.0  # R2/1-like: pitch 3 radii
CARBON, ICE, VACUUM = 60.0, 66.0, 100.0  # counts: film, ice in a hole, nothing


def _square(
    angle_rad: float, offset_px: float, seed: int, empty: tuple[float, float] | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """A 256² film of holes torn away beyond the line n·p = offset (n at ``angle_rad`` from x,
    p from the image centre), with Poisson noise; the holes' centres and their true distance
    (px) from the tear (positive: on the film's side). ``empty`` puts a hole without ice there.
    """
    n = 256
    yy, xx = np.mgrid[0:n, 0:n] + 0.5
    normal = np.array([math.cos(angle_rad), math.sin(angle_rad)])
    beyond = (xx - n / 2) * normal[0] + (yy - n / 2) * normal[1] > offset_px
    image = np.full((n, n), CARBON)
    k = np.arange(-6, 7) * PITCH_PX + n / 2 + 3.3
    centres = np.array(
        [(x, y) for x in k for y in k if R_PX < x < n - R_PX and R_PX < y < n - R_PX]
    )
    for x, y in centres:
        disc = np.hypot(xx - x, yy - y) <= R_PX
        image[disc] = VACUUM if empty is not None and math.dist((x, y), empty) < 1 else ICE
    image[beyond] = VACUUM
    noisy = np.random.default_rng(seed).poisson(image).astype(np.float64)
    tear = offset_px - ((centres[:, 0] - n / 2) * normal[0] + (centres[:, 1] - n / 2) * normal[1])
    return noisy, centres, tear


@settings(max_examples=8, deadline=None)
@given(
    angle=st.floats(0, 2 * math.pi),
    offset=st.floats(-60, 60),
    seed=st.integers(0, 2**16),
)
def test_the_distance_from_a_hole_to_torn_film_is_the_true_one(
    angle: float, offset: float, seed: int
) -> None:
    image, centres, tear = _square(angle, offset, seed)
    torn = torn_area(image, np.zeros(image.shape, bool), R_PX, CARBON)
    distance = distance_to_torn_px(torn)
    # Holes on the film's side, one to three radii from the tear, whose nearest point of it
    # lies inside the image (beyond its border the tear is not seen).
    n = image.shape[0]
    foot = centres + tear[:, None] * np.array([math.cos(angle), math.sin(angle)])
    seen = np.all((foot > 2) & (foot < n - 2), axis=1)
    near = (tear > R_PX) & (tear < 3 * R_PX) & seen
    measured = np.array([gap_at(distance, x, y) for x, y in centres[near]])
    assert np.all(np.abs(measured - tear[near]) < 0.15 * R_PX), (measured, tear[near])
    # Every pixel well beyond the tear is torn; none well inside the film is.
    yy, xx = np.mgrid[0:n, 0:n] + 0.5
    side = offset - ((xx - n / 2) * math.cos(angle) + (yy - n / 2) * math.sin(angle))
    assert torn[side < -2].mean() > 0.99
    assert not torn[side > 2].any()


def test_holes_without_ice_and_good_film_are_no_torn_film() -> None:
    """An empty hole reads the vacuum level, but no disc wider than a hole fits in it."""
    centre = 128.0 + 3.3
    image, _, _ = _square(0.0, 1e6, 5, empty=(centre, centre))  # no tear at all
    torn = torn_area(image, np.zeros(image.shape, bool), R_PX, CARBON)
    assert not torn.any()
    assert math.isinf(gap_at(distance_to_torn_px(torn), centre, centre))
