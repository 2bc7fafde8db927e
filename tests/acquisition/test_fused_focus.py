"""fused's focus check: the tilt axis's motion along the beam, which no lateral measurement
shows, measured once per branch and followed (``fused_focus``), against the twin's truth."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from acq_helpers import calm_stage, run_fused_on_twin, write_config
from numpy.typing import NDArray

from tomopilot.acquisition.plan.tilt_schemes import dose_symmetric
from tomopilot.acquisition.quality import assess_run_dir
from tomopilot.acquisition.strategies.fused import FusedStrategy
from tomopilot.acquisition.strategies.fused_focus import FocusCheck, planned_checks
from tomopilot.instrument.twin import TwinMicroscope
from tomopilot.instrument.twin.stage_model import StageModel
from tomopilot.instrument.types import LowDoseArea

#: The axis sinks along the beam by this much at ±60° (as 1 − cos θ): a goniometer's run-out
#: in z, with no lateral part at all.
AXIS_Z_AT_60_UM = 0.8


def _axis_z_um(tilt_deg: float) -> float:
    return AXIS_Z_AT_60_UM * (1 - math.cos(math.radians(tilt_deg))) / (1 - math.cos(math.pi / 3))


def test_the_slope_is_fitted_through_the_start_tilt_and_a_failed_reading_is_ignored() -> None:
    check = FocusCheck(start_tilt_deg=10.0)
    assert check.due("+", 46.0) is False  # 36° from the start tilt
    assert check.due("+", 49.0) and check.due("-", -29.0) and not check.due("start", 49.0)
    # The first reading sets the axis depth there and the slope through the start tilt.
    assert check.record("+", 49.0, 0.39) == pytest.approx(0.39)
    assert check.axis_depth_um("+", 49.0) == pytest.approx(0.39)
    assert check.axis_depth_um("+", 10.0 + 19.5) == pytest.approx(0.195)
    assert check.axis_depth_um("-", -29.0) == 0.0  # the other branch has its own axis motion
    assert not check.due("+", 52.0)  # once per branch
    # An autofocus failure (no contrast: a reading far off) changes nothing.
    assert check.record("-", -29.0, -1.7) == 0.0
    assert check.axis_depth_um("-", -50.0) == 0.0 and not check.due("-", -32.0)
    again = FocusCheck.from_dict(check.to_dict())
    assert again.axis_depth_um("+", 58.0) == check.axis_depth_um("+", 58.0)


def test_the_dry_run_counts_one_check_per_branch_that_reaches_the_check_tilt() -> None:
    assert planned_checks(dose_symmetric(0.0, -60.0, 60.0, 3.0, 2)) == 2
    assert planned_checks(dose_symmetric(0.0, -30.0, 30.0, 3.0, 2)) == 0
    assert planned_checks(dose_symmetric(10.0, -20.0, 60.0, 2.0, 3)) == 1  # − branch: 30°


def _run(
    tmp_path: Path, *, check: bool = True
) -> tuple[FusedStrategy, TwinMicroscope, NDArray[np.float64]]:
    """A calm stage whose axis sinks along the beam; fused's per-Record (tilt, defocus error)."""
    tmp_path.mkdir()
    config = write_config(
        tmp_path,
        strategy="fused",
        seed=5,
        targets=[{"SSX": 0.0, "SSY": 0.0}, {"SSX": 1.5, "SSY": 1.0}],
        settings={
            "minTilt": -60,
            "maxTilt": 60,
            "step": 6,
            "pretilt": 0.0,
            "focusCheck": check,
        },
        twin={
            "specimen": {"kind": "lamella", "pretilt_deg": 0.0},
            "stage": calm_stage(eucentric_rough_sigma_um=0.1),
        },
    )
    strategy, scope = run_fused_on_twin(config)
    quality = assess_run_dir(tmp_path / "run")
    errors = np.array(
        [
            (tilt, err)
            for t in quality.targets
            for tilt, err in zip(t.tilts_deg, t.defocus_error_um, strict=True)
        ]
    )
    return strategy, scope, errors


def test_on_the_twin_the_check_reads_the_axis_sinking_and_fused_follows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = StageModel.runout_um

    def sinking(self: StageModel, tilt_deg: float) -> NDArray[np.float64]:
        value = original(self, tilt_deg)
        value[2] += _axis_z_um(tilt_deg)
        return value

    monkeypatch.setattr(StageModel, "runout_um", sinking)
    strategy, scope, checked = _run(tmp_path / "checked")
    _, _, unchecked = _run(tmp_path / "unchecked", check=False)

    # One check per branch, at the first tilt beyond 39°, each an autofocus measurement: two
    # Focus exposures (the set-up's autofocus made the others).
    assert strategy.focus.checked == {"+": [42.0], "-": [-42.0]}
    focus_shots = [e for e in scope.ground_truth.exposures if e.area == LowDoseArea.FOCUS.value]
    setup_shots = len(focus_shots) - 4
    assert setup_shots in (2, 4)
    # Each read what the Records there would have missed without it (0.33-0.39 µm: the axis's
    # 0.41 µm, less what the rotation model took up), to the autofocus's error (σ 0.04 µm).
    for tilt in (42.0, -42.0):
        missed = float(np.mean(unchecked[unchecked[:, 0] == tilt, 1]))
        reading = strategy.focus.axis_depth_um("+" if tilt > 0 else "-", tilt)
        assert reading == pytest.approx(missed, abs=0.15)
        assert missed > 0.25
    high = np.abs(checked[:, 0]) >= 42.0
    assert np.array_equal(high, np.abs(unchecked[:, 0]) >= 42.0)
    rms_checked = float(np.sqrt(np.mean(checked[high, 1] ** 2)))
    rms_unchecked = float(np.sqrt(np.mean(unchecked[high, 1] ** 2)))
    # Unchecked, the Records at 42-60° miss their defocus by the axis's sinking (0.3-0.85 µm);
    # checked, by what the straight-line extrapolation of one reading misses (≈ 0.2 µm at
    # 60°: the sinking grows as 1 − cos θ) and the autofocus's error.
    assert rms_unchecked > 0.45
    assert rms_checked < 0.5 * rms_unchecked
    # Every tilt below 39° came first (dose-symmetric order) and is the same in both runs.
    low = np.abs(checked[:, 0]) < 39.0
    assert np.allclose(checked[low], unchecked[low])
