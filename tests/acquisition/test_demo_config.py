"""The packaged demo configuration: valid, warning-free, and as the demo promises."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tomopilot.acquisition.plan.run_config import load_acquire_config, resolve_run
from tomopilot.cli.demo import write_demo_config
from tomopilot.cli.main import app


def test_the_demo_configuration_is_nine_targets_at_60_degrees_in_3_degree_steps(
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    path = tmp_path / "lamella.yaml"
    result = runner.invoke(app, ["demo", "--write-config", str(path)])
    assert result.exit_code == 0, result.output
    resolved = resolve_run(load_acquire_config(path))
    assert len(resolved.targets) == 9
    assert resolved.scheme.n_tilts == 41  # ±60° in 3° steps
    assert resolved.settings.group_size == 2
    assert resolved.warnings == []
    dry = runner.invoke(app, ["acquire", str(path), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "41 tilts" in dry.output and "warning" not in dry.output


def test_feasibility_warnings_are_shown_once(tmp_path: Path) -> None:
    runner = CliRunner()
    path = tmp_path / "lamella.yaml"
    runner.invoke(app, ["demo", "--write-config", str(path)])
    data = yaml.safe_load(path.read_text())
    data["settings"]["imageShiftLimit"] = 20.0  # above the twin's 15 µm
    path.write_text(yaml.safe_dump(data))
    dry = runner.invoke(app, ["acquire", str(path), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert dry.output.count("imageShiftLimit = 20 µm is above") == 1


def test_the_demo_writes_where_it_reports_from_a_relative_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ``make demo`` passes a relative --out: the run folder in the YAML is relative to the
    # YAML, and must be the folder the demo then reports on.
    monkeypatch.chdir(tmp_path)
    path, run_dir = write_demo_config(Path("demo_output"))
    config = load_acquire_config(path)
    assert config.output.dir.resolve() == (tmp_path / "demo_output" / "lamella").resolve()
    assert run_dir.resolve() == config.output.dir.resolve()
