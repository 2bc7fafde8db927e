"""``tomopilot sem-run``: the example SerialEM-style script, unchanged, on the twin.

It picks three targets on a View map, realigns to the first, and runs a grouped dose-symmetric
series of 7 tilts on each by image shift, with tracking and focus. The files are read back with
the field's readers, and the ground-truth report shows what its tracking really achieved.
"""

from __future__ import annotations

from pathlib import Path

import mdocfile
import mrcfile
import numpy as np
import pytest
from typer.testing import CliRunner

import tomopilot.examples
from tomopilot.cli.main import app
from tomopilot.instrument.twin_serialem.truth_report import (
    ScriptTruth,
    assess_script_run,
    read_run_summary,
)
from tomopilot.io.navigator import read_nav

EXAMPLES = Path(tomopilot.examples.__file__).parent
SCRIPT = EXAMPLES / "parallel_tomo_serialem.py"
CONFIG = EXAMPLES / "semrun_twin.yaml"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("semrun") / "run"
    result = CliRunner().invoke(
        app,
        ["sem-run", str(SCRIPT), "--config", str(CONFIG), "--out", str(out)],
        env={"COLUMNS": "160"},
    )
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.fixture(scope="module")
def truth(demo_run: tuple[Path, str]) -> ScriptTruth:
    return assess_script_run(demo_run[0])


def test_the_script_writes_stacks_mdocs_and_a_nav_the_field_reads(
    demo_run: tuple[Path, str],
) -> None:
    out, output = demo_run
    assert "finished" in output and "Picked 3 targets" in output
    tilts_expected = [0.0, 3.0, 6.0, -3.0, -6.0, 9.0, -9.0]
    for number in (1, 2, 3):
        stack = out / f"L1_ts_{number:03d}.mrc"
        with mrcfile.open(stack, permissive=False) as mrc:
            assert mrc.data.shape == (7, 256, 256)
            assert float(mrc.voxel_size.x) == pytest.approx(32.0)
        table = mdocfile.read(stack.with_name(stack.name + ".mdoc"))
        assert list(table["TiltAngle"]) == pytest.approx(tilts_expected, abs=1e-3)
        # per-target dose accumulators: 3 e/Å² per Record (the dose SerialEM believes)
        prior = np.asarray(table["PriorRecordDose"], float)
        assert prior[0] == 0.0 and np.diff(prior) == pytest.approx([3.0] * 6)
        text = stack.with_name(stack.name + ".mdoc").read_text()
        assert text.count("SpecimenShift = ") == 7
    doc = read_nav(out / "L1.nav")
    items = list(doc.items())
    kinds = [item.get("Type") for item in items]
    assert kinds == ["2", "0", "0", "0"]  # the View map, then the three targets drawn on it
    map_id = items[0].get("MapID")
    assert all(item.get("DrawnID") == map_id for item in items[1:])
    assert all(item.get("Acquire") == "1" for item in items[1:])
    assert (out / "L1_maps.mrc").is_file() and items[0].get("MapFile") == str(out / "L1_maps.mrc")


def test_ground_truth_shows_the_script_tracking(
    truth: ScriptTruth, demo_run: tuple[Path, str]
) -> None:
    series = {s.file: s for s in truth.series}
    tracked = [series[f"L1_ts_{n:03d}.mrc"] for n in (1, 2, 3)]
    assert all(s.intended.startswith("Navigator item") for s in tracked)
    assert len({s.intended for s in tracked}) == 3
    # the first image of each series lands on its picked point (Realign to Item, image shift)
    for s in tracked:
        assert s.images[0].error_nm < 60.0
        assert s.images[0].tilt_deg == pytest.approx(0.0, abs=0.2)
    # Target 1 is the tracking target: its own Records carry each tilt's stage error (a
    # PACEtomo-style series takes no extra tracking shot) and the reversal jump at +9°.
    assert 120.0 < tracked[0].tracking_rms_nm < 300.0
    assert tracked[0].tracking_max_nm > 300.0
    # The others follow target 1's correction and their own alignment.
    for s in tracked[1:]:
        assert s.tracking_rms_nm < 80.0
    # Defocus: flat-specimen prediction on a lamella with 10° pretilt, refocused per group.
    for s in tracked:
        assert s.defocus_rms_um < 1.0
    assert max(s.defocus_rms_um for s in tracked) > 0.2  # the model's height error shows
    # dose: 7 Records of 3 e/Å² nominal (the gun's emission decays a little: the truth is
    # lower), plus the neighbours' and maps' share
    for s in tracked:
        assert 19.0 < s.dose_at_point_e_a2 < 30.0
        assert sum(i.dose_e_a2 for i in s.images) == pytest.approx(21.0, rel=0.05)
    assert truth.dose_by_area["Record"] == pytest.approx(21 * 3.0, rel=0.05)
    _, output = demo_run
    assert "ground truth of the script's images" in output and "L1_ts_002.mrc" in output


