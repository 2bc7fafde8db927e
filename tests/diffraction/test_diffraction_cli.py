"""``tomopilot diffraction``: convert, tia2mrc, mrc2smv and demo, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tia_writer import write_tia
from typer.testing import CliRunner

from tomopilot.cli.main import app
from tomopilot.io.smv import read_smv

runner = CliRunner()

GEOMETRY = [
    "--voltage-kv",
    "200",
    "--camera-length-mm",
    "730",
    "--pixel-size-mm",
    "0.028",
]


def _series(folder: Path, count: int = 3, pattern: str = "ed_{:03d}.bin") -> list[Path]:
    rng = np.random.default_rng(1)
    paths = []
    for number in range(1, count + 1):
        frame = rng.integers(-150, 2000, size=(8, 10)).astype(np.int32)
        paths.append(write_tia(folder / pattern.format(number), frame))
    return paths


def test_convert_writes_mrc_and_smv_per_frame_with_osc_angles(tmp_path: Path) -> None:
    paths = _series(tmp_path / "tia")
    out = tmp_path / "out"
    args = ["diffraction", "convert", *map(str, paths), "--out", str(out), *GEOMETRY]
    args += ["--osc-range-deg", "0.3", "--start-angle-deg", "-45"]

    result = runner.invoke(app, args)

    assert result.exit_code == 0, result.output
    for index, path in enumerate(paths):
        assert (out / f"{path.stem}.mrc").is_file()
        image = read_smv(out / f"{path.stem}.img")
        assert image.number("OSC_START") == pytest.approx(-45 + index * 0.3, abs=1e-9)
        assert image.number("OSC_RANGE") == 0.3
    summary = json.loads((out / "convert_summary.json").read_text())
    assert summary["leginon_offset"] == -min(f["minimum"] for f in summary["frames"])
    assert "LEGINON_OFFSET" in result.output
    assert "IMAGE_PEDESTAL" in result.output


def test_glob_inputs_are_sorted_numerically(tmp_path: Path) -> None:
    _series(tmp_path / "tia", count=11, pattern="ed_{}.bin")  # ed_1 ... ed_11, no zero padding
    out = tmp_path / "out"
    args = ["diffraction", "convert", str(tmp_path / "tia" / "ed_*.bin"), "--out", str(out)]
    args += [*GEOMETRY, "--osc-range-deg", "0.5", "--start-angle-deg", "0"]

    result = runner.invoke(app, args)

    assert result.exit_code == 0, result.output
    assert read_smv(out / "ed_10.img").number("OSC_START") == 4.5
    assert read_smv(out / "ed_2.img").number("OSC_START") == 0.5


def test_rotation_speed_and_exposure_give_the_oscillation(tmp_path: Path) -> None:
    paths = _series(tmp_path / "tia", count=2)
    out = tmp_path / "out"
    args = ["diffraction", "convert", *map(str, paths), "--out", str(out), *GEOMETRY]
    args += ["--start-angle-deg", "10", "--rotation-speed-deg-s", "0.6", "--exposure-s", "0.5"]

    result = runner.invoke(app, args)

    assert result.exit_code == 0, result.output
    image = read_smv(out / "ed_002.img")
    assert (image.number("OSC_START"), image.number("OSC_RANGE")) == (10.3, 0.3)
    assert image.number("TIME") == 0.5


def test_truncated_input_fails_clearly_and_writes_nothing(tmp_path: Path) -> None:
    paths = _series(tmp_path / "tia")
    paths[2].write_bytes(paths[2].read_bytes()[:-10])
    out = tmp_path / "out"
    args = ["diffraction", "convert", *map(str, paths), "--out", str(out), *GEOMETRY]
    args += ["--osc-range-deg", "0.3", "--start-angle-deg", "0"]

    result = runner.invoke(app, args)

    assert result.exit_code == 1
    assert "error:" in result.output
    assert "ed_003.bin" in result.output
    assert "truncated" in result.output
    assert not out.exists()


def test_overwrite_needs_force_and_dry_run_writes_nothing(tmp_path: Path) -> None:
    paths = _series(tmp_path / "tia")
    out = tmp_path / "out"
    args = ["diffraction", "convert", *map(str, paths), "--out", str(out), *GEOMETRY]
    args += ["--osc-range-deg", "0.3", "--start-angle-deg", "0"]

    dry = runner.invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "dry run" in dry.output
    assert not out.exists()

    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(app, args)
    assert again.exit_code == 1
    assert "already exist" in again.output
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0


def test_tia2mrc_then_mrc2smv_carries_the_metadata(tmp_path: Path) -> None:
    paths = _series(tmp_path / "tia")
    mrc_dir, smv_dir = tmp_path / "mrc", tmp_path / "smv"
    first = runner.invoke(
        app,
        [
            *("diffraction", "tia2mrc", *map(str, paths), "--out", str(mrc_dir), *GEOMETRY),
            *("--start-angle-deg", "-30", "--osc-range-deg", "0.2", "--binning", "2"),
        ],
    )
    assert first.exit_code == 0, first.output
    assert (mrc_dir / "tia2mrc_summary.json").is_file()

    second = runner.invoke(
        app,
        [
            *("diffraction", "mrc2smv", str(mrc_dir / "*.mrc"), "--out", str(smv_dir)),
            *("--beam-x-px", "4", "--beam-y-px", "3", "--gain", "26"),
        ],
    )
    assert second.exit_code == 0, second.output
    image = read_smv(smv_dir / "ed_003.img")
    assert image.number("OSC_START") == pytest.approx(-29.6, abs=1e-9)
    assert image.header["BIN"] == "2x2"
    assert image.number("BEAM_CENTER_X") == pytest.approx(3 * 0.028)  # row (slow axis)
    assert image.number("BEAM_CENTER_Y") == pytest.approx(4 * 0.028)  # column (fast axis)


def test_missing_metadata_points_at_the_option(tmp_path: Path) -> None:
    paths = _series(tmp_path / "tia")
    runner.invoke(app, ["diffraction", "tia2mrc", *map(str, paths), "--out", str(tmp_path / "m")])
    result = runner.invoke(
        app, ["diffraction", "mrc2smv", str(tmp_path / "m" / "*.mrc"), "--out", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "voltage_kv" in result.output
    assert "--voltage-kv" in result.output


def test_invalid_setting_names_the_field(tmp_path: Path) -> None:
    paths = _series(tmp_path / "tia", count=1)
    result = runner.invoke(
        app,
        [
            "diffraction",
            "tia2mrc",
            str(paths[0]),
            "--out",
            str(tmp_path / "m"),
            "--voltage-kv",
            "-200",
        ],
    )
    assert result.exit_code == 1
    assert "voltage_kv" in result.output


def test_unmatched_glob_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["diffraction", "tia2mrc", str(tmp_path / "nothing_*.bin"), "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "no file matches" in result.output


def test_demo_simulates_writes_tia_and_converts(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = runner.invoke(
        app, ["diffraction", "demo", "--out", str(out), "--frames", "3", "--size", "64"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "tia").iterdir()) == [
        f"diffraction_{i:03d}.bin" for i in (1, 2, 3)
    ]
    image = read_smv(out / "converted" / "diffraction_003.img")
    assert image.number("LEGINON_OFFSET") == 2000.0
    assert image.number("OSC_START") == -29.0
    assert "dials.import" in result.output
    assert runner.invoke(app, ["diffraction", "demo", "--out", str(out)]).exit_code == 1
