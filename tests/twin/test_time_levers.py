"""The twin's time levers: a camera that returns early, image-shift settling in its start-up."""

from __future__ import annotations

import pytest
from twin_helpers import small_config

from tomopilot.instrument.twin import TwinMicroscope
from tomopilot.instrument.types import LowDoseArea


def _scope(**camera: float) -> TwinMicroscope:
    return TwinMicroscope(small_config(camera={"render": False, **camera}))


def _timed(scope: TwinMicroscope, action) -> float:  # type: ignore[no-untyped-def]
    start = scope.clock.now_s()
    action()
    return scope.clock.now_s() - start


def test_early_return_hands_back_the_sum_and_the_next_exposure_waits_for_the_camera() -> None:
    scope = _scope(readout_s=1.5)  # a slow read-out, so the tilt ends before the camera is free
    cam = scope.config.camera
    exposure = scope.optics.preset(LowDoseArea.RECORD).exposure_s
    plain = _timed(scope, lambda: scope.camera.acquire(LowDoseArea.RECORD))
    assert plain == pytest.approx(cam.pre_exposure_s + exposure + cam.readout_s)
    scope.camera.set_early_return(True)
    first = _timed(scope, lambda: scope.camera.acquire(LowDoseArea.RECORD))
    assert first == pytest.approx(cam.pre_exposure_s + exposure + cam.sum_return_s)
    # A tilt does not wait for the camera; it overlaps the read-out left over.
    tilt = _timed(scope, lambda: scope.stage.tilt_to(3.0))
    left = cam.readout_s - cam.sum_return_s - tilt
    assert left > 0
    second = _timed(scope, lambda: scope.camera.acquire(LowDoseArea.RECORD))
    assert second == pytest.approx(left + cam.pre_exposure_s + exposure + cam.sum_return_s)
    assert scope.ground_truth.time_by_activity_s["camera_busy"] == pytest.approx(left)
    # Back to plain: the whole read-out blocks again.
    scope.camera.set_early_return(False)
    scope.clock.sleep(5.0)
    assert _timed(scope, lambda: scope.camera.acquire(LowDoseArea.RECORD)) == pytest.approx(plain)


def test_image_shift_settling_overlaps_the_camera_start_up() -> None:
    scope = _scope()
    cam = scope.config.camera
    exposure = scope.optics.preset(LowDoseArea.RECORD).exposure_s
    settle = scope.config.optics.is_settle_s  # a shift of ≥ 0.5 µm
    blocking = _timed(scope, lambda: scope.optics.set_image_shift_um(2.0, 0.0))
    assert blocking == pytest.approx(settle)
    scope.optics.set_settling_during_startup(True)
    assert _timed(scope, lambda: scope.optics.set_image_shift_um(0.0, 0.0)) == 0.0
    shot = _timed(scope, lambda: scope.camera.acquire(LowDoseArea.RECORD))
    start_up = max(cam.pre_exposure_s, settle)
    assert shot == pytest.approx(start_up + exposure + cam.readout_s)
    # A short shift settles at once (Thermo's table: 0.1 µm → 0 s).
    scope.optics.set_image_shift_um(0.05, 0.0)
    shot = _timed(scope, lambda: scope.camera.acquire(LowDoseArea.RECORD))
    assert shot == pytest.approx(cam.pre_exposure_s + exposure + cam.readout_s)
    # Settling longer than the start-up is waited out before the exposure, and booked as such.
    slow = TwinMicroscope(small_config(camera={"render": False}, optics={"is_settle_s": 2.0}))
    slow.optics.set_settling_during_startup(True)
    slow.optics.set_image_shift_um(3.0, 0.0)
    shot = _timed(slow, lambda: slow.camera.acquire(LowDoseArea.RECORD))
    assert shot == pytest.approx(2.0 + exposure + cam.readout_s)
    exposure_truth = slow.ground_truth.exposures[-1]
    assert exposure_truth.time_s == pytest.approx(2.0)  # the beam came on once settled
