"""Image formation on the twin against physics: attenuation, CTF, displacements, noise, movies."""

from __future__ import annotations

import math

import numpy as np
import pytest
from twin_helpers import QUIET_STAGE, small_config

from tomopilot.imaging.ctf import CtfOptics, ctf_zero_frequencies_a_inv
from tomopilot.imaging.estimate_defocus import estimate_defocus, radial_oscillation
from tomopilot.imaging.xcorr import align
from tomopilot.instrument import LowDoseArea
from tomopilot.instrument.twin import TwinMicroscope

EMPTY_SLAB = {
    "kind": "lamella",
    "thickness_nm": 200.0,
    "pretilt_deg": 0.0,
    "particles": {"density_per_um3": 0.0},
    "membranes": {"vesicles_per_um2": 0.0, "organelles_per_um2": 0.0},
    "contamination": {"per_um2": 0.0},
    "crowding": {"density_per_um3": 0.0},
    "ice_texture_rad2_a2_per_nm": 0.0,
}
STEADY_BEAM = {"feg_decay_per_h": 0.0}


@pytest.mark.parametrize("tilt_deg", [0.0, 20.0, 40.0, 60.0])
def test_mean_counts_follow_slab_attenuation(tilt_deg: float) -> None:
    config = small_config(
        11,
        size=256,
        specimen=EMPTY_SLAB,
        optics={"zlp_drift_ev_per_h": 0.0},
        housekeeping=STEADY_BEAM,
        stage=QUIET_STAGE,
    )
    scope = TwinMicroscope(config)
    scope.measurements.eucentricity(fine=True)  # so the field stays on the slab at 60°
    scope.stage.tilt_to(tilt_deg)
    image = scope.camera.acquire(LowDoseArea.RECORD)
    preset = scope.optics.preset(LowDoseArea.RECORD)
    electrons = preset.dose_rate_e_px_s * preset.exposure_s * preset.binning**2
    mfp = config.optics.ice_mfp_nm
    expected = math.exp(-200.0 / (mfp * math.cos(math.radians(tilt_deg))))
    measured = image.mean_counts / electrons
    assert measured == pytest.approx(expected, rel=0.05)


@pytest.fixture(scope="module")
def flat_image() -> tuple[np.ndarray, float]:
    """A 2048² Record of a flat, untilted slab at −3 µm, and its true defocus.

    The slab holds particles in amorphous ice (no protein crowd), whose texture carries the
    Thon rings out to high resolution.
    """
    config = small_config(
        12,
        size=2048,
        specimen={
            "kind": "lamella",
            "pretilt_deg": 0.0,
            "thickness_nm": 150.0,
            "crowding": {"density_per_um3": 0.0},
        },
        optics={"astigmatism_um": 0.0},
        presets={"record": {"dose_rate_e_px_s": 40.0}},
        stage=QUIET_STAGE,
    )
    scope = TwinMicroscope(config)
    scope.measurements.eucentricity(fine=True)
    scope.optics.set_focus_um(-3.0)
    image = scope.camera.acquire(LowDoseArea.RECORD)
    return image.data, scope.ground_truth.exposure(image.exposure_id).defocus_um


def _refined_minimum(k: np.ndarray, curve: np.ndarray, window: np.ndarray) -> float:
    index = np.flatnonzero(window)[np.argmin(curve[window])]
    y0, y1, y2 = curve[index - 1], curve[index], curve[index + 1]
    curvature = y0 - 2 * y1 + y2
    offset = 0.5 * (y0 - y2) / curvature if curvature > 0 else 0.0
    return float(k[index] + offset * (k[1] - k[0]))


def test_thon_ring_zeros_sit_where_the_ctf_formula_puts_them(
    flat_image: tuple[np.ndarray, float],
) -> None:
    data, true_defocus = flat_image
    optics = CtfOptics(voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.1)
    k, osc = radial_oscillation(data, 2.0, tile_px=512, k_min_a_inv=1 / 40.0, k_max_a_inv=1 / 8.0)
    zeros = ctf_zero_frequencies_a_inv(optics, true_defocus, n_zeros=12, k_max_a_inv=1 / 8.5)
    zeros = zeros[zeros > 1 / 38.0]
    assert len(zeros) >= 6
    smooth = np.convolve(osc, np.ones(3) / 3, mode="same")
    for k0 in zeros:
        k_min = _refined_minimum(k, smooth, (k > k0 * 0.94) & (k < k0 * 1.06))
        assert k_min == pytest.approx(k0, rel=0.02)


