"""Text inputs from people and scope PCs: latin-1 bytes, huge numbers, directories.

Each case was found by fuzzing or by a new user; each must give a typed error naming the file
(and the line where there is one), or be read correctly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tomopilot.acquisition.plan.run_config import load_acquire_config, resolve_run
from tomopilot.core.config import ConfigModel, load_config
from tomopilot.core.errors import ConfigError
from tomopilot.io.navigator import NavigatorFormatError, read_nav
from tomopilot.io.pacetomo_targets import TargetsFormatError, read_targets_file
from tomopilot.targeting.nav_items import nav_items

NAV = """AdocVersion = 2.00
LastSavedAs = C:\\data\\nav.nav

[Item = 1]
Color = 0
StageXYZ = 10.0 20.0 0.0
NumPts = 1
Regis = 1
Type = 0
GroupID = 7
DrawnID = 3
PtsX = 10.0
PtsY = 20.0
"""


class _Small(ConfigModel):
    count: int = 0
    note: str = ""


@pytest.mark.parametrize(
    ("key", "value"),
    [("NumPts", "9" * 400), ("GroupID", "9" * 400), ("GroupID", "9" * 5000), ("DrawnID", "b")],
)
def test_navigator_bad_integers_name_file_and_line(tmp_path: Path, key: str, value: str) -> None:
    lines = NAV.splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.startswith(f"{key} ="))
    lines[line - 1] = f"{key} = {value}"
    path = tmp_path / "nav.nav"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(NavigatorFormatError) as caught:
        read_nav(path)
    assert caught.value.path == path and caught.value.line == line
    assert key in caught.value.message


def test_navigator_in_latin1_reads(tmp_path: Path) -> None:
    path = tmp_path / "nav.nav"
    path.write_bytes((NAV + "Note = 2 \xb5m\n").encode("latin-1"))
    assert nav_items(read_nav(path))[0].note == "2 µm"


def test_navigator_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(NavigatorFormatError, match="is a directory"):
        read_nav(tmp_path)


TARGETS = "_set maxDefocus = -4.5\n\n_tgt = 001\ntgtfile = a.mrc\nSSX = 0\nSSY = 0\n"


def test_targets_file_with_latin1_mu_reads(tmp_path: Path) -> None:
    path = tmp_path / "L1_tgts.txt"
    path.write_bytes(TARGETS.replace("a.mrc", "a\xb5.mrc").encode("latin-1"))
    assert read_targets_file(path).targets[0].get("tgtfile") == "aµ.mrc"


def test_targets_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(TargetsFormatError, match="is a directory"):
        read_targets_file(tmp_path)


def test_targets_huge_number_is_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "L1_tgts.txt"
    path.write_text(TARGETS.replace("SSX = 0", "SSX = " + "9" * 5000))
    with pytest.raises(TargetsFormatError) as caught:
        read_targets_file(path)
    assert caught.value.line == 5


def test_yaml_with_latin1_mu_loads(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_bytes("# defocus in \xb5m\nnote: 2 \xb5m\n".encode("latin-1"))
    assert load_config(path, _Small).note == "2 µm"


def test_yaml_integer_of_5000_digits_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("note: x\ncount: " + "9" * 5000 + "\n")
    with pytest.raises(ConfigError, match="not valid YAML") as caught:
        load_config(path, _Small)
    assert caught.value.line == 2


def test_yaml_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path, _Small)


def test_acquire_config_with_latin1_targets_file(tmp_path: Path) -> None:
    (tmp_path / "L1_tgts.txt").write_bytes(TARGETS.replace("a.mrc", "a\xb5.mrc").encode("latin-1"))
    config = tmp_path / "acquire.yaml"
    config.write_bytes("# \xb5m\ntargets:\n  file: L1_tgts.txt\n".encode("latin-1"))
    run = resolve_run(load_acquire_config(config))
    assert len(run.targets) == 1


def test_acquire_config_targets_directory_is_named(tmp_path: Path) -> None:
    (tmp_path / "L1_tgts.txt").mkdir()
    config = tmp_path / "acquire.yaml"
    config.write_text("targets:\n  file: L1_tgts.txt\n")
    with pytest.raises(ConfigError, match="is a directory"):
        load_acquire_config(config)
