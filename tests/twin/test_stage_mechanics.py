"""Stage mechanics of the twin: backlash, rigid rotation about the true axis, run-out, profiles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from twin_helpers import QUIET_STAGE, small_config

from tomopilot.imaging.ctf import CtfOptics
from tomopilot.imaging.estimate_defocus import estimate_defocus
from tomopilot.imaging.xcorr import align
from tomopilot.instrument import LowDoseArea
from tomopilot.instrument.twin import TwinMicroscope


def test_backlash_appears_only_on_direction_reversal() -> None:
    backlash_um = 0.1
    stage = {**QUIET_STAGE, "xy_backlash_um": backlash_um}
    scope = TwinMicroscope(small_config(21, size=512, stage=stage))
    scope.optics.set_focus_um(0.0)
    field = scope.camera.field(LowDoseArea.VIEW)
    step_um = 0.15
    moves = [step_um, step_um, -step_um, -step_um, step_um]
    expected_um = [step_um, step_um, -(step_um - backlash_um), -step_um, step_um - backlash_um]
    previous = scope.camera.acquire(LowDoseArea.VIEW)
    for move, actual in zip(moves, expected_um, strict=True):
        scope.stage.move_by(dx_um=move)
        image = scope.camera.acquire(LowDoseArea.VIEW)
        measured = align(previous.data, image.data, low_pass_px=1.5)
        # The specimen moves under the beam by −Δx, and the image content with it.
        want = field.lab_vector_to_pixels(-actual, 0.0)
        nominal = field.lab_vector_to_pixels(-move, 0.0)
        assert (measured.shift_x_px, measured.shift_y_px) == pytest.approx(want, abs=1.0)
        if move != actual:
            assert math.hypot(want[0] - nominal[0], want[1] - nominal[1]) > 25.0
        previous = image


def _rigid(lab0: np.ndarray, axis_um: float, tilt_deg: float) -> np.ndarray:
    t = math.radians(tilt_deg)
    y0, z0 = lab0[1] - axis_um, lab0[2]
    return np.array(
        [
            lab0[0],
            axis_um + y0 * math.cos(t) - z0 * math.sin(t),
            y0 * math.sin(t) + z0 * math.cos(t),
        ]
    )


@pytest.mark.parametrize("profile", ["autoloader", "side-entry"])
def test_points_rotate_rigidly_about_the_true_axis_plus_runout(profile: str) -> None:
    stage = {**QUIET_STAGE, "profile": profile}
    scope = TwinMicroscope(small_config(22, size=128, stage=stage))
    cfg = scope.config.stage
    point = np.array([1.3, -2.1, 0.0])
    point[2] = float(scope.specimen.surface_height_um(np.array(point[0]), np.array(point[1])))
    lab0 = scope.true_pose().to_lab(point)
    residuals = []
    for tilt in np.arange(3.0, 61.0, 3.0).tolist() + np.arange(-3.0, -61.0, -3.0).tolist():
        scope.stage.tilt_to(tilt, backlash_compensate=True)
        pose = scope.true_pose()
        axis = scope.true_tilt_axis_offset_um(pose.tilt_deg)
        residual = pose.to_lab(point) - _rigid(lab0, axis, pose.tilt_deg)
        assert residual == pytest.approx(np.array(scope.true_runout_um(pose.tilt_deg)), abs=1e-9)
        residuals.append(residual)
    peak = np.max(np.abs(residuals), axis=0)
    for value, amplitude in zip(
        peak, (cfg.runout_x_um, cfg.runout_y_um, cfg.runout_z_um), strict=True
    ):
        assert 0.2 * amplitude <= value <= amplitude * 1.0001


def test_without_runout_the_motion_is_exactly_rigid() -> None:
    stage = {**QUIET_STAGE, "runout_x_um": 0.0, "runout_y_um": 0.0, "runout_z_um": 0.0}
    scope = TwinMicroscope(small_config(23, size=128, stage=stage))
    point = np.array([-0.7, 3.4, 0.0])
    point[2] = float(scope.specimen.surface_height_um(np.array(point[0]), np.array(point[1])))
    lab0 = scope.true_pose().to_lab(point)
    for tilt in (12.0, 45.0, -30.0, -60.0):
        scope.stage.tilt_to(tilt, backlash_compensate=True)
        pose = scope.true_pose()
        predicted = _rigid(lab0, scope.true_tilt_axis_offset_um(pose.tilt_deg), pose.tilt_deg)
        assert pose.to_lab(point) == pytest.approx(predicted, abs=1e-9)


def test_the_height_change_shows_in_the_measured_defocus() -> None:
    scope = TwinMicroscope(small_config(24, size=1024, stage=QUIET_STAGE))
    scope.measurements.eucentricity(fine=True)
    scope.optics.set_focus_um(-3.0)
    optics = CtfOptics(voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.1)
    truths = []
    for tilt in (0.0, 30.0):
        scope.stage.tilt_to(tilt, backlash_compensate=True)
        image = scope.camera.acquire(LowDoseArea.RECORD)
        truth = scope.ground_truth.exposure(image.exposure_id).defocus_um
        fit = estimate_defocus(image.data, image.pixel_size_a, optics)
        assert fit.defocus_um == pytest.approx(truth, abs=0.1)
        truths.append(truth)
    assert abs(truths[1] - truths[0]) > 0.2  # the axis offset lifts the field at 30°


def _unpredicted_rms_um(profile: str, seed: int) -> float:
    scope = TwinMicroscope(small_config(seed, size=128, stage={"profile": profile}))
    point = np.array(
        [0.0, 0.0, float(scope.specimen.surface_height_um(np.array(0.0), np.array(0.0)))]
    )
    lab0 = scope.true_pose().to_lab(point)
    believed_axis = scope.stage.tilt_axis_offset_um
    errors = []
    for tilt in [3.0 * k * s for k in range(1, 21) for s in (1, -1)]:
        scope.stage.tilt_to(tilt, backlash_compensate=True)
        lab = scope.true_pose().to_lab(point)
        predicted = _rigid(lab0, believed_axis, tilt)
        errors.append(lab[:2] - predicted[:2])
    return float(np.sqrt(np.mean(np.square(errors))))


def test_side_entry_is_measurably_worse_than_autoloader() -> None:
    for seed in (31, 32, 33):
        autoloader = _unpredicted_rms_um("autoloader", seed)
        side_entry = _unpredicted_rms_um("side-entry", seed)
        assert side_entry > 1.5 * autoloader