def test_an_independent_defocus_estimate_recovers_the_truth(
    flat_image: tuple[np.ndarray, float],
) -> None:
    data, true_defocus = flat_image
    assert true_defocus == pytest.approx(-3.0, abs=0.25)  # fine eucentricity leaves ~0.1 µm
    optics = CtfOptics(voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.1)
    fit = estimate_defocus(data, 2.0, optics)
    assert fit.defocus_um == pytest.approx(true_defocus, abs=0.1)
    assert fit.defocus_um == pytest.approx(-3.0, abs=0.3)


def test_image_shift_moves_the_image_by_the_true_calibrated_amount() -> None:
    config = small_config(
        13,
        size=1024,
        optics={"is_scale_error": 0.05, "is_rotation_error_deg": 3.0},
        presets={"preview": {"dose_rate_e_px_s": 120.0}},
        stage=QUIET_STAGE,
    )
    scope = TwinMicroscope(config)
    scope.measurements.eucentricity(fine=True)
    scope.optics.set_focus_um(-2.0)
    first = scope.camera.acquire(LowDoseArea.PREVIEW)
    requested = (0.025, -0.015)
    scope.optics.set_image_shift_um(*requested)
    second = scope.camera.acquire(LowDoseArea.PREVIEW)
    matrix = scope.camera.specimen_to_camera_matrix(LowDoseArea.PREVIEW)
    rot = math.radians(3.0)
    true_um = 1.05 * np.array(
        [
            math.cos(rot) * requested[0] - math.sin(rot) * requested[1],
            math.sin(rot) * requested[0] + math.cos(rot) * requested[1],
        ]
    )
    # The field moves by +d over the specimen, so the content moves by −d on the camera.
    expected = matrix @ -true_um
    nominal = matrix @ -np.array(requested)
    measured = align(first.data, second.data, low_pass_px=2.0)
    assert measured.shift_x_px == pytest.approx(expected[0], abs=0.5)
    assert measured.shift_y_px == pytest.approx(expected[1], abs=0.5)
    assert math.hypot(expected[0] - nominal[0], expected[1] - nominal[1]) > 2.0


def test_a_stage_move_moves_the_image_where_the_ground_truth_says() -> None:
    scope = TwinMicroscope(
        small_config(14, size=1024, presets={"preview": {"dose_rate_e_px_s": 120.0}})
    )
    scope.measurements.eucentricity(fine=True)
    scope.optics.set_focus_um(-2.0)
    first = scope.camera.acquire(LowDoseArea.PREVIEW)
    scope.stage.move_by(dx_um=0.02, dy_um=0.012)
    second = scope.camera.acquire(LowDoseArea.PREVIEW)
    truth = scope.ground_truth
    point = truth.exposure(first.exposure_id).specimen_centre_um
    a = np.array(truth.exposure(first.exposure_id).offset_nm(point)) * 1e-3
    b = np.array(truth.exposure(second.exposure_id).offset_nm(point)) * 1e-3
    field = scope.camera.field(LowDoseArea.PREVIEW)
    expected = field.lab_vector_to_pixels(*(b - a))
    measured = align(first.data, second.data, low_pass_px=2.0)
    assert measured.shift_x_px == pytest.approx(expected[0], abs=0.5)
    assert measured.shift_y_px == pytest.approx(expected[1], abs=0.5)
    assert math.hypot(*expected) > 10.0


def test_counts_are_poisson() -> None:
    config = small_config(
        15,
        size=256,
        specimen=EMPTY_SLAB,
        camera={"gain_nonuniformity": 0.0, "hot_pixel_fraction": 0.0, "dead_columns": 0},
    )
    scope = TwinMicroscope(config)
    data = scope.camera.acquire(LowDoseArea.RECORD).data
    assert data.var() / data.mean() == pytest.approx(1.0, abs=0.05)
    assert np.all(data == np.round(data))


def test_movie_frames_carry_the_true_motion() -> None:
    config = small_config(
        16,
        size=256,
        presets={"record": {"dose_rate_e_px_s": 120.0}},
        movie={"global_motion_a": 12.0, "local_motion_a": 0.0},
    )
    scope = TwinMicroscope(config)
    scope.optics.set_focus_um(-3.0)
    movie = scope.camera.acquire_movie(LowDoseArea.RECORD, n_frames=6)
    truth = scope.ground_truth.exposure(movie.image.exposure_id).frame_shifts_px
    assert movie.frames.shape == (6, 256, 256)
    assert movie.frame_dose_e_a2 == pytest.approx(120.0 * 1.0 / 4.0 / 6)
    for i in range(1, 6):
        measured = align(movie.frames[0], movie.frames[i], low_pass_px=2.0)
        assert measured.shift_x_px == pytest.approx(truth[i, 0] - truth[0, 0], abs=0.25)
        assert measured.shift_y_px == pytest.approx(truth[i, 1] - truth[0, 1], abs=0.25)
    total_a = np.hypot(*(truth[-1] - truth[0])) * 2.0
    assert 2.0 < total_a < 40.0
