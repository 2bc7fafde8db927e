"""Killing ``tomopilot acquire`` at random instants and resuming: nothing lost, nothing twice,
and the run goes on to do what the uninterrupted run does."""

from __future__ import annotations

import contextlib
import io
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import mdocfile
import mrcfile
import numpy as np
import pytest
from acq_helpers import write_config

from tomopilot.acquisition.output.journal import replay_journal
from tomopilot.acquisition.plan.run_config import load_acquire_config
from tomopilot.acquisition.quality import assess_run_dir
from tomopilot.acquisition.run import start_run

KILLS = 2  # the 30-kill run is bench/kill_resume.py
# No branch-start jump and no run-away branch. With the default jump, pace leaves every target
# ~0.4 µm off at the start of the second branch and never finds them again, so its tracking RMS
# is whatever the first re-alignment after a jump happens to catch: over six kill instants a
# resumed run measured 61-552 nm against the uninterrupted run's 412 nm. What a resume must keep
# is then not measurable; on a stage that pace can follow it is (29-43 nm against 41 nm).
TWIN = {"stage": {"branch_start_jump_um": 0.0, "runaway_probability": 0.0}}


def _start(config: Path, resume: bool) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "tomopilot", "acquire", str(config), "--no-report"]
    if resume:
        args.append("--resume")
    env = {**os.environ, "COLUMNS": "120"}
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def _check_run(run_dir: Path, kills: int) -> None:
    journal = replay_journal(run_dir / "L1.journal.jsonl")
    assert journal.finished is not None and journal.finished["status"] == "finished"
    committed = journal.committed
    keys = [(c["target"], c["step_index"]) for c in committed]
    assert len(keys) == len(set(keys)), "an exposure was duplicated"
    n_steps = 9  # ±12° in 3° steps
    tried = {(c["target"], c["step_index"]) for c in committed}
    tried |= {(int(c["target"]), int(c["step_index"])) for c in journal.lost}
    assert len(tried) == 3 * n_steps, "a target was skipped at some tilt"
    assert len(journal.lost) <= kills  # at most the exposure in flight per kill
    for target in (1, 2, 3):
        stack = run_dir / f"L1_ts_{target:03d}.mrc"
        with mrcfile.open(stack) as mrc:
            n_sections = mrc.data.shape[0]
        with contextlib.redirect_stdout(io.StringIO()):
            frame = mdocfile.read(f"{stack}.mdoc")
        mine = [c for c in committed if c["target"] == target]
        assert n_sections == len(frame) == len(mine)
        tilts = sorted(float(c["tilt_deg"]) for c in mine)
        np.testing.assert_allclose(np.sort(frame["TiltAngle"].to_numpy()), tilts, atol=0.05)


def _outcome(run_dir: Path) -> tuple[dict[int, list[int]], float]:
    """Tilt images per target (step indices) and tracking RMS against the twin's truth."""
    journal = replay_journal(run_dir / "L1.journal.jsonl")
    images: dict[int, list[int]] = {}
    for commit in journal.committed:
        images.setdefault(int(commit["target"]), []).append(int(commit["step_index"]))
    rms = assess_run_dir(run_dir).pooled()["tracking_rms_nm"]
    return {k: sorted(v) for k, v in sorted(images.items())}, rms


def _errors_by_commit(run_dir: Path) -> dict[tuple[int, int], float]:
    """Each Record's distance from its target (nm, twin truth), by (target, step index)."""
    journal = replay_journal(run_dir / "L1.journal.jsonl")
    quality = assess_run_dir(run_dir)
    out: dict[tuple[int, int], float] = {}
    for target in quality.targets:
        mine = [c for c in journal.committed if int(c["target"]) == target.target]
        for commit, error_nm in zip(mine, target.tracking_nm, strict=True):
            out[(target.target, int(commit["step_index"]))] = error_nm
    return out


def _committed_keys(run_dir: Path) -> list[tuple[int, int]]:
    journal_path = run_dir / "L1.journal.jsonl"
    if not journal_path.exists():
        return []
    journal = replay_journal(journal_path)
    return [(int(c["target"]), int(c["step_index"])) for c in journal.committed]


@pytest.mark.parametrize("strategy", ["pace", "fused"])
def test_kill_at_random_instants_then_resume(tmp_path: Path, strategy: str) -> None:
    """SIGKILL at random instants (the second during the resume), then --resume to the end:
    the files are consistent and the outcome is the uninterrupted run's."""
    settings = {"minTilt": -12, "maxTilt": 12}
    reference = tmp_path / "uninterrupted"
    reference.mkdir()
    config = write_config(reference, strategy=strategy, seed=5, settings=settings, twin=TWIN)
    engine, _ = start_run(load_acquire_config(config))
    assert engine.run().status == "finished"
    reference_images, reference_rms = _outcome(reference / "run")
    reference_errors = _errors_by_commit(reference / "run")

    rng = random.Random(7 if strategy == "pace" else 8)
    folder = tmp_path / "killed"
    folder.mkdir()
    config = write_config(folder, strategy=strategy, seed=5, settings=settings, twin=TWIN)
    run_dir = folder / "run"
    kills = 0
    resume = False
    before_first_kill: list[tuple[int, int]] | None = None
    for _ in range(KILLS):
        process = _start(config, resume)
        time.sleep(rng.uniform(2.5, 5.0))
        finished = process.poll() is not None
        if not finished:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
        assert process.stderr is not None
        process.stderr.close()
        if before_first_kill is None:
            before_first_kill = _committed_keys(run_dir)
        resume = (run_dir / "L1.journal.jsonl").exists()
        if finished:
            break
    final = _start(config, resume)
    _, stderr = final.communicate(timeout=600)
    assert final.returncode == 0, stderr.decode()
    assert kills >= 1
    _check_run(run_dir, kills)
    images, rms = _outcome(run_dir)
    assert images == reference_images  # the exposures in flight were taken again
    # up to the first kill the run is the uninterrupted one, Record for Record (same seed)
    errors = _errors_by_commit(run_dir)
    assert before_first_kill is not None
    for key in before_first_kill:
        assert errors[key] == pytest.approx(reference_errors[key], abs=1e-6), key
    # after it, each resume re-aligns once (a Preview against the last Record) and retakes the
    # exposure in flight: the targets are kept, within what one re-alignment changes
    assert rms <= 1.25 * reference_rms + 10.0, (rms, reference_rms)
