"""fused's tilt-axis fit: target 1's height above the axis and distance from it, from its
lateral track (``fused_axis``), against known geometry and the twin's ground truth."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from acq_helpers import calm_stage, run_fused_on_twin, write_config

from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.plan.tilt_schemes import TiltStep, dose_symmetric
from tomopilot.acquisition.strategies.fused import FusedStrategy
from tomopilot.acquisition.strategies.fused_axis import (
    HEIGHT_PRIOR_SIGMA_UM,
    RUNOUT_SIGMA_UM,
    AxisStep,
    AxisTracker,
    fit_axis,
)
from tomopilot.instrument.twin.measurements import TwinMeasurements
from tomopilot.instrument.types import LowDoseArea

MISSED_HEIGHT_UM = 1.2
SHARE = HEIGHT_PRIOR_SIGMA_UM**2 / (HEIGHT_PRIOR_SIGMA_UM**2 + RUNOUT_SIGMA_UM**2)


def _track(
    offset_um: dict[str, float],
    height_um: float,
    step_sigma_um: float,
    seed: int,
    *,
    jump: tuple[str, float, float] | None = None,
    max_tilt_deg: float = 60.0,
) -> AxisTracker:
    """Target 1's measured lateral positions on a dose-symmetric series about 0° (3° steps,
    groups of 2): the rigid rotation about an axis at lateral ``offset_um`` (per branch) and
    ``height_um`` below it, plus the axis's own random-walk steps, plus ``jump`` (branch,
    tilt, µm) once."""
    rng = np.random.default_rng(seed)
    tracker = AxisTracker()
    axis = {"+": 0.0, "-": 0.0}
    tracker.start(0.0, offset_um["+"])
    for step in dose_symmetric(0.0, -max_tilt_deg, max_tilt_deg, 3.0, 2):
        if step.branch == "start":
            continue
        b, t = step.branch, math.radians(step.tilt_deg)
        axis[b] += float(rng.normal(0.0, step_sigma_um))
        if jump is not None and jump[0] == b and math.isclose(jump[1], step.tilt_deg):
            axis[b] += jump[2]
        lateral = offset_um[b] * math.cos(t) - height_um * math.sin(t)
        start_lateral = offset_um[b] - offset_um["+"]  # the branches start at one point
        tracker.observe(b, step.tilt_deg, axis[b] + lateral - start_lateral)
    return tracker


def test_the_fit_recovers_a_known_height_and_axis_offset_through_stage_noise() -> None:
    # 1 µm above the axis (a rough eucentricity's miss), 0.25 µm beside it, steps of 40 nm.
    errors = []
    for seed in range(5):
        tracker = _track({"+": 0.25, "-": 0.25}, 1.0, 0.04, seed)
        fit = fit_axis(tracker.steps, runout_sigma_um=0.0)  # a goniometer without run-out
        errors.append((fit.offset_um["+"] - 0.25, fit.offset_um["-"] - 0.25, fit.height_um - 1.0))
        assert fit.steps == 40
        assert fit.step_sigma_um == pytest.approx(0.04, rel=0.5)
    errors_um = np.abs(np.array(errors))
    # 40 steps of 40 nm: σ(m) ≈ 0.04 / (0.052 · √(Σcos²θ)) ≈ 0.15 µm; σ(n) ≈ 0.2 µm per branch.
    assert errors_um[:, 2].max() < 0.35
    assert errors_um[:, :2].max() < 0.45
    assert np.sqrt(np.mean(errors_um[:, 2] ** 2)) < 0.2


def test_run_out_of_the_same_shape_takes_its_share_of_the_height() -> None:
    # The lateral track cannot tell a height m (−m sin θ) from run-out of that shape: m is
    # shrunk by H² / (H² + R²), H and R the prior sizes of the height miss and the run-out.
    shares = []
    for seed in range(5):
        tracker = _track({"+": 0.0, "-": 0.0}, 1.0, 0.02, seed)
        shares.append(tracker.current().height_um)
        assert fit_axis(tracker.steps, runout_sigma_um=0.0).height_um == pytest.approx(1.0, abs=0.2)
    assert np.mean(shares) == pytest.approx(SHARE, abs=0.1)


def test_a_jump_is_one_step_of_typical_size_not_a_new_geometry() -> None:
    calm = fit_axis(_track({"+": 0.1, "-": -0.2}, 0.8, 0.03, seed=7).steps, runout_sigma_um=0.0)
    jumped_track = _track({"+": 0.1, "-": -0.2}, 0.8, 0.03, seed=7, jump=("+", 30.0, 1.5))
    jumped = fit_axis(jumped_track.steps, runout_sigma_um=0.0)
    assert jumped.outliers >= 1
    assert jumped.height_um == pytest.approx(calm.height_um, abs=0.05)
    assert jumped.offset_um["+"] == pytest.approx(calm.offset_um["+"], abs=0.1)
    # least squares without Huber weights would move the height by ~1.5 µm · 0.05 / Σ
    assert abs(calm.height_um - 0.8) < 0.3


def test_a_few_small_tilts_stay_near_the_prior() -> None:
    # Two ±3° steps of pure stage noise (60 nm): unregularised, that is m ≈ 1.1 µm.
    steps = [AxisStep("+", 0.0, 3.0, -0.06), AxisStep("-", 0.0, -3.0, -0.06)]
    fit = fit_axis(steps, {"+": -0.5, "-": 0.5})
    assert abs(fit.height_um) < 0.5
    assert fit.offset_um == pytest.approx({"+": -0.5, "-": 0.5}, abs=0.01)  # no curvature yet
    assert fit_axis([], {"+": -0.5}).offset_um == {"+": -0.5, "-": 0.0}


def test_the_tracker_survives_the_journal() -> None:
    tracker = _track({"+": 0.2, "-": 0.2}, 0.6, 0.03, seed=3, max_tilt_deg=30.0)
    again = AxisTracker.from_dict(tracker.to_dict())
    assert again.current() == tracker.current()
    assert again.last == tracker.last


@pytest.mark.parametrize("at", ["start", "+"])
def test_a_resumes_refound_shift_is_no_step_of_the_geometry(at: str) -> None:
    # A resume tilts back to the last tilt with a commit and re-finds target 1 there 0.08 µm
    # away (the stage moved while the run was down). fused.recover moves the targets there; the
    # axis must step on from there too, or the next 3° step reads 0.08 µm as 1.5 µm of height.
    tilt = 0.0 if at == "start" else 3.0
    index, group = (0, 0) if at == "start" else (1, 1)
    step = TiltStep(
        tilt_deg=tilt, branch=at, index=index, group=group, approach_deg=None, branch_step=index
    )
    strategy = FusedStrategy(AcquisitionSettings())
    strategy.axis.start(0.0, 0.0)
    last_y = 0.0 if at == "start" else 0.01
    if at == "+":
        strategy.axis.observe("+", 3.0, last_y)
    strategy.recover(step, (0.0, 0.08))
    strategy.axis.observe("+", tilt + 3.0, last_y + 0.08 - 0.005)  # found moved, then stepped
    assert strategy.axis.steps[-1].dy_um == pytest.approx(-0.005)
    assert abs(strategy.axis.current().height_um) < 0.1
    if at == "start":  # both branches stepped from the start tilt: both moved
        assert strategy.axis.last["-"] == pytest.approx((0.0, 0.08))


def test_on_the_twin_fused_finds_the_height_the_eucentricity_missed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A calm stage and a set-up that leaves target 1 1.2 µm off the eucentric height: fused's
    fit of target 1's lateral track finds its height above the tilt axis (twin truth: the
    specimen point under target 1's beam at the start tilt, against the eucentric stage z),
    and the branches' axis offsets stay near the calibrated zero."""
    original = TwinMeasurements.eucentricity

    def missed(self: TwinMeasurements, *, fine: bool = False) -> float:
        dz = original(self, fine=fine)
        self._stage.move_by(dz_um=MISSED_HEIGHT_UM)
        return dz + MISSED_HEIGHT_UM

    monkeypatch.setattr(TwinMeasurements, "eucentricity", missed)
    config = write_config(
        tmp_path,
        strategy="fused",
        seed=4,
        targets=[{"SSX": 0.0, "SSY": 0.0}, {"SSX": 1.5, "SSY": 1.0}],
        settings={"minTilt": -36, "maxTilt": 36, "step": 4, "pretilt": 0.0},
        twin={
            "stage": calm_stage(eucentric_rough_sigma_um=0.0, eucentric_fine_sigma_um=0.0),
        },
    )
    strategy, scope = run_fused_on_twin(config)
    first = next(e for e in scope.ground_truth.exposures if e.area == LowDoseArea.RECORD.value)
    # Along the beam (depth, down positive) from the axis: the point's own z, plus how far the
    # eucentric stage z is from where the stage stands.
    true_height_um = (
        first.specimen_centre_um[2] + scope.true_eucentric_z_um() - scope.stage.position().z_um
    )
    assert abs(true_height_um) == pytest.approx(MISSED_HEIGHT_UM, abs=0.1)
    axis = strategy.axis
    # This stage's run-out is 0.02 µm: fitted with that, the track gives the height itself.
    fit = fit_axis(axis.steps, runout_sigma_um=0.02, start_tilt_deg=axis.start_tilt_deg)
    assert fit.height_um == pytest.approx(true_height_um, abs=0.2)
    assert abs(fit.offset_um["+"]) < 0.2 and abs(fit.offset_um["-"]) < 0.2
    # The strategy, not knowing this stage, allows RUNOUT_SIGMA_UM of run-out: it keeps SHARE.
    assert axis.current().height_um / true_height_um == pytest.approx(SHARE, abs=0.15)
