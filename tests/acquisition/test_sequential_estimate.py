"""The dry run's estimate of a ``sequential`` session against the twin's clock: an area per
target, with Leginon's steps around every series (set-up, recentring, backlash releases,
drift manager, focus readings, the session's defocus–tilt table)."""

from __future__ import annotations

import re
from pathlib import Path

from acq_helpers import calm_stage, write_sequential_config
from typer.testing import CliRunner

from tomopilot.acquisition.plan.run_config import load_acquire_config
from tomopilot.acquisition.run import start_run
from tomopilot.acquisition.session import run_configured_session
from tomopilot.cli.main import app


def test_the_dry_run_prices_a_sequential_session_as_the_twin_spends_it(tmp_path: Path) -> None:
    """Two targets, ±24° in 3°: the estimate is within 10 % of the microscope time the
    session took on the twin's clock. Priced as a parallel run (one set-up, one pass over
    the tilts for both targets, no sequential steps) it came to 0.31 of it."""
    path = write_sequential_config(
        tmp_path,
        seed=2,
        max_tilt_deg=24.0,
        targets=[{"SSX": 0.0, "SSY": 0.0}, {"SSX": 2.0, "SSY": 1.0}],
        twin={"stage": calm_stage()},
    )
    result = CliRunner().invoke(app, ["acquire", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    found = re.search(r"estimated microscope time: ([0-9.]+) min", result.output)
    assert found is not None, result.output
    estimate_s = 60.0 * float(found.group(1))
    config = load_acquire_config(path)
    engine, resolved = start_run(config)
    summary = run_configured_session(engine, resolved)
    assert summary.status == "finished" and summary.n_exposures == 2 * 17
    assert abs(estimate_s / summary.microscope_s - 1.0) < 0.10, (estimate_s, summary)
