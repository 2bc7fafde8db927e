"""The YAML of ``tomopilot acquire``: PACEtomo names, targets files, overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from tomopilot.acquisition.plan.feasibility import ImpossibleSettingsError
from tomopilot.acquisition.plan.run_config import (
    AcquireConfig,
    load_acquire_config,
    microscope_limits,
    resolve_run,
    resolve_targets,
)
from tomopilot.core.config import dump_config
from tomopilot.core.errors import ConfigError

TARGETS = """\
_set maxDefocus = -4.5
_bset addAF = yes
_set groupSize = 3

_tgt = 001
tgtfile = L03_tgt_001.mrc
tsfile = L03_ts_001.mrc
stageX = 412.5
stageY = -87.5
SSX = 0
SSY = 0
skip = False

_tgt = 002
tgtfile = L03_tgt_002.mrc
tsfile = L03_ts_002.mrc
SSX = 1.84
SSY = -3.07
skip = True

_geo = 1
SSX = 2.5
SSY = 4.0
"""

YAML = """\
targets:
  file: L03_tgts.txt
settings:
  startTilt: 0
  maxDefocus: -4
  minDefocus: -3
  stepDefocus: 0.5
  delay_tilt_s: 1.5
  previewAli: false
strategy: pace
output:
  dir: out
  root: L03
