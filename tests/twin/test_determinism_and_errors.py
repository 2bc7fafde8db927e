"""The twin is seeded and deterministic, never sleeps, and refuses impossible requests."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from twin_helpers import QUIET_STAGE, small_config

from tomopilot.core.config import load_config
from tomopilot.core.errors import ConfigError
from tomopilot.instrument import (
    CameraTimeoutError,
    ImageShiftLimitError,
    LowDoseArea,
    Microscope,
    NoBeamError,
    StageError,
    StageLimitError,
)
from tomopilot.instrument.twin import FaultSpec, TwinConfig, TwinMicroscope


def _series(seed: int, **overrides: object) -> list[np.ndarray]:
    scope = TwinMicroscope(small_config(seed, size=256, **overrides))
    scope.optics.set_focus_um(-3.0)
    images = []
    for tilt in (0.0, 21.0, -33.0):
        scope.stage.tilt_to(tilt, backlash_compensate=True)
        scope.optics.set_image_shift_um(0.3, -0.2)
        images.append(scope.camera.acquire(LowDoseArea.RECORD).data)
    images.append(scope.camera.acquire_movie(LowDoseArea.RECORD, n_frames=3).frames)
    return images


def test_same_seed_is_bit_identical_and_other_seeds_differ() -> None:
    first, again, other = _series(5), _series(5), _series(6)
    for a, b in zip(first, again, strict=True):
        assert a.tobytes() == b.tobytes()
    for a, c in zip(first, other, strict=True):
        assert not np.array_equal(a, c)


def test_the_twin_satisfies_the_protocol_and_never_sleeps() -> None:
    scope = TwinMicroscope(small_config(2, size=128))
    assert isinstance(scope, Microscope)
    wall = time.perf_counter()
    scope.housekeeping.refill_dewar()  # 15 simulated minutes
    scope.stage.tilt_to(60.0)
    assert scope.clock.now_s() >= 15 * 60
    assert time.perf_counter() - wall < 5.0


def test_a_paced_twin_waits_to_its_speed_and_changes_nothing_else(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``microscope_s_per_wall_s`` sleeps until the wall clock catches up; images are the same.

    The wall clock is a fake that moves only when slept, so the sleeps add up exactly to the
    simulated time over the speed-up, with no timing of the real computer.
    """
    import tomopilot.core.clock as clock_module

    wall = [1000.0]
    slept: list[float] = []

    def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        wall[0] += seconds

    monkeypatch.setattr(clock_module.time, "monotonic", lambda: wall[0])
    monkeypatch.setattr(clock_module.time, "sleep", fake_sleep)
    paced = _series(5, microscope_s_per_wall_s=8.0)
    assert slept and min(slept) > 0
    scope = TwinMicroscope(small_config(5, size=256, microscope_s_per_wall_s=8.0))
    slept.clear()
    scope.stage.tilt_to(40.0)
    scope.camera.acquire(LowDoseArea.RECORD)
    assert sum(slept) == pytest.approx(scope.clock.now_s() / 8.0)
    monkeypatch.undo()
    for a, b in zip(paced, _series(5), strict=True):
        assert a.tobytes() == b.tobytes()
    path = tmp_path / "twin.yaml"
    path.write_text("seed: 4\nmicroscope_s_per_wall_s: 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, TwinConfig)
    assert info.value.field == "microscope_s_per_wall_s" and info.value.line == 2


def test_image_shift_beyond_the_limit_raises() -> None:
    scope = TwinMicroscope(small_config(1, size=128))
    limit = scope.optics.image_shift_limit_um
    scope.optics.set_image_shift_um(limit - 0.01, 0.0)
    with pytest.raises(ImageShiftLimitError) as info:
        scope.optics.set_image_shift_um(0.0, limit + 0.5)
    assert info.value.limit_um == limit
    assert scope.optics.image_shift_um() == pytest.approx((limit - 0.01, 0.0))


def test_stage_limits_raise_typed_errors() -> None:
    scope = TwinMicroscope(small_config(1, size=128, stage={"profile": "side-entry"}))
    with pytest.raises(StageLimitError, match="tilt"):
        scope.stage.tilt_to(65.0)
    with pytest.raises(StageLimitError, match="x"):
        scope.stage.move_to(x_um=2000.0)


def test_a_bad_twin_yaml_value_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "twin.yaml"
    path.write_text("seed: 4\nstage:\n  profile: side-entry\n  tilt_speed_deg_s: -3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, TwinConfig)
    assert info.value.field == "stage.tilt_speed_deg_s"
    assert info.value.line == 4
    path.write_text("stage:\n  profile: rocket\n")
    with pytest.raises(ConfigError, match=r"stage\.profile"):
        load_config(path, TwinConfig)
    path.write_text("presets:\n  record:\n    camera_area_px: [8192, 8192]\n")
    with pytest.raises(ConfigError, match="larger than"):
        load_config(path, TwinConfig)


def test_injected_faults_fire_as_typed_errors_and_dark_images() -> None:
    config = small_config(
        3,
        size=128,
        faults=[
            {"kind": "camera_timeout", "at_exposure": 1, "count": 2},
            {"kind": "dark_image", "at_exposure": 4},
            {"kind": "no_beam", "at_exposure": 6},
            {"kind": "stage_error", "at_move": 1},
        ],
    )
    scope = TwinMicroscope(config)
    normal = scope.camera.acquire(LowDoseArea.RECORD)
    for _ in range(2):
        with pytest.raises(CameraTimeoutError):
            scope.camera.acquire(LowDoseArea.RECORD)
    scope.camera.acquire(LowDoseArea.RECORD)
    dark = scope.camera.acquire(LowDoseArea.RECORD)
    assert dark.mean_counts < 0.01 * normal.mean_counts
    assert scope.ground_truth.exposure(dark.exposure_id).dark
    scope.camera.acquire(LowDoseArea.RECORD)
    with pytest.raises(NoBeamError):
        scope.camera.acquire(LowDoseArea.RECORD)
    scope.stage.tilt_to(3.0)
    with pytest.raises(StageError):
        scope.stage.tilt_to(6.0)
    assert scope.stage.position().tilt_deg == 3.0


def test_a_jump_fault_moves_the_specimen() -> None:
    config = small_config(
        3,
        size=128,
        stage=QUIET_STAGE,
        faults=[FaultSpec(kind="stage_jump", at_move=2, magnitude_um=0.4)],
    )
    scope = TwinMicroscope(config)
    scope.stage.tilt_to(3.0)
    before = scope.camera.acquire(LowDoseArea.RECORD)
    scope.stage.tilt_to(6.0)
    scope.stage.tilt_to(9.0)  # the third move jumps
    after = scope.camera.acquire(LowDoseArea.RECORD)
    truth = scope.ground_truth
    point = truth.exposure(before.exposure_id).specimen_centre_um
    dx0, dy0 = truth.exposure(before.exposure_id).offset_nm(point)
    dx1, dy1 = truth.exposure(after.exposure_id).offset_nm(point)
    rigid = np.hypot(dx1 - dx0, dy1 - dy0)
    assert rigid > 300.0  # 0.4 µm jump (plus the small rigid motion of 6°)


def test_the_truth_lists_every_stage_jump_with_its_time() -> None:
    # An injected jump and the stage's own random ones (every move jumps here) are listed in
    # order, each at the time its move ended, so a report can tell which exposure followed one.
    config = small_config(
        4,
        size=128,
        stage={**QUIET_STAGE, "jump_probability": 1.0, "jump_um": (0.2, 0.3)},
        faults=[FaultSpec(kind="stage_jump", at_move=1, magnitude_um=0.4)],
    )
    scope = TwinMicroscope(config)
    times = []
    for tilt in (3.0, 6.0):
        scope.stage.tilt_to(tilt)
        times.append(scope.clock.now_s())
    image = scope.camera.acquire(LowDoseArea.RECORD)
    jumps = scope.true_stage_jumps()
    assert [round(m, 6) for _, m in jumps][1] == 0.4  # the fault, before the second move
    assert len(jumps) == 3
    assert all(0.2 <= m <= 0.3 for i, (_, m) in enumerate(jumps) if i != 1)
    assert [t for t, _ in jumps] == sorted(t for t, _ in jumps)
    assert jumps[0][0] == times[0] and jumps[2][0] == times[1]
    assert all(t <= scope.ground_truth.exposure(image.exposure_id).time_s for t, _ in jumps)
