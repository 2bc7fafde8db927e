"""The ``tomopilot targets`` and ``tomopilot geometry`` commands."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from tomopilot.cli.main import app
from tomopilot.io.navigator import read_nav
from tomopilot.targeting import find_item, load_targets

runner = CliRunner()


def test_manual_targets_with_nav_items(tmp_path: Path, real_data: Path) -> None:
    out = tmp_path / "L1_tgts.txt"
    nav_out = tmp_path / "L1.nav"
    nav = real_data / "nav" / "pyem_tutorial1_nav1.nav"
    result = runner.invoke(
        app,
        [
            "targets",
            "manual",
            str(out),
            "--nav",
            str(nav),
            "--group",
            "cell1_pt1",
            "--nav-out",
            str(nav_out),
        ],
    )
    assert result.exit_code == 0, result.output
    targets = load_targets(out)
    assert len(targets.targets) == 20 and targets.targets[3].ts_file == "L1_ts_004.mrc"
    doc = read_nav(nav_out)
    assert find_item(doc, "001").note == "L1_tgts.txt"
    assert find_item(doc, "cell1_pt1").stage_xyz_um == find_item(doc, "001").stage_xyz_um
    assert "overlap" in result.output  # some of the 20 points are closer than the beam


def test_pattern_dry_run_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "P_tgts.txt"
    args = [
        "targets",
        "pattern",
        str(out),
        "--vec-a",
        "2.5,0.3",
        "--vec-b",
        "-0.3,2.5",
        "--size",
        "2",
    ]
    result = runner.invoke(app, [*args, "--dry-run"])
    assert result.exit_code == 0 and "_set vecA0 = 2.5" in result.output and not out.exists()
    assert runner.invoke(app, args).exit_code == 0
    assert len(load_targets(out).targets) == 25
    assert runner.invoke(app, args).exit_code == 1  # exists: needs --force
    assert runner.invoke(app, ["geometry", "suggest", str(out)]).exit_code == 0
    assert len(load_targets(out).geo_points) == 5


def test_editing_commands(tmp_path: Path) -> None:
    out = tmp_path / "E_tgts.txt"
    runner.invoke(app, ["targets", "manual", str(out), "--shift", "3,0", "--shift", "0,4"])
    assert runner.invoke(app, ["targets", "skip", str(out), "2"]).exit_code == 0
    assert load_targets(out).targets[1].skip
    assert runner.invoke(app, ["targets", "track", str(out), "3"]).exit_code == 0
    assert [t.ss_um for t in load_targets(out).targets] == [(0.0, 0.0), (0.0, -4.0), (3.0, -4.0)]
    assert runner.invoke(app, ["targets", "reorder", str(out), "1,3,2"]).exit_code == 0
    assert (
        runner.invoke(app, ["targets", "set", str(out), "pretilt=-9", "previewAli=true"]).exit_code
        == 0
    )
    targets = load_targets(out)
    assert targets.settings == {"pretilt": -9.0} and targets.bool_settings == {"previewAli": True}
    shown = runner.invoke(app, ["targets", "show", str(out)])
    assert shown.exit_code == 0 and "_set pretilt = -9" in shown.output
    assert runner.invoke(app, ["targets", "check", str(out)]).exit_code == 0


def test_copy_to_acq_and_polygon(tmp_path: Path, real_data: Path) -> None:
    nav = tmp_path / "sort.nav"
    shutil.copy(real_data / "nav" / "pyem_sort.nav", nav)
    out = tmp_path / "G_tgts.txt"
    result = runner.invoke(
        app, ["targets", "polygon", str(nav), "206", str(out), "--beam-diameter", "0.8"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "sort_targets.nav").exists()
    assert nav.read_bytes() == (real_data / "nav" / "pyem_sort.nav").read_bytes()
    result = runner.invoke(app, ["targets", "copy", str(out), str(nav), "176"])
    assert result.exit_code == 0, result.output
    copies = sorted(p.name for p in tmp_path.glob("G_tgts_p*.txt"))
    assert copies == ["G_tgts_p01.txt", "G_tgts_p02.txt", "G_tgts_p03.txt", "G_tgts_p04.txt"]


def test_bad_inputs_name_file_and_line_and_write_nothing(tmp_path: Path) -> None:
    bad_nav = tmp_path / "bad.nav"
    bad_nav.write_text("AdocVersion = 2.00\n\n[Item = 1]\nType = 1\nNumPts = 3\nPtsX = 1 2\n")
    out = tmp_path / "X_tgts.txt"
    result = runner.invoke(app, ["targets", "polygon", str(bad_nav), "1", str(out)])
    assert result.exit_code == 1 and f"{bad_nav}:6" in result.output.replace("\n", "")
    assert not out.exists() and not (tmp_path / "bad_targets.nav").exists()
    bad_tgts = tmp_path / "B_tgts.txt"
    text = "_tgt = 001\nSSX = 0\nSSY = zero\n"
    bad_tgts.write_text(text)
    result = runner.invoke(app, ["targets", "skip", str(bad_tgts), "1"])
    assert result.exit_code == 1 and f"{bad_tgts}:3" in result.output.replace("\n", "")
    assert bad_tgts.read_text() == text


def test_geometry_fit_writes_pretilt(tmp_path: Path) -> None:
    readings = tmp_path / "geo.txt"
    x = np.array([0.0, 4.0, -4.0, 3.0, -3.0])
    y = np.array([0.0, 3.0, 3.0, -4.0, -2.0])
    defocus = -3.0 + math.tan(math.radians(12.0)) * y
    readings.write_text(
        "# x y defocus\n" + "\n".join(f"{a} {b} {c}" for a, b, c in zip(x, y, defocus, strict=True))
    )
    tgts = tmp_path / "F_tgts.txt"
    runner.invoke(app, ["targets", "manual", str(tgts), "--shift", "1,1"])
    result = runner.invoke(app, ["geometry", "fit", str(readings), "--write-to", str(tgts)])
    assert result.exit_code == 0 and "pretilt 12.00°" in result.output
    assert load_targets(tgts).settings["pretilt"] == 12.0
    readings.write_text("0 0 1\n1 2\n")
    result = runner.invoke(app, ["geometry", "fit", str(readings)])
    assert result.exit_code == 1 and f"{readings}:2" in result.output.replace("\n", "")


def test_geometry_offset_on_the_twin(tmp_path: Path) -> None:
    result = runner.invoke(app, ["geometry", "offset", "--no-apply"])
    assert result.exit_code == 0 and "tilt-axis offset" in result.output
    result = runner.invoke(app, ["geometry", "offset"], input="y\n")
    assert result.exit_code == 0 and "applied" in result.output
