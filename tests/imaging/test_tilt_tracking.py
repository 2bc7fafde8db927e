"""Leginon's tracking image processing (leginon.md §2): binning, untilt, phase correlation, peak."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from tomopilot.imaging.tilt_tracking import (
    edge_window,
    phase_correlation,
    stretch_matrix,
    subpixel_peak,
    tracking_binning,
    tracking_shift,
)


@given(st.integers(1, 8192))
def test_binning_keeps_at_most_512_and_divides_or_crops(side: int) -> None:
    b, cropped = tracking_binning(side)
    assert cropped % b == 0 and cropped <= side
    assert cropped // b <= 512
    if cropped == side and side >= 512:
        assert cropped // b >= 256


def test_binning_examples_of_the_reference() -> None:
    assert tracking_binning(4096) == (8, 4096)
    assert tracking_binning(2048) == (4, 2048)
    assert tracking_binning(3710) == (10, 3710)
    with pytest.raises(ValueError):
        tracking_binning(0)


def test_subpixel_peak_has_no_half_pixel_bias() -> None:
    """The Python-3 port's peak finder returned (99.79, 50.24) for a true (100.3, 50.7)."""
    yy, xx = np.mgrid[0:256, 0:256]
    peak = np.exp(-((yy - 100.3) ** 2 + (xx - 50.7) ** 2) / (2 * 2.0**2))
    row, col, _ = subpixel_peak(peak)
    assert row == pytest.approx(100.3, abs=0.05) and col == pytest.approx(50.7, abs=0.05)


def test_window_and_zero_peak() -> None:
    w = edge_window(512)
    assert w[0, 0] == 0.0 and w[256, 256] == 1.0 and w[256, 16] == 1.0 and 0 < w[256, 8] < 1
    # Identical fixed-pattern noise at zero shift does not make the zero peak win.
    rng = np.random.default_rng(2)
    pattern = rng.normal(size=(256, 256))
    scene = ndimage.gaussian_filter(rng.normal(size=(300, 300)), 2.0)
    a, b = scene[:256, :256] + pattern, scene[5:261, 9:265] + pattern
    corr = phase_correlation(a.astype(np.float32), b.astype(np.float32))
    row, col, _ = subpixel_peak(corr)
    assert (round(row) - 256, round(col) - 256) == (-5, -9)


def _tilted_view(
    scene: np.ndarray, tilt_deg: float, axis_deg: float, shift_px: tuple[float, float]
) -> np.ndarray:
    """The scene foreshortened by cos θ across an axis at ``axis_deg`` and shifted (col, row)."""
    axis = (math.cos(math.radians(axis_deg)), math.sin(math.radians(axis_deg)))
    squeeze = np.linalg.inv(stretch_matrix(tilt_deg, axis)) if abs(tilt_deg) > 1 else np.eye(2)
    inverse = np.linalg.inv(squeeze)[::-1, ::-1]
    centre = (np.array(scene.shape) - 1) / 2.0
    offset = centre - inverse @ centre - np.array(shift_px)[::-1] @ inverse.T
    return ndimage.affine_transform(scene, inverse, offset=offset, order=1, mode="reflect")


@settings(max_examples=10, deadline=None)
@given(
    tilt=st.floats(-60.0, 60.0),
    step=st.sampled_from([1.0, 2.0, 3.0]),
    axis=st.floats(-90.0, 90.0),
    dx=st.floats(-20.0, 20.0).filter(lambda v: abs(v) > 0.3),
    dy=st.floats(-20.0, 20.0),
)
def test_tracking_shift_between_tilts(
    tilt: float, step: float, axis: float, dx: float, dy: float
) -> None:
    """Two noisy views of a textured specimen one tilt step apart, the second shifted by
    (dx, dy) camera px: the shift comes back within 0.6 px."""
    rng = np.random.default_rng(7)
    scene = ndimage.gaussian_filter(rng.normal(size=(512, 512)), 1.5)
    before = _tilted_view(scene, tilt, axis, (0.0, 0.0))
    after = _tilted_view(scene, tilt + step, axis, (dx, dy))
    noise = 0.3 * scene.std()
    before = before + rng.normal(0, noise, before.shape)
    after = after + rng.normal(0, noise, after.shape)
    axis_px = (math.cos(math.radians(axis)), math.sin(math.radians(axis)))
    result = tracking_shift(before, after, tilt, tilt + step, axis_px)
    assert result.binning == 1
    assert result.shift_x_px == pytest.approx(dx, abs=0.6)
    assert result.shift_y_px == pytest.approx(dy, abs=0.6)
    assert result.significance > 10


def test_different_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="differ"):
        tracking_shift(np.zeros((512, 512)), np.zeros((1024, 1024)), 0.0, 1.0, (1.0, 0.0))
