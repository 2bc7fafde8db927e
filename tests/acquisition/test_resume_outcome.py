"""A resumed run does what the uninterrupted run does: same images, same tracking.

A crash is simulated in process after the twin took a Record and before the engine committed
it (the exposure in flight); a new engine on a new twin (rebuilt from its command log, as after
a real crash) continues with ``resume=True``. The outcome is compared with the uninterrupted
run of the same configuration and seed against the twin's ground truth, and the resume's own
steps (the realignment Preview, the tilts, the reference images) are checked in the twin's
command log and the strategy's state.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from acq_helpers import write_config
from typer.testing import CliRunner

from tomopilot.acquisition.engine import AcquisitionEngine
from tomopilot.acquisition.output.journal import replay_journal
from tomopilot.acquisition.plan.run_config import load_acquire_config
from tomopilot.acquisition.quality import assess_run_dir
from tomopilot.acquisition.run import start_run
from tomopilot.cli.main import app

TARGETS = [{"SSX": 0.0, "SSY": 0.0}, {"SSX": 2.0, "SSY": 0.0}, {"SSX": -2.0, "SSY": 1.8}]
SETTINGS = {"minTilt": -15, "maxTilt": 15, "maxDefocus": -5, "minDefocus": -3}
# Records of the whole camera binned to 256² (32 Å pixels, an 0.8 µm field): tracking works
# (pace ~75 nm RMS); in a smaller field it is chaotic and any perturbation changes the outcome.
TWIN = {
    "specimen": {"kind": "lamella", "thickness_nm": 200, "pretilt_deg": 10},
    "presets": {
        "record": {"camera_area_px": None, "binning": 16},
        "preview": {"camera_area_px": None, "binning": 16, "exposure_s": 0.5},
    },
}


class _Crash(BaseException):
    """The process dies (not an exception the engine could handle)."""


def _config(folder: Path, strategy: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_config(
        folder, strategy=strategy, seed=11, targets=TARGETS, settings=SETTINGS, twin=TWIN
    )


def _engine(config: Path) -> AcquisitionEngine:
    engine, _ = start_run(load_acquire_config(config))
    return engine


def _crash_after(engine: AcquisitionEngine, commits: int) -> None:
    """Run until the Record after ``commits`` commits was taken, then die before saving it."""
    save = engine.records.save
    count = [0]

    def dying_save(*args: Any, **kwargs: Any) -> int:
        count[0] += 1
        if count[0] > commits:
            raise _Crash
        return save(*args, **kwargs)

    engine.records.save = dying_save  # type: ignore[method-assign]
    with pytest.raises(_Crash):
        engine.run()


def _outcome(run_dir: Path) -> tuple[dict[int, list[int]], float, dict[str, float]]:
    """Every target's tilt steps, the tracking RMS and the run's time ledger."""
    journal = replay_journal(run_dir / "L1.journal.jsonl")
    assert journal.finished is not None and journal.finished["status"] == "finished"
    images: dict[int, list[int]] = {}
    for commit in journal.committed:
        images.setdefault(int(commit["target"]), []).append(int(commit["step_index"]))
    rms = assess_run_dir(run_dir).pooled()["tracking_rms_nm"]
    ledger = dict(journal.finished["time_ledger_s"])
    return {k: sorted(v) for k, v in sorted(images.items())}, rms, ledger


def _uninterrupted(
    strategy: str, root: Path
) -> tuple[dict[int, list[int]], float, dict[str, float]]:
    config = _config(root / "uninterrupted", strategy)
    assert _engine(config).run().status == "finished"
    return _outcome(config.parent / "run")


def _commands(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "twin_commands.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize(("strategy", "commits"), [("pace", 10), ("fused", 20)])
def test_a_resumed_run_takes_every_image_and_tracks_as_well(
    tmp_path: Path, strategy: str, commits: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="tomopilot.io.sort_by_tilt"):
        reference_images, reference_rms, reference_ledger = _uninterrupted(strategy, tmp_path)
    # the uninterrupted run's sorts are no recoveries
    assert not any("sort by tilt interrupted" in r.getMessage() for r in caplog.records)
    config = _config(tmp_path / "resumed", strategy)
    run_dir = tmp_path / "resumed" / "run"
    crashed = _engine(config)
    _crash_after(crashed, commits)
    crashed_at_s = crashed.scope.clock.now_s()
    last_kept_s = replay_journal(run_dir / "L1.journal.jsonl").ledger_time_s
    held = {k: v.data for k, v in getattr(crashed.strategy, "held_images", dict)().items()}
    journal_path = run_dir / "L1.journal.jsonl"
    with journal_path.open("ab") as handle:  # killed in the middle of a journal write
        handle.write(b'{"kind":"note","text":"torn by the')
    if strategy == "pace":  # the report of a killed run copes with the torn line
        result = CliRunner().invoke(app, ["report", str(run_dir)])
        assert result.exit_code == 0, result.output
    before = len(_commands(run_dir))
    engine = _engine(config)
    restored: dict[str, Any] = {}
    recover = engine._recover

    def spy(*args: Any) -> None:
        restored.update(getattr(engine.strategy, "held_images", dict)())
        recover(*args)

    engine._recover = spy  # type: ignore[method-assign]
    assert engine.run(resume=True).status == "finished"
    images, rms, ledger = _outcome(run_dir)
    # Every tilt image of the uninterrupted run, the one in flight retaken, none twice.
    assert images == reference_images
    assert rms <= 1.1 * reference_rms, (rms, reference_rms)

    # The ledger covers the whole run, the crashed session included: all the microscope's time
    # from the run's start to its end, the time from the last commit to the crash (the Record
    # in flight) booked as interrupted, and the same Record exposure time as the uninterrupted
    # run (the lost Record's exposure is in the interruption, its retake in the exposures).
    start_s = float(replay_journal(journal_path).run["start_s"])  # type: ignore[index]
    assert sum(ledger.values()) == pytest.approx(engine.scope.clock.now_s() - start_s, abs=0.02)
    assert last_kept_s is not None and crashed_at_s > last_kept_s
    assert ledger["interrupted"] == pytest.approx(crashed_at_s - last_kept_s, abs=0.002)
    assert ledger["exposure"] == pytest.approx(reference_ledger["exposure"], abs=0.002)
    assert reference_ledger["interrupted"] == 0.0

    # The torn line was cut off before the resume appended: every line is a record.
    for line in journal_path.read_bytes().splitlines():
        assert isinstance(json.loads(line), dict)

    # fused's Views of target 1 (what a lost target is searched for in) and its tracking spot's
    # last shots (what the next shot is aligned with) came back.
    fused_held = {"view:1:+", "view:1:-", "spot:1:+", "spot:1:-"}
    assert set(restored) == set(held) == (fused_held if strategy == "fused" else set())
    for key, data in held.items():
        assert (restored[key].data == data).all()

    # The stage was left at the interrupted tilt: the resume did not tilt there again (at most
    # the loop's own approach and tilt to the next step before the next Record).
    resumed = _commands(run_dir)[before:]
    first_record = next(
        i for i, c in enumerate(resumed) if c["method"] == "acquire" and c["args"] == ["Record"]
    )
    tilts = [c["args"][0] for c in resumed[:first_record] if c["method"] == "tilt_to"]
    assert len(tilts) <= 2 and len(set(tilts)) == len(tilts), tilts

    # The realignment Preview was taken at the image shift of the Record it is compared with.
    journal = replay_journal(journal_path)
    last = journal.committed[commits - 1]
    at_step = [c for c in journal.committed[:commits] if c["step_index"] == last["step_index"]]
    reference = min(at_step, key=lambda c: c["target"])
    preview = next(i for i, c in enumerate(resumed) if c["args"] == ["Preview"])
    shift = next(c for c in reversed(resumed[:preview]) if c["method"] == "set_image_shift_um")
    assert shift["args"] == pytest.approx(reference["image_shift_um"])


def test_the_resumed_reference_is_the_last_record_on_the_branch(tmp_path: Path) -> None:
    """Dose-symmetric: target 1's last Record on '-' is older than its last on '+'."""
    from tomopilot.acquisition.output.journal import RunJournal, last_section_on_branch

    journal = RunJournal(tmp_path / "j.jsonl")
    for section, (step, branch) in enumerate([(0, "start"), (1, "+"), (2, "-"), (3, "+")]):
        journal.write(
            "committed",
            target=1,
            step_index=step,
            tilt_deg=3.0 * step,
            branch=branch,
            section=section,
            exposure_id=section,
            prior_dose={},
            state={},
        )
    state = replay_journal(tmp_path / "j.jsonl")
    assert last_section_on_branch(state, 1, "-") == 2
    assert last_section_on_branch(state, 1, "+") == 3


def test_a_resume_tilts_back_when_the_stage_was_moved(tmp_path: Path) -> None:
    """Someone tilted the stage while the run was down: the resume approaches the interrupted
    tilt from below and goes there before its realignment Preview."""
    config = write_config(tmp_path, settings={"minTilt": -6, "maxTilt": 6})
    _crash_after(_engine(config), 4)
    engine = _engine(config)
    engine.scope.stage.tilt_to(20.0)
    before = len(_commands(tmp_path / "run"))
    assert engine.run(resume=True).status == "finished"
    resumed = _commands(tmp_path / "run")[before:]
    preview = next(i for i, c in enumerate(resumed) if c["args"] == ["Preview"])
    tilts = [c["args"][0] for c in resumed[:preview] if c["method"] == "tilt_to"]
    step = replay_journal(tmp_path / "run" / "L1.journal.jsonl").committed[3]["tilt_deg"]
    assert tilts[-1] == pytest.approx(step) and tilts[-2] < step  # approached from below
