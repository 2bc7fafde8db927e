"""The engine's time ledger, built from the commands it sends, against the twin's own ledger."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from acq_helpers import write_config
from typer.testing import CliRunner

from tomopilot.acquisition.plan.estimate import Timing, estimate_duration
from tomopilot.acquisition.plan.run_config import load_acquire_config
from tomopilot.acquisition.run import start_run
from tomopilot.acquisition.strategies.fused_track import SHOT_DOSE_FRACTION
from tomopilot.acquisition.time_ledger import ACTIVITIES, TimeLedger, efficiency
from tomopilot.acquisition.time_levers import ALL_LEVERS
from tomopilot.cli.main import app


def test_the_engine_ledger_matches_the_twins(tmp_path: Path) -> None:
    config = load_acquire_config(write_config(tmp_path, strategy="fused"))
    engine, resolved = start_run(config)
    summary = engine.run()
    assert set(engine.levers) == set(ALL_LEVERS)  # fused uses every lever
    mine = summary.time_by_activity_s
    twin = dict(engine.scope.ground_truth.time_by_activity_s)  # type: ignore[attr-defined]
    # Every second of the run is booked once, and nothing is left to "other" on the twin
    # (the twin's clock moves only inside commands).
    assert sum(mine.values()) == pytest.approx(summary.microscope_s, abs=0.01)
    assert sum(mine.values()) == pytest.approx(sum(twin.values()), abs=0.01)
    assert mine["other"] == pytest.approx(0.0, abs=0.01)
    assert mine["stage_tilt"] == pytest.approx(twin["stage_tilt"], abs=0.01)
    # fused settles image shifts during the camera's start-up: what the twin waits for them
    # beyond the start-up passes inside camera commands, where the engine books it
    assert mine["image_shift"] == pytest.approx(0.0, abs=0.01)
    assert twin.get("image_shift_settle", 0.0) <= mine["camera_overhead"]
    assert mine["wait"] == pytest.approx(twin.get("wait", 0.0), abs=0.01)
    # The Records' exposure is the preset's exposure time of every Record the twin took.
    truth = engine.scope.ground_truth  # type: ignore[attr-defined]
    records = [e for e in truth.exposures if e.area == "Record"]
    assert mine["exposure"] == pytest.approx(sum(e.duration_s for e in records), abs=0.01)
    assert mine["exposure"] > 0 and mine["stage_tilt"] > 0 and mine["camera_overhead"] > 0
    physics = mine["exposure"] + mine["stage_tilt"]
    assert summary.efficiency == pytest.approx(physics / summary.microscope_s, abs=1e-3)
    assert 0.0 < summary.efficiency < 1.0
    # The ledger is in the journal, where reports read it.
    journal = engine.journal_path.read_text().splitlines()
    finished = json.loads(journal[-1])
    assert finished["time_ledger_s"]["exposure"] == pytest.approx(mine["exposure"], abs=1e-3)
    # The tracking spot's image shift is set before the stage tilts, and the shot after the
    # tilt finds it there (no second move): its settling ran during the tilt.
    commands = [
        json.loads(line)
        for line in (engine.plan.run_dir / "twin_commands.jsonl").read_text().splitlines()
    ]
    names = [f"{c['part']}.{c['method']}" for c in commands]
    shifted_first = 0
    for i in range(1, len(names) - 1):
        if names[i] == "stage.tilt_to" and names[i - 1] == "optics.set_image_shift_um":
            after = next(j for j in range(i + 1, len(names)) if names[j] != "stage.tilt_to")
            assert names[after] == "optics.set_image_shift_um"
            assert commands[after]["args"] == commands[i - 1]["args"]
            shifted_first += 1
    spot_shots = sum(
        1 for e in truth.exposures if e.area == "Preview" and e.time_s > records[0].time_s
    )
    assert spot_shots > 0
    assert shifted_first == spot_shots
    # The dry-run estimate knows the levers and the tracking spot's shots.
    twin_config = config.microscope.twin
    estimate = estimate_duration(
        resolved.settings,
        resolved.scheme,
        3,
        Timing.from_twin(twin_config),
        levers=engine.levers,
        shots_per_tilt=1,
        shot_s=SHOT_DOSE_FRACTION * twin_config.presets.record.exposure_s,
        approach=resolved.area_stage_um != (0.0, 0.0),  # the twin's stage starts at 0, 0
        realign=bool(resolved.targets[0].view_file),
        start_views=1,
    )
    assert estimate.total_s == pytest.approx(summary.microscope_s, rel=0.1)
    # The set-up (stage moves to the area, eucentricity with its Views, maps, focus, fused's
    # wide View of target 1) is what passes before the first Record's beam comes on, less the
    # first Record's own image shift and camera start-up (about a second).
    first_record_s = min(e.time_s for e in records)
    assert estimate.setup_s == pytest.approx(first_record_s, rel=0.1)
    # ... and `tomopilot report` shows it with the efficiency.
    result = CliRunner().invoke(app, ["report", str(engine.plan.run_dir)], terminal_width=160)
    assert result.exit_code == 0, result.output
    assert "microscope time" in result.output
    assert f"efficiency {summary.efficiency:.2f}" in result.output


def test_ledger_books_and_closes() -> None:
    ledger = TimeLedger()
    ledger.book("exposure", 2.0)
    ledger.book("stage_tilt", 1.0)
    ledger.book("wait", -1.0)  # nothing negative is booked
    ledger.close(10.0)
    assert ledger.total_s == pytest.approx(10.0)
    assert ledger.seconds["other"] == pytest.approx(7.0)
    assert efficiency(ledger.seconds) == pytest.approx(0.3)
    assert list(ledger.as_dict()) == list(ACTIVITIES)
    assert efficiency({}) == 0.0
    assert math.isclose(efficiency({"exposure": 1.0}), 1.0)