def test_report_command_prints_the_script_truth(demo_run: tuple[Path, str]) -> None:
    out, _ = demo_run
    result = CliRunner().invoke(app, ["report", str(out), "--per-image"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "Navigator item" in result.output and "Record" in result.output


FAILING = """\
import serialem as sem

def take(n):
    sem.OpenNewFile("partial.mrc")
    for i in range(n):
        sem.R()
        sem.S()
    sem.CloseFile()
    return 1 / 0  # the script's own bug

take(2)
"""


def test_a_failing_script_shows_its_own_traceback_and_keeps_its_files(tmp_path: Path) -> None:
    script = tmp_path / "broken.py"
    script.write_text(FAILING)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["sem-run", str(script), "--config", str(CONFIG), "--out", str(out), "--no-report"],
    )
    assert result.exit_code == 1
    text = result.output
    assert "ZeroDivisionError" in text
    assert f'File "{script}", line 9, in take' in text
    assert f'File "{script}", line 11' in text
    assert "twin_serialem" not in text and "sem_run.py" not in text  # none of our frames
    with mrcfile.open(out / "partial.mrc", permissive=False) as mrc:
        assert mrc.data.shape[0] == 2
    summary = read_run_summary(out)
    assert summary is not None and summary["status"] == "failed"
    assert summary["commands"] == {"CloseFile": 1, "OpenNewFile": 1, "R": 2, "S": 2}
    assert (
        "ZeroDivisionError" in summary["traceback"] and "twin_serialem" not in summary["traceback"]
    )
    assert len(mdocfile.read(out / "partial.mrc.mdoc")) == 2


def test_a_bad_command_in_a_script_names_the_command_and_line(tmp_path: Path) -> None:
    script = tmp_path / "bad.py"
    script.write_text("import serialem\nserialem.TiltTo(10)\nserialem.MoveStageTo('x', 1)\n")
    result = CliRunner().invoke(
        app,
        [
            "sem-run",
            str(script),
            "--config",
            str(CONFIG),
            "--out",
            str(tmp_path / "r"),
            "--no-report",
        ],
    )
    assert result.exit_code == 1
    assert "serialem.SEMerror" in result.output
    assert "Argument 1 must be a number, not 'x' in script statement: MoveStageTo x 1" in (
        " ".join(result.output.split())
    )
    assert f'File "{script}", line 3' in result.output


def test_exit_ends_quietly_dialogs_use_the_answers_and_bad_files_are_named(tmp_path: Path) -> None:
    script = tmp_path / "ask.py"
    script.write_text(
        "import time\n"
        "import serialem as sem\n"
        "sem.ResetClock()\n"
        "time.sleep(3600)  # waits on the microscope's clock, not ours\n"
        "sem.Echo('waited', sem.ReportClock())\n"
        "n = sem.EnterDefaultedNumber(2, -1, 'How many targets?')\n"
        "sem.Echo('targets', n)\n"
        "if sem.YesNoBox('Stop now?'):\n"
        "    sem.Exit()\n"
        "sem.Echo('not reached')\n"
    )
    answers = tmp_path / "answers.yaml"
    answers.write_text("How many targets: 4\nStop now: yes\nNever asked: 1\n")
    out = tmp_path / "run"
    args = ["sem-run", str(script), "--config", str(CONFIG), "--out", str(out), "--no-report"]
    result = CliRunner().invoke(app, [*args, "--answers", str(answers)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "targets 4" in result.output and "not reached" not in result.output
    assert "waited 3600" in result.output
    assert "ended by Exit" in result.output
    assert "'How many targets?' -> 4 (answers file)" in result.output
    assert "no dialog asked for the answer 'Never asked'" in result.output
    again = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert again.exit_code == 1 and "already holds a script run" in again.output
    answers.write_text("[unclosed\n")
    bad_args = ["sem-run", str(script), "--config", str(CONFIG), "--out", str(tmp_path / "r2")]
    bad = CliRunner().invoke(app, [*bad_args, "--answers", str(answers)], env={"COLUMNS": "300"})
    assert bad.exit_code == 1 and "answers.yaml" in bad.output and "Traceback" not in bad.output


AT_ITEMS = """\
import serialem as sem
acquiring, index = sem.ReportIfNavAcquiring()
sem.ReportNavItem()
x = sem.ReportStageXYZ()[0]
sem.Echo("item", sem.GetVariable("navLabel"), "acquiring", int(acquiring), "x", round(x, 1))
sem.V()
if sem.GetVariable("navLabel") == "T5":
    sem.EndAcquireAtItems()
"""


def test_acquire_at_items_runs_the_script_at_each_marked_item(tmp_path: Path) -> None:
    from tomopilot.core.config import load_config
    from tomopilot.instrument.twin import TwinConfig, TwinMicroscope
    from tomopilot.instrument.twin_serialem import make_module

    maker = make_module(TwinMicroscope(load_config(CONFIG, TwinConfig)), directory=tmp_path)
    for x in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0):
        index = int(maker.AddStagePosAsNavPoint(x, 0.0, 0.0))
        maker.ChangeItemLabel(index, f"T{index}")
        maker.SetItemAcquire(index, 0 if x == 2.0 else 1)
    maker.SaveNavigator("targets.nav")
    script = tmp_path / "per_item.py"
    script.write_text(AT_ITEMS)
    out = tmp_path / "run"
    args = ["sem-run", str(script), "--config", str(CONFIG), "--out", str(out), "--no-report"]
    result = CliRunner().invoke(
        app,
        [*args, "--nav", str(tmp_path / "targets.nav"), "--acquire-at-items"],
        env={"COLUMNS": "160"},
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("item ")]
    assert lines == [
        "item T1 acquiring 1 x 1",
        "item T3 acquiring 1 x 3",
        "item T4 acquiring 1 x 4",
        "item T5 acquiring 1 x 5",  # ends the acquisition: T6 is not visited
    ]
    assert "finished at 4 items" in result.output
    no_nav = ["sem-run", str(script), "--config", str(CONFIG), "--out", str(tmp_path / "r2")]
    refused = CliRunner().invoke(app, [*no_nav, "--acquire-at-items"], env={"COLUMNS": "160"})
    assert refused.exit_code == 2 and "needs a Navigator file (--nav)" in refused.output
