"""The twin's time levers: a camera that returns early, image-shift settling in its start-up."""

from __future__ import annotations

import math

import numpy as np
import pytest
from twin_helpers import small_config

from tomopilot.instrument.twin import TwinMicroscope
from tomopilot.instrument.twin.camera import FRAME_SAVE_S
from tomopilot.instrument.twin.optics import image_shift_delay_s
from tomopilot.instrument.types import LowDoseArea


def _scope(**camera: float) -> TwinMicroscope:
    return TwinMicroscope(small_config(camera={"render": False, **camera}))


def _timed(scope: TwinMicroscope, action) -> float:  # type: ignore[no-untyped-def]
    start = scope.clock.now_s()
    action()
    return scope.clock.now_s() - start


def test_early_return_hands_back_the_sum_of_a_shot_that_saves_frames() -> None:
    """SerialEM returns early only from a shot that saves (or aligns) dose-fractionation
    frames; the next such shot waits until the frames are written, a single shot does not."""
    scope = _scope()
    cam = scope.config.camera
    exposure = scope.optics.preset(LowDoseArea.RECORD).exposure_s
    n = 200  # many frames, so the writing outlasts a tilt and a single shot
    writing = FRAME_SAVE_S * n

    def movie() -> None:
        scope.camera.acquire_movie(LowDoseArea.RECORD, n_frames=n)

    plain = _timed(scope, movie)
    assert plain == pytest.approx(cam.pre_exposure_s + exposure + cam.readout_s + writing)
    scope.camera.set_early_return(True)
    # Shots without frames get nothing from it: they read out in full.
    single = _timed(scope, lambda: scope.camera.acquire(LowDoseArea.RECORD))
    assert single == pytest.approx(cam.pre_exposure_s + exposure + cam.readout_s)
    first = _timed(scope, movie)
    assert first == pytest.approx(cam.pre_exposure_s + exposure + cam.sum_return_s)
    # A tilt does not wait for the camera; it overlaps the read-out and writing left over.
    tilt = _timed(scope, lambda: scope.stage.tilt_to(3.0))
    left = cam.readout_s + writing - cam.sum_return_s - tilt
    assert left > 0
    # A single shot does not wait for the frames being written either ...
    preview = scope.optics.preset(LowDoseArea.PREVIEW).exposure_s
    shot = _timed(scope, lambda: scope.camera.acquire(LowDoseArea.PREVIEW))
    assert shot == pytest.approx(cam.pre_exposure_s + preview + cam.readout_s)
    left -= shot
    assert left > 0
    # ... the next shot that saves frames does.
    second = _timed(scope, movie)
    assert second == pytest.approx(left + cam.pre_exposure_s + exposure + cam.sum_return_s)
    assert scope.ground_truth.time_by_activity_s["camera_busy"] == pytest.approx(left)
    # Back to plain: the whole read-out and writing block again.
    scope.camera.set_early_return(False)
    scope.clock.sleep(5.0)
    assert _timed(scope, movie) == pytest.approx(plain)


def test_image_shift_delay_follows_serialem() -> None:
    """ComputeISDelay: the larger axis in Thermo's table, plus 0.1 s per halving of a Record
    pixel below 1 nm, scaled; nothing for no move."""
    optics = small_config().optics
    assert image_shift_delay_s((0.0, 0.0), 0.2, optics) == 0.0
    assert image_shift_delay_s((2.0, 0.0), 1.6, optics) == pytest.approx(0.5)
    # The larger of the two axes counts, not the length of the move: 0.2 µm each way -> 0.2 µm.
    assert image_shift_delay_s((0.2, -0.2), 1.6, optics) == pytest.approx(0.2)
    assert image_shift_delay_s((0.05, 0.0), 1.6, optics) == 0.0
    # A 2 Å Record pixel is 2.32 halvings below 1 nm.
    assert image_shift_delay_s((2.0, 0.0), 0.2, optics) == pytest.approx(0.5 + 0.1 * 2.321928)
    assert image_shift_delay_s((0.05, 0.0), 0.25, optics) == pytest.approx(0.2)
    jeol = optics.model_copy(update={"is_settle_s": 0.1})  # ISdelayScaleFactor 0.2
    assert image_shift_delay_s((2.0, 0.0), 0.2, jeol) == pytest.approx(0.2 * (0.5 + 0.232193))


