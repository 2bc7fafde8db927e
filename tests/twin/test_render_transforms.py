"""The twin's image rendering shortcuts give the numbers of the plain computation.

Pruned FFTs (blob spectra on the columns their kernel reaches, inverse transforms on the rows a
defocus plane covers), the padded bilinear splat and the separable defocus model are checked
against the direct formula on the same inputs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft as sfft
from hypothesis import given, settings
from hypothesis import strategies as st

from tomopilot.instrument.twin.defocus_planes import defocus_model, inverse_rows
from tomopilot.instrument.twin.phase_spectrum import (
    add_blob_spectrum,
    blob_kernel,
    kernel_columns,
    splat,
)


@pytest.mark.parametrize("sigma_a", [4.0, 15.5, 43.75])
def test_blob_spectrum_on_the_kernels_columns_equals_the_full_transform(sigma_a: float) -> None:
    shape, pixel_a = (192, 256), 2.0
    rng = np.random.default_rng(1)
    grid = rng.random(shape, dtype=np.float32)
    kernel = blob_kernel(shape, pixel_a, sigma_a, 3.0)
    full = sfft.rfft2(grid) * kernel
    n_columns = kernel_columns(shape[1], pixel_a, sigma_a)
    if sigma_a > 10:
        assert n_columns < shape[1] // 2 + 1  # the shortcut is taken
    pruned = np.zeros(full.shape, np.complex64)
    add_blob_spectrum(pruned, grid, kernel, n_columns)
    image_full = sfft.irfft2(full, s=shape)
    image_pruned = sfft.irfft2(pruned, s=shape)
    assert np.abs(image_pruned - image_full).max() <= 1e-5 * np.abs(image_full).max()


@pytest.mark.parametrize(("r0", "r1"), [(0, 96), (17, 60), (0, 40), (50, 96)])
def test_inverse_on_rows_equals_the_rows_of_the_full_inverse(r0: int, r1: int) -> None:
    shape = (96, 80)
    rng = np.random.default_rng(2)
    spectrum = sfft.rfft2(rng.standard_normal(shape)).astype(np.complex64)
    expected = sfft.irfft2(spectrum, s=shape)[r0:r1]
    rows = inverse_rows(spectrum.copy(), shape, r0, r1)
    assert rows.dtype == np.float32
    np.testing.assert_allclose(rows, expected, atol=1e-5 * np.abs(expected).max())


def _splat_reference(
    cols: np.ndarray, rows: np.ndarray, weights: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    """Point by point: each weight split bilinearly over the 4 pixel centres around it."""
    out = np.zeros(shape)
    for c, r, w in zip(cols - 0.5, rows - 0.5, weights, strict=True):
        x0, y0 = math.floor(c), math.floor(r)
        fx, fy = c - x0, r - y0
        corners = (
            (y0, x0, (1 - fx) * (1 - fy)),
            (y0, x0 + 1, fx * (1 - fy)),
            (y0 + 1, x0, (1 - fx) * fy),
            (y0 + 1, x0 + 1, fx * fy),
        )
        for y, x, f in corners:
            if 0 <= y < shape[0] and 0 <= x < shape[1]:
                out[y, x] += w * f
    return out


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60))
def test_splat_deposits_each_point_on_its_four_neighbours(seed: int, n: int) -> None:
    shape = (9, 13)
    rng = np.random.default_rng(seed)
    cols = rng.uniform(-3, shape[1] + 3, n)
    rows = rng.uniform(-3, shape[0] + 3, n)
    weights = rng.random(n).astype(np.float32)
    got = splat(cols, rows, weights, shape)
    np.testing.assert_allclose(got, _splat_reference(cols, rows, weights, shape), atol=1e-5)


def testdefocus_model_is_the_quadratic_depth_model() -> None:
    coeffs = np.array([0.3, 1e-4, -2e-4, 3e-8, -1e-8, 2e-8])
    shape, box = (512, 640), (100, 300, 40, 600)
    got = defocus_model(-2.5, coeffs, box, shape)
    u = np.arange(box[2], box[3]) + 0.5 - shape[1] / 2
    v = np.arange(box[0], box[1]) + 0.5 - shape[0] / 2
    uu, vv = np.meshgrid(u, v)
    a, bu, bv, cuu, cvv, cuv = coeffs
    expected = -2.5 + a + bu * uu + bv * vv + cuu * uu**2 + cvv * vv**2 + cuv * uu * vv
    np.testing.assert_allclose(got, expected, atol=2e-6)


def test_local_motion_field_on_a_grid_equals_the_pointwise_field() -> None:
    from tomopilot.instrument.twin.config import MovieConfig
    from tomopilot.instrument.twin.motion import make_motion

    motion = make_motion(
        MovieConfig(local_motion_a=4.0),
        np.random.default_rng(4),
        n_frames=6,
        frame_time_s=0.1,
        pixel_size_a=2.0,
        tilt_deg=30.0,
        axis_angle_on_camera_deg=85.0,
        drift_px_s=(0.1, -0.2),
        shape=(96, 128),
    )
    x = np.arange(140) - 6 + 0.5
    y = np.arange(108) - 6 + 0.5
    field_x, field_y = motion.local_field_on_grid(x, y)
    xx, yy = np.meshgrid(x, y)
    expected = motion.local_field(xx, yy)
    scale = np.abs(expected).max()
    assert scale > 0.5
    np.testing.assert_allclose(field_x, expected[..., 0], atol=1e-5 * scale)
    np.testing.assert_allclose(field_y, expected[..., 1], atol=1e-5 * scale)


def test_banded_warp_equals_one_interpolation_of_the_whole_frame() -> None:
    from scipy import ndimage

    from tomopilot.instrument.twin.camera import _warp

    rng = np.random.default_rng(6)
    image = rng.random((150, 70), dtype=np.float32)  # 150 rows: bands of 64, 64 and 22
    rows, cols = np.mgrid[0:150, 0:70].astype(np.float32)
    local_x = np.float32(2.5) * np.sin(rows / 20).astype(np.float32)
    local_y = np.float32(-1.5) * np.cos(cols / 15).astype(np.float32)
    amount = np.float32(0.7)
    got = _warp(image, (local_x, local_y), amount)
    coords = np.stack([rows - local_y * amount, cols - local_x * amount])
    expected = ndimage.map_coordinates(image, coords, order=1, mode="nearest")
    np.testing.assert_allclose(got, expected, atol=1e-6)