save_frames: true
frames_format: eer
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def area(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A session folder with a targets file and a YAML; the working directory is elsewhere."""
    folder = tmp_path / "session"
    write(folder, "L03_tgts.txt", TARGETS)
    config = write(folder, "acquire.yaml", YAML)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return config


def test_yaml_with_pacetomo_names_loads_and_paths_resolve_next_to_it(area: Path) -> None:
    config = load_acquire_config(area)
    assert config.settings.max_defocus_um == -4
    assert config.settings.delay_tilt_s == 1.5 and config.settings.preview_align is False
    assert config.targets.file == area.parent.resolve() / "L03_tgts.txt"
    assert config.output.dir == area.parent.resolve() / "out"
    assert config.output.root == "L03" and config.strategy == "pace"
    assert config.save_frames and config.frames_format == "eer"
    assert config.source_path == area
    assert config.microscope.backend == "twin"


def test_set_overrides_in_the_targets_file_win_over_the_yaml(area: Path) -> None:
    run = resolve_run(load_acquire_config(area))
    assert run.settings.max_defocus_um == -4.5  # YAML said -4
    assert run.settings.add_autofocus is True and run.settings.group_size == 3
    assert run.settings.delay_tilt_s == 1.5  # YAML values not overridden stay
    assert run.overrides == {"maxDefocus": "-4.5", "addAF": "yes", "groupSize": "3"}
    targets_file = area.parent.resolve() / "L03_tgts.txt"
    assert run.override_sources["groupSize"] == f"{targets_file}:3"
    assert [t.skip for t in run.targets] == [False, True]
    assert run.targets[1].ss_um == (1.84, -3.07)
    assert run.geo_points_um == [(2.5, 4.0)]
    assert run.area_stage_um == (412.5, -87.5)  # from target 1's stage position
    assert run.scheme.group_size == 3 and run.scheme.n_tilts == 41
    targets, overrides = resolve_targets(run.config)
    assert len(targets) == 2 and overrides == run.overrides


def test_a_bad_yaml_value_names_field_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", "targets:\n  - {SSX: 0, SSY: 0}\nsettings:\n  groupSize: 0\n")
    with pytest.raises(ConfigError) as info:
        load_acquire_config(path)
    assert (info.value.path, info.value.line, info.value.field) == (path, 4, "settings.groupSize")
    assert str(info.value).startswith(f"{path}:4, field 'settings.groupSize'")


def test_a_bad_inline_target_names_its_line(tmp_path: Path) -> None:
    text = "targets:\n  inline:\n    - {SSX: 0, SSY: 0}\n    - {SSX: 1.5}\n"
    with pytest.raises(ConfigError, match="both SSX and SSY") as info:
        load_acquire_config(write(tmp_path, "a.yaml", text))
    assert (info.value.line, info.value.field) == (4, "targets.inline[1]")


def test_a_bad_set_line_names_the_targets_file_and_line(area: Path) -> None:
    write(
        area.parent, "L03_tgts.txt", TARGETS.replace("_set groupSize = 3", "_set groupSize = 2.5")
    )
    with pytest.raises(ConfigError, match="whole number") as info:
        resolve_run(load_acquire_config(area))
    assert info.value.path == area.parent.resolve() / "L03_tgts.txt"
    assert (info.value.line, info.value.field) == (3, "groupSize")


def test_an_unknown_set_name_is_refused(area: Path) -> None:
    write(area.parent, "L03_tgts.txt", "_set grupSize = 3\n\n" + TARGETS)
    with pytest.raises(ConfigError, match="unknown setting 'grupSize'") as info:
        resolve_run(load_acquire_config(area))
    assert info.value.line == 1


def test_a_missing_targets_file_is_named_with_the_yaml_line(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", "settings:\n  step: 2\ntargets:\n  file: nowhere_tgts.txt\n")
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_acquire_config(path)
    assert (info.value.path, info.value.line, info.value.field) == (path, 4, "targets.file")


def test_targets_are_required_and_given_one_way(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="targets"):
        load_acquire_config(write(tmp_path, "a.yaml", "strategy: pace\n"))
    both = "targets:\n  file: a.txt\n  inline: [{SSX: 0, SSY: 0}]\n"
    with pytest.raises(ConfigError, match="either 'file'"):
        load_acquire_config(write(tmp_path, "b.yaml", both))
    with pytest.raises(ConfigError, match="strategy"):
        load_acquire_config(write(tmp_path, "c.yaml", "targets: [{SSX: 0, SSY: 0}]\nstrategy: x\n"))


def test_inline_targets_by_stage_position(tmp_path: Path) -> None:
    text = """\
targets:
  - {stageX: 100, stageY: 50}
  - {stageX: 102, stageY: 47, skip: true}
  - {ssx_um: 1.0, ssy_um: 2.0}
area: {x_um: 100.5, y_um: 50.5}
"""
    config = load_acquire_config(write(tmp_path, "a.yaml", text))
    targets, overrides = resolve_targets(config)
    assert overrides == {}
    assert [t.ss_um for t in targets] == [(0, 0), (2, -3), (1, 2)]
    assert targets[1].skip and targets[1].stage_x_um == 102
    matrix = np.array([[0.0, 1.0], [-1.0, 0.0]])
    rotated, _ = resolve_targets(config, stage_to_specimen=matrix)
    assert rotated[1].ss_um == (-3, -2)
    run = resolve_run(config)
    assert run.area_stage_um == (100.5, 50.5)
    assert run.warnings == []


def test_impossible_settings_are_refused_naming_the_yaml(tmp_path: Path) -> None:
    text = "targets: [{SSX: 0, SSY: 0}]\nsettings:\n  startTilt: 10\n  maxTilt: 72\n"
    path = write(tmp_path, "a.yaml", text)
    with pytest.raises(ImpossibleSettingsError) as info:
        resolve_run(load_acquire_config(path))
    assert str(info.value).startswith(f"{path}: impossible settings")
    assert len(info.value.problems) == 2
    assert "maxTilt = 72° is beyond the stage tilt limit of ±69.9°" in info.value.problems


def test_twin_limits_come_from_the_embedded_twin_config(tmp_path: Path) -> None:
    text = """\
targets: [{SSX: 0, SSY: 0}]
microscope:
  backend: twin
  twin:
    seed: 7
    stage: {profile: side-entry}
    optics: {image_shift_limit_um: 12}
"""
    config = load_acquire_config(write(tmp_path, "a.yaml", text))
    assert config.microscope.twin.seed == 7
    assert microscope_limits(config) == (60.0, 12.0)


def test_the_resolved_configuration_round_trips(area: Path) -> None:
    config = load_acquire_config(area)
    again = AcquireConfig.model_validate(yaml.safe_load(dump_config(config)))
    assert again.settings == config.settings and again.targets == config.targets
