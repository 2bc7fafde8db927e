"""Benchmark: SIGKILL ``tomopilot acquire`` processes at random instants, resume each to the end.

For ``pace`` and ``fused`` the same configuration (a twin lamella, 3 targets, ±45° in 3° steps,
256² Records) and seed is first acquired without interruption. Then chains of the same run are
killed with SIGKILL at random instants (drawn from a seeded generator over the uninterrupted
run's duration; some short, so that they land while a resumed process is still replaying and
re-aligning) and continued with ``tomopilot acquire --resume`` until finished. In one chain per
strategy a torn journal line (a kill in the middle of a write) is added after a kill. Each
finished run is compared with the uninterrupted one:

- tilt images missing: (target, tilt) pairs the uninterrupted run took and the resumed did not
  (the exposure in flight must be taken again, not lost); extra: the other way round;
- duplicates: a (target, tilt) committed twice;
- stack/mdoc mismatches: a series whose stack (mrcfile), mdoc (mdocfile) and journal disagree
  on the number of sections, the tilt angles, or a section's mean (mdoc MinMaxMean vs pixels);
- tracking RMS: pooled over all resumed runs of a strategy, against the twin's ground truth,
  over the uninterrupted run's.

Both strategies run side by side (one process chain each, 2 cores). Prints one JSON object on
its last line (DESIGN.md §8); when a goal is missed the runs are kept and their folder named.
``KILL_RESUME_STRATEGIES=pace`` runs one strategy (for debugging).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import mdocfile
import mrcfile
import numpy as np
import yaml

from tomopilot.acquisition.output.journal import replay_journal
from tomopilot.acquisition.quality import assess_run_dir

STRATEGIES = tuple(os.environ.get("KILL_RESUME_STRATEGIES", "pace,fused").split(","))
SEED = 11
CHAINS = 2  # killed runs per strategy
KILLS_PER_CHAIN = 8
TORN = b'{"branch":"+","kind":"committed","prior_dose":{"1":12.'


def _config(folder: Path, strategy: str) -> Path:
    data = {
        "microscope": {
            "twin": {
                "seed": SEED,
                "stage": {"profile": "autoloader"},
                "specimen": {"kind": "lamella", "thickness_nm": 200, "pretilt_deg": 10},
                "presets": {
                    "record": {"binning": 16},
                    "preview": {"binning": 16, "exposure_s": 0.5},
                },
            }
        },
        "targets": [{"SSX": 0.0, "SSY": 0.0}, {"SSX": 2.0, "SSY": 0.0}, {"SSX": -2.0, "SSY": 1.8}],
        "settings": {
            "startTilt": 0,
            "minTilt": -45,
            "maxTilt": 45,
            "step": 3,
            "groupSize": 2,
            "pretilt": 10,
            "maxDefocus": -5.0,
            "minDefocus": -3.0,
            "stepDefocus": 0.5,
        },
        "strategy": strategy,
        "output": {"dir": str(folder / "run"), "root": "L1"},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _start(config: Path, resume: bool) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "tomopilot", "acquire", str(config), "--no-report"]
    if resume:
        args.append("--resume")
    env = {**os.environ, "COLUMNS": "120"}
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def _finish(process: subprocess.Popen[bytes], timeout_s: float | None = None) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=timeout_s)
    return process.returncode, stderr.decode(errors="replace")[-2000:]


def _journal_tail_torn(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")


def _kinds(journal: Path) -> list[str]:
    if not journal.exists():
        return []
    lines = journal.read_bytes().split(b"\n")[:-1]  # a torn last line is not a record yet
    return [str(json.loads(line).get("kind")) for line in lines if line.strip()]


def _in_resume_phase(journal: Path) -> bool:
    """Whether the last process died after journalling its resume and before any commit."""
    kinds = _kinds(journal)
    if "resumed" not in kinds:
        return False
    last = len(kinds) - 1 - kinds[::-1].index("resumed")
    return "committed" not in kinds[last:]


def _wait_for(
    process: subprocess.Popen[bytes], journal: Path, kind: str, count: int, timeout_s: float
) -> None:
    """Until the journal holds ``count`` records of ``kind`` (or the process ends)."""
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline:
        if _kinds(journal).count(kind) >= count:
            return
        time.sleep(0.05)


def _chain(config: Path, rng: random.Random, n_images: int, torn: bool) -> dict[str, Any]:
    """Kill one run KILLS_PER_CHAIN times, then resume it to the end.

    The instants are random: each kill waits for a randomly drawn number of commits (spread
    over the run) and then a random fraction of a second more, so it lands anywhere in an
    exposure, a save, a tilt or the housekeeping; every third kill instead waits for the
    resumed process to journal its resume and kills it within half a second, in its replay
    and re-alignment.
    """
    run_dir = config.parent / "run"
    journal = run_dir / "L1.journal.jsonl"
    kills = during_resume = torn_tails = 0
    targets = sorted(rng.sample(range(1, n_images), KILLS_PER_CHAIN))
    resume = False
    for attempt, commits in enumerate(targets):
        process = _start(config, resume)
        if resume and attempt % 3 == 2:
            _wait_for(process, journal, "resumed", _kinds(journal).count("resumed") + 1, 120)
            time.sleep(rng.uniform(0.0, 0.5))
        else:
            _wait_for(process, journal, "committed", commits, 300)
            time.sleep(rng.uniform(0.0, 1.5))
        finished = process.poll() is not None
        if not finished:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
        assert process.stderr is not None
        process.stderr.close()
        if finished:
            break
        during_resume += int(resume and _in_resume_phase(journal))
        torn_tails += int(_journal_tail_torn(journal))
        if torn and attempt == 1 and journal.exists():
            with journal.open("ab") as handle:  # a kill in the middle of a journal write
                handle.write(TORN)
            torn_tails += 1
        resume = journal.exists()
    code, stderr = _finish(_start(config, resume), timeout_s=900)
    return {
        "kills": kills,
        "kills_during_resume": during_resume,
        "torn_tails": torn_tails,
        "returncode": code,
        "stderr": stderr if code else "",
    }


def _read_mdoc(path: Path) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):  # mdocfile chats on stdout
        return mdocfile.read(path)


def _files_mismatch(run_dir: Path, committed: list[dict[str, Any]], target: int) -> bool:
    """Stack, mdoc and journal of one series disagree (count, tilts, section means)."""
    stack = run_dir / f"L1_ts_{target:03d}.mrc"
    mine = [c for c in committed if int(c["target"]) == target]
    if not stack.exists():
        return bool(mine)
    with mrcfile.open(stack, permissive=True) as mrc:
        data = np.asarray(mrc.data, dtype=np.float64)
    frame = _read_mdoc(Path(f"{stack}.mdoc"))
    if not (data.shape[0] == len(frame) == len(mine)):
        return True
    tilts = np.sort(frame["TiltAngle"].to_numpy(dtype=float))
    if not np.allclose(tilts, sorted(float(c["tilt_deg"]) for c in mine), atol=0.05):
        return True
    means = [float(v[2]) for v in frame["MinMaxMean"]]
    return not np.allclose(data.mean(axis=(1, 2)), means, rtol=1e-4, atol=1e-3)


def _judge(run_dir: Path) -> dict[str, Any]:
    journal = replay_journal(run_dir / "L1.journal.jsonl")
    keys = [(int(c["target"]), int(c["step_index"])) for c in journal.committed]
    quality = assess_run_dir(run_dir)
    track = [nm for t in quality.targets for nm in t.tracking_nm]
    return {
        "finished": journal.finished is not None and journal.finished["status"] == "finished",
        "images": set(keys),
        "duplicates": len(keys) - len(set(keys)),
        "mismatches": sum(_files_mismatch(run_dir, journal.committed, t) for t in (1, 2, 3)),
        "tracking_nm": np.asarray(track, dtype=float),
    }


def _rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(values)))) if values.size else math.nan


def _strategy(strategy: str, root: Path, results: dict[str, Any]) -> None:
    rng = random.Random(f"kill_resume/{strategy}")
    config = _config(root / strategy / "uninterrupted", strategy)
    start = time.perf_counter()
    code, stderr = _finish(_start(config, resume=False), timeout_s=900)
    duration_s = time.perf_counter() - start
    if code:
        raise RuntimeError(f"uninterrupted {strategy} run failed: {stderr}")
    reference = _judge(config.parent / "run")
    chains = []
    for number in range(CHAINS):
        config = _config(root / strategy / f"chain{number}", strategy)
        chain = _chain(config, rng, len(reference["images"]), torn=number == 0)
        chain.update(_judge(config.parent / "run") if chain["returncode"] == 0 else {})
        chains.append(chain)
    done = [c for c in chains if c.get("finished")]
    resumed = np.concatenate([c["tracking_nm"] for c in done]) if done else np.zeros(0)
    reference_rms = _rms(reference["tracking_nm"])
    results[strategy] = {
        "uninterrupted_s": round(duration_s, 1),
        "uninterrupted_images": len(reference["images"]),
        "uninterrupted_tracking_rms_nm": round(reference_rms, 1),
        "runs": len(chains),
        "runs_finished": len(done),
        "kills": sum(c["kills"] for c in chains),
        "kills_during_resume": sum(c["kills_during_resume"] for c in chains),
        "torn_journal_tails": sum(c["torn_tails"] for c in chains),
        "images_missing": sum(len(reference["images"] - c["images"]) for c in done),
        "images_extra": sum(len(c["images"] - reference["images"]) for c in done),
        "duplicates": sum(c["duplicates"] for c in done),
        "stack_mdoc_mismatches": sum(c["mismatches"] for c in done),
        "resumed_tracking_rms_nm": round(_rms(resumed), 1),
        "tracking_rms_ratio": round(_rms(resumed) / reference_rms, 3),
        "tracking_rms_ratio_worst_run": round(
            max((_rms(c["tracking_nm"]) / reference_rms for c in done), default=math.nan), 3
        ),
        "failures": [c["stderr"] for c in chains if c["returncode"]],
    }


def main() -> dict[str, Any]:
    start = time.perf_counter()
    results: dict[str, Any] = {}
    errors: list[str] = []
    folder = tempfile.mkdtemp(prefix="kill_resume_")

    def work(strategy: str) -> None:
        try:
            _strategy(strategy, Path(folder), results)
        except Exception as exc:  # reported in the JSON, the goals then fail
            errors.append(f"{strategy}: {exc}")

    threads = [threading.Thread(target=work, args=(s,)) for s in STRATEGIES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    per = [results.get(s, {}) for s in STRATEGIES]
    kills = sum(p.get("kills", 0) for p in per)
    runs = sum(p.get("runs", 0) for p in per)
    finished = sum(p.get("runs_finished", 0) for p in per)
    missing = sum(p.get("images_missing", 0) for p in per)
    duplicates = sum(p.get("duplicates", 0) for p in per)
    mismatches = sum(p.get("stack_mdoc_mismatches", 0) for p in per)
    during = sum(p.get("kills_during_resume", 0) for p in per)
    torn = sum(p.get("torn_journal_tails", 0) for p in per)
    metrics: dict[str, Any] = {
        "kills": kills,
        "kills_during_resume": during,
        "torn_journal_tails": torn,
        "runs": runs,
        "runs_finished": finished,
        "images_missing": missing,
        "duplicates": duplicates,
        "stack_mdoc_mismatches": mismatches,
        "per_strategy": results,
        "errors": errors,
        "wall_s": round(time.perf_counter() - start, 1),
        "how": (
            "SIGKILL of real `tomopilot acquire` subprocesses at seeded random instants, each "
            "followed by --resume until finished; compared with the uninterrupted run of the "
            "same config and seed (twin lamella, 3 targets, ±45° by 3°, 256² Records); tracking "
            "RMS pooled over every exposure of the resumed runs against the twin's ground truth"
        ),
    }

    def goal(value: float, text: str, met: bool) -> dict[str, Any]:
        return {"value": value, "goal": text, "met": bool(met)}

    goals = {
        "kills": goal(kills, ">= 30", kills >= 30),
        "kills_during_resume": goal(during, ">= 1", during >= 1),
        "torn_journal_tails": goal(torn, ">= 1", torn >= 1),
        "runs_finished": goal(finished, f"== {runs}", runs > 0 and finished == runs),
        "images_missing": goal(missing, "== 0", finished == runs and missing == 0),
        "duplicates": goal(duplicates, "== 0", finished == runs and duplicates == 0),
        "stack_mdoc_mismatches": goal(mismatches, "== 0", finished == runs and mismatches == 0),
    }
    for strategy in STRATEGIES:
        ratio = results.get(strategy, {}).get("tracking_rms_ratio", math.nan)
        goals[f"tracking_rms_ratio_{strategy}"] = goal(ratio, "<= 1.1", ratio <= 1.1)
    if all(g["met"] for g in goals.values()):
        shutil.rmtree(folder, ignore_errors=True)
    else:
        metrics["kept_for_inspection"] = folder  # the runs that missed a goal
    return {"bench": "kill_resume", "metrics": metrics, "goals": goals}


if __name__ == "__main__":
    print(json.dumps(main()))
