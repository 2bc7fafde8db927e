"""Killing ``tomopilot acquire`` at random instants and resuming loses and duplicates nothing."""

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
from acq_helpers import write_config

from tomopilot.acquisition.output.journal import replay_journal

KILLS = 20


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


def test_kill_at_random_instants_then_resume(tmp_path: Path) -> None:
    rng = random.Random(7)
    total_kills = 0
    chain = 0
    while total_kills < KILLS:
        chain += 1
        folder = tmp_path / f"chain{chain}"
        folder.mkdir()
        config = write_config(folder, seed=chain, settings={"minTilt": -12, "maxTilt": 12})
        run_dir = folder / "run"
        kills = 0
        resume = False
        while True:
            process = _start(config, resume)
            time.sleep(rng.uniform(1.0, 4.0))
            finished = process.poll() is not None
            if not finished:
                process.send_signal(signal.SIGKILL)
                kills += 1
            process.wait()
            assert process.stderr is not None
            process.stderr.close()
            resume = (run_dir / "L1.journal.jsonl").exists()
            if finished or kills >= 12:
                break
        final = _start(config, resume)
        _, stderr = final.communicate(timeout=600)
        assert final.returncode == 0, stderr.decode()
        _check_run(run_dir, kills)
        total_kills += kills
    assert total_kills >= KILLS
