"""measureGeo as a set-up step: the run measures pretilt and rotation before its maps."""

from __future__ import annotations

from pathlib import Path

import yaml
from acq_helpers import write_config

from tomopilot.acquisition.events import SetupStep
from tomopilot.acquisition.output.journal import replay_journal
from tomopilot.acquisition.plan.run_config import load_acquire_config
from tomopilot.acquisition.run import start_run
from tomopilot.acquisition.setup.adjustments import reapply_adjustments
from tomopilot.targeting.targets import GeoPoint, Target, TargetSet, save_targets

GEO = [(0.0, 2.5), (3.0, 2.5), (-3.0, 2.5), (3.0, -2.5), (-3.0, -2.5)]
TARGETS = [(0.0, 0.0), (1.2, 0.8), (-1.0, 1.4)]


def _config(folder: Path, *, measure: bool, geo: list[tuple[float, float]] = GEO) -> Path:
    targets_file = folder / "area_tgts.txt"
    save_targets(
        targets_file,
        TargetSet(
            targets=[Target(ss_x_um=x, ss_y_um=y) for x, y in TARGETS],
            geo_points=[GeoPoint(ss_x_um=x, ss_y_um=y) for x, y in geo],
        ),
    )
    path = write_config(
        folder,
        settings={"measureGeo": measure, "pretilt": 0.0, "rotation": 0.0},
        twin={"specimen": {"kind": "lamella", "pretilt_deg": 12.0, "rotation_deg": 20.0}},
    )
    data = yaml.safe_load(path.read_text())
    data["targets"] = {"file": str(targets_file)}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_measure_geo_replaces_the_configured_angles(tmp_path: Path) -> None:
    config = load_acquire_config(_config(tmp_path, measure=True))
    engine, _ = start_run(config, strategy="pace")
    focus_before = sum(1 for e in engine.scope.ground_truth.exposures if e.area == "Focus")
    engine.run()
    settings = engine.plan.settings
    # the twin's lamella: pretilt 12°, rotation 20° (the configuration said 0 and 0)
    assert abs(settings.pretilt_deg - 12.0) < 1.0
    assert abs(settings.rotation_deg - 20.0) < 5.0
    focus = [e for e in engine.scope.ground_truth.exposures if e.area == "Focus"]
    assert len(focus) - focus_before >= 2 * len(GEO)  # read on the geo points, with Focus
    geometry = replay_journal(engine.journal_path).geometry
    assert geometry is not None
    assert geometry["pretilt_deg"] == settings.pretilt_deg


def test_too_few_geo_points_keep_the_configured_angles(tmp_path: Path) -> None:
    config = load_acquire_config(_config(tmp_path, measure=True, geo=GEO[:2]))
    engine, _ = start_run(config, strategy="pace")
    steps: list[str] = []
    engine.events.subscribe(SetupStep, lambda e: steps.append(e.detail))
    engine.run()
    assert engine.plan.settings.pretilt_deg == 0.0
    assert replay_journal(engine.journal_path).geometry is None
    assert any("3 needed" in s for s in steps)


def test_measured_angles_survive_a_resume(tmp_path: Path) -> None:
    path = _config(tmp_path, measure=True)
    engine, _ = start_run(load_acquire_config(path), strategy="pace")
    engine.control.abort()  # the set-up runs, then the loop stops at its first checkpoint
    engine.run()
    measured = engine.plan.settings.pretilt_deg
    again, _ = start_run(load_acquire_config(path), strategy="pace")
    assert again.plan.settings.pretilt_deg == 0.0  # the YAML's value
    again.run(resume=True)
    assert again.plan.settings.pretilt_deg == measured


def test_journalled_adjustments_are_reapplied(tmp_path: Path) -> None:
    engine, _ = start_run(load_acquire_config(_config(tmp_path, measure=False)))
    plan = engine.plan
    moved = [[0.0, 0.0], [1.25, 0.75], [-1.05, 1.45]]
    reapply_adjustments(
        plan,
        {"targets_um": moved, "vectors_um": [2.5, 0.1, -0.1, 2.5]},
        {"pretilt_deg": 7.5, "rotation_deg": -12.0},
    )
    assert [list(t.ss_um) for t in plan.targets] == moved
    s = plan.settings
    assert (s.pattern_vec_a_x_um, s.pattern_vec_b_y_um, s.pretilt_deg, s.rotation_deg) == (
        2.5,
        2.5,
        7.5,
        -12.0,
    )
