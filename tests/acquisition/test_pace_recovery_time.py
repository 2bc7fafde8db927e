"""What one loss of target 1 costs pace on the twin, and what the duration estimate says."""

from __future__ import annotations

from pathlib import Path

import pytest
from acq_helpers import calm_stage, write_config
from typer.testing import CliRunner

from tomopilot.acquisition.plan.estimate import DurationEstimate, Timing, estimate_duration
from tomopilot.acquisition.plan.run_config import load_acquire_config
from tomopilot.acquisition.run import start_run
from tomopilot.acquisition.time_levers import levers_for
from tomopilot.cli.main import app
from tomopilot.instrument.types import LowDoseArea


def _run(folder: Path, jump_um: float) -> tuple[float, int, int, DurationEstimate]:
    """A 2-target ±6° pace run on a calm stage that jumps ``jump_um`` (× U(0.5, 1.5)) when the
    tilt first reverses: its microscope time, View and Record exposures, and its estimate
    (no loss given)."""
    folder.mkdir()
    stage = calm_stage(branch_start_jump_um=jump_um)
    targets = [{"SSX": 0.0, "SSY": 0.0}, {"SSX": 1.5, "SSY": 1.0}]
    settings = {"minTilt": -6, "maxTilt": 6, "minDefocus": -4}
    config = load_acquire_config(
        write_config(folder, targets=targets, settings=settings, twin={"stage": stage})
    )
    engine, resolved = start_run(config, strategy="pace")
    summary = engine.run()
    assert summary.status == "finished"
    areas = [e.area for e in engine.scope.ground_truth.exposures]
    timing = Timing.from_twin(config.microscope.twin)
    levers = levers_for("pace", resolved.settings)
    estimate = estimate_duration(resolved.settings, resolved.scheme, 2, timing, levers=levers)
    given = estimate_duration(
        resolved.settings, resolved.scheme, 2, timing, levers=levers, recovery_views=1, retakes=1
    )
    # a loss given costs what the estimate says one costs, and only that
    assert estimate.recovery_s == 0.0 and given.recovery_s == pytest.approx(estimate.per_loss_s)
    assert given.total_s - estimate.total_s == pytest.approx(estimate.per_loss_s)
    return (
        summary.microscope_s,
        areas.count(LowDoseArea.VIEW),
        areas.count(LowDoseArea.RECORD),
        estimate,
    )


def test_the_estimate_prices_a_lost_target_as_the_twin_spends_it(tmp_path: Path) -> None:
    calm_s, calm_views, calm_records, estimate = _run(tmp_path / "calm", 0.0)
    lost_s, lost_views, lost_records, _ = _run(tmp_path / "lost", 1.0)
    # The jump (beyond the 0.41 µm field) loses target 1 once: one View finds it, one Record
    # is retaken centred (test_pace_lost_target.py); nothing else differs.
    assert (lost_views - calm_views, lost_records - calm_records) == (1, 1)
    # the twin spent 3.95 s on it (View 1.8 s: start-up, 1 s, read-out; retake 2.15 s), as
    # the estimate says
    assert estimate.per_loss_s == pytest.approx(lost_s - calm_s, rel=0.05)
    # and the estimate without losses matches the run that had none (71.1 against 69.8 s)
    assert estimate.total_s == pytest.approx(calm_s, rel=0.03)
    # the dry run says what a loss costs, outside its total
    result = CliRunner().invoke(app, ["acquire", str(tmp_path / "calm" / "run.yaml"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert f"up to {estimate.per_loss_s:.1f} s" in " ".join(result.output.split())
