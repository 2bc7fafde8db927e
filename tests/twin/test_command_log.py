"""The twin's command log rebuilds the microscope exactly after the driving process dies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from twin_helpers import small_config

from tomopilot.instrument import CameraTimeoutError, LowDoseArea
from tomopilot.instrument.twin import FaultSpec, TwinMicroscope


def _drive(scope: TwinMicroscope) -> None:
    scope.measurements.eucentricity()
    scope.measurements.autofocus(-3.0)
    for tilt in (3.0, 6.0, -3.0):
        scope.stage.tilt_to(tilt, backlash_compensate=True)
        scope.optics.set_image_shift_um(0.4, -0.2)
        scope.clock.sleep(0.3)
        scope.camera.acquire(LowDoseArea.RECORD)
    scope.inject_fault(FaultSpec(kind="camera_timeout", at_exposure=0))
    with pytest.raises(CameraTimeoutError):
        scope.camera.acquire(LowDoseArea.RECORD)
    scope.camera.acquire_movie(LowDoseArea.RECORD, n_frames=3)
    scope.housekeeping.dewar_status()


def _state(scope: TwinMicroscope) -> tuple[object, ...]:
    truth = scope.ground_truth
    return (
        scope.clock.now_s(),
        scope.stage.position(),
        scope.optics.image_shift_um(),
        scope.optics.focus_um(),
        scope.true_pose().translation.tolist(),
        [(t.exposure_id, t.defocus_um, t.dose_e_a2, t.specimen_centre_um) for t in truth.exposures],
        dict(truth.time_by_activity_s),
    )


def test_replay_rebuilds_the_same_microscope(tmp_path: Path) -> None:
    log = tmp_path / "twin_commands.jsonl"
    config = small_config(61, size=128)
    original = TwinMicroscope(config, command_log=log)
    _drive(original)
    reborn = TwinMicroscope(config, command_log=log)
    assert reborn.replayed_commands > 10
    assert repr(_state(reborn)) == repr(_state(original))  # repr: NaN equals NaN
    for scope in (original, reborn):
        scope.stage.tilt_to(9.0)
    a = original.camera.acquire(LowDoseArea.RECORD).data
    b = reborn.camera.acquire(LowDoseArea.RECORD).data
    assert np.array_equal(a, b)


def test_a_torn_last_command_is_dropped_and_prefixes_replay_consistently(tmp_path: Path) -> None:
    log = tmp_path / "twin_commands.jsonl"
    config = small_config(62, size=128)
    original = TwinMicroscope(config, command_log=log)
    _drive(original)
    lines = log.read_bytes().splitlines(keepends=True)
    reference = TwinMicroscope(config)
    for k in (3, 7, len(lines) - 1):
        prefix = tmp_path / f"prefix_{k}.jsonl"
        prefix.write_bytes(b"".join(lines[:k]) + lines[k][: len(lines[k]) // 2])  # torn write
        rebuilt = TwinMicroscope(config, command_log=prefix)
        assert rebuilt.replayed_commands == k
    del reference