def test_image_shift_settling_overlaps_the_camera_start_up() -> None:
    # A 1.6 nm Record pixel (no magnification term): a move of >= 0.5 um needs 0.5 s, and the
    # beam comes on no earlier than 0.25 s after that (the start-up SerialEM takes as built in).
    scope = TwinMicroscope(
        small_config(camera={"render": False}, presets={"record": {"binning": 8}})
    )
    cam = scope.config.camera
    exposure = scope.optics.preset(LowDoseArea.RECORD).exposure_s
    settle = scope.config.optics.is_settle_s
    built_in = scope.config.optics.is_settle_startup_s
    assert cam.pre_exposure_s >= built_in
    blocking = _timed(scope, lambda: scope.optics.set_image_shift_um(2.0, 0.0))
    assert blocking == pytest.approx(settle)
    # Sleeping the delay first, the start-up covers the built-in part.
    shot = _timed(scope, lambda: scope.camera.acquire(LowDoseArea.RECORD))
    assert shot == pytest.approx(cam.pre_exposure_s + exposure + cam.readout_s)
    scope.optics.set_settling_during_startup(True)
    assert _timed(scope, lambda: scope.optics.set_image_shift_um(0.0, 0.0)) == 0.0
    start = scope.clock.now_s()
    shot = _timed(scope, lambda: scope.camera.acquire(LowDoseArea.RECORD))
    start_up = max(cam.pre_exposure_s, settle + built_in)
    assert shot == pytest.approx(start_up + exposure + cam.readout_s)
    assert scope.ground_truth.exposures[-1].time_s == pytest.approx(start + settle + built_in)
    # A short shift settles at once (Thermo's table: 0.1 µm → 0 s), built-in part and all.
    scope.optics.set_image_shift_um(0.05, 0.0)
    shot = _timed(scope, lambda: scope.camera.acquire(LowDoseArea.RECORD))
    assert shot == pytest.approx(cam.pre_exposure_s + exposure + cam.readout_s)
    # Settling longer than the start-up is waited out before the exposure, and booked as such.
    slow = TwinMicroscope(
        small_config(
            camera={"render": False},
            optics={"is_settle_s": 2.0},
            presets={"record": {"binning": 8}},
        )
    )
    slow.optics.set_settling_during_startup(True)
    slow.optics.set_image_shift_um(3.0, 0.0)
    shot = _timed(slow, lambda: slow.camera.acquire(LowDoseArea.RECORD))
    assert shot == pytest.approx(2.0 + built_in + exposure + cam.readout_s)
    exposure_truth = slow.ground_truth.exposures[-1]
    assert exposure_truth.time_s == pytest.approx(2.0 + built_in)  # the beam came on once settled
    booked = slow.ground_truth.time_by_activity_s["image_shift_settle"]
    assert booked == pytest.approx(2.0 + built_in - cam.pre_exposure_s)


def _lag_nm(move_um: float, start_s: float, end_s: float, settled_s: float, tau: float) -> float:
    """The documented transient (image_shift_settling): a lag of 0.5 % of the move decaying
    with τ, gone at SerialEM's criterion; its mean over [start, end] in nm."""
    end = min(end_s, settled_s)
    floor = math.exp(-settled_s / tau)
    integral = tau * (math.exp(-start_s / tau) - math.exp(-end / tau)) - floor * (end - start_s)
    return 0.005 * move_um * 1e3 * integral / (end_s - start_s)


def test_a_beam_on_before_the_image_shift_settled_sees_the_rest_of_the_settling() -> None:
    """No time-out (a script's SetImageShift without #D): the Record's beam comes on after the
    camera's start-up alone, 0.4 s after a 5 µm jump, while SerialEM's criterion (the table's
    delay + 0.25 s built-in start-up) is not met: the image is short of the shift by the
    mean lag and smeared by the rest of the settling. With one delay's time-out (#D 1) the
    beam waits for the criterion and sees none of it."""
    cfg = small_config(camera={"render": False})
    tau, cam = cfg.optics.is_settle_tau_s, cfg.camera
    record = cfg.presets.get(LowDoseArea.RECORD)
    pixel_nm = record.unbinned_pixel_size_a * record.binning / 10.0
    settle = image_shift_delay_s((5.0, 0.0), pixel_nm, cfg.optics) + 0.25  # + StartupForISDelays
    seen = {}
    for factor in (0.0, 1.0):
        scope = TwinMicroscope(cfg)
        shift_s = scope.clock.now_s()
        scope.optics.set_image_shift_units(5.0, 0.0, timeout_factor=factor)
        image = scope.camera.acquire(LowDoseArea.RECORD)
        truth = scope.ground_truth.exposure(image.exposure_id)
        seen[factor] = (truth, image.time_s - shift_s)
    (unsettled, start), (settled, waited) = seen[0.0], seen[1.0]
    assert start == pytest.approx(cam.pre_exposure_s)
    assert waited == pytest.approx(settle)
    assert settle > start
    assert settled.is_blur_nm == 0.0 and settled.is_lag_um == (0.0, 0.0)
    true_move = 5.0 * (1 + cfg.optics.is_scale_error)  # the twin's IS scale error, x mostly
    exposure = scope.optics.preset(LowDoseArea.RECORD).exposure_s
    lag_nm = _lag_nm(true_move, start, start + exposure, settle, tau)
    assert unsettled.is_lag_um[0] * 1e3 == pytest.approx(lag_nm, rel=0.02)
    assert lag_nm > 0.3
    # the blur: the whole lag left at beam-on (the criterion is met during the exposure)
    blur = 0.005 * true_move * 1e3 * (math.exp(-start / tau) - math.exp(-settle / tau))
    assert unsettled.is_blur_nm == pytest.approx(blur, rel=0.02)
    assert unsettled.is_blur_nm > 4.0
    # the beam is short of the shift by the lag: the settled Record's centre minus it
    shortfall = np.subtract(settled.beam_centre_lab_um, unsettled.beam_centre_lab_um)
    np.testing.assert_allclose(shortfall, unsettled.is_lag_um, atol=1e-9)
