"""Benchmark: tomopilot through its SerialEM backend over the twin-backed ``serialem`` module.

The same acquisition (the ``lamella_autoloader`` scenario: 4 targets, PACE strategy, 3° steps in
groups of 2, here over ±15°) is run twice over: direct on the twin, and through the loop, i.e.
tomopilot's SerialEM backend driving SerialEM's Python interface served by the same twin
(``microscope: {backend: serialem, serialem: {module: twin}}``), in this process.

Timing: wall time (``time.perf_counter``) of the whole run, from opening the microscope to
closing it (set-up, every exposure, files written), one untimed warm-up run of each kind first,
then ``REPEATS`` runs of each, alternating direct / loop so that a busy machine affects both
alike; the goal compares the medians. Both kinds run the same code path (``start_run`` and
``engine.run``), single-threaded, with identical twin seeds and outputs.

The CPU time of the process (``time.process_time``) is reported beside it: on a shared machine
it shows the loop's own overhead without the other processes' noise.

Figures: tracking RMS and defocus RMS against the twin's ground truth (``assess_run_dir``,
every Record of every target), and the tilts each target got; the loop must give the same
(within 10 %, the same tilts). Coverage: the twin-backed module's implemented / listed commands
(issue 11's list), and how many distinct commands the backend sent during the loop run.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tomopilot.acquisition.output.journal import replay_journal
from tomopilot.acquisition.plan.run_config import AcquireConfig
from tomopilot.acquisition.plan.scenarios import scenario_config
from tomopilot.acquisition.quality import assess_run_dir
from tomopilot.acquisition.run import close_microscope, start_run
from tomopilot.instrument.twin_serialem import coverage

SCENARIO = "lamella_autoloader"
SEED = 2
TILT_RANGE_DEG = 15
REPEATS = 3


def _config(kind: str, out: Path, tilt_deg: float = TILT_RANGE_DEG) -> AcquireConfig:
    config = scenario_config(SCENARIO, SEED, "pace", out)
    settings = config.settings.model_copy(
        update={"min_tilt_deg": -tilt_deg, "max_tilt_deg": tilt_deg}
    )
    config = config.model_copy(update={"settings": settings})
    if kind == "loop":
        micro = config.microscope
        served = micro.serialem.model_copy(update={"module": "twin"})
        micro = micro.model_copy(update={"backend": "serialem", "serialem": served})
        config = config.model_copy(update={"microscope": micro})
    return config


def _run(config: AcquireConfig) -> tuple[float, dict[str, Any]]:
    start, start_cpu = time.perf_counter(), time.process_time()
    engine, _ = start_run(config)
    summary = engine.run()
    close_microscope(engine.scope)
    wall_s = time.perf_counter() - start
    cpu_s = time.process_time() - start_cpu
    run_dir = Path(config.output.dir)
    pooled = assess_run_dir(run_dir).pooled()
    journal = replay_journal(next(run_dir.glob("*.journal.jsonl")))
    tilts = sorted((int(c["target"]), float(c["tilt_deg"])) for c in journal.committed)
    sent = getattr(getattr(engine.scope, "session", None), "sent", None)
    return wall_s, {
        "status": summary.status,
        "cpu_s": cpu_s,
        "n_exposures": summary.n_exposures,
        "tracking_rms_nm": pooled["tracking_rms_nm"],
        "defocus_rms_um": pooled["defocus_rms_um"],
        "tilts": tilts,
        "commands_sent": len(sent) if sent is not None else 0,
        "distinct_commands": len({name for name, _ in sent}) if sent is not None else 0,
    }


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench_serialem_"))
    for kind in ("direct", "loop"):  # warm-up: imports, caches, first renders
        _run(_config(kind, folder / f"warm_{kind}", tilt_deg=3))
    walls: dict[str, list[float]] = {"direct": [], "loop": []}
    cpus: dict[str, list[float]] = {"direct": [], "loop": []}
    figures: dict[str, dict[str, Any]] = {}
    for repeat in range(REPEATS):
        for kind in ("direct", "loop"):
            wall, result = _run(_config(kind, folder / f"{kind}_{repeat}"))
            walls[kind].append(wall)
            cpus[kind].append(result["cpu_s"])
            if kind in figures and figures[kind]["tilts"] != result["tilts"]:
                raise SystemExit(f"{kind} runs are not deterministic")
            figures.setdefault(kind, result)
    direct, loop = figures["direct"], figures["loop"]
    ratio = statistics.median(walls["loop"]) / statistics.median(walls["direct"])
    cpu_ratio = statistics.median(cpus["loop"]) / statistics.median(cpus["direct"])
    tracking_ratio = loop["tracking_rms_nm"] / direct["tracking_rms_nm"]
    defocus_ratio = loop["defocus_rms_um"] / direct["defocus_rms_um"]
    same_tilts = direct["tilts"] == loop["tilts"]
    cov = coverage()
    implemented, listed = len(cov.implemented), cov.n_listed
    metrics = {
        "scenario": f"{SCENARIO} seed {SEED}, pace, ±{TILT_RANGE_DEG}° step 3 groups of 2",
        "timing": (
            f"wall time (perf_counter) of start_run+run+close, 1 warm-up each, median of "
            f"{REPEATS} alternating runs each, one process, same twin seed"
        ),
        "direct_wall_s": [round(w, 2) for w in walls["direct"]],
        "loop_wall_s": [round(w, 2) for w in walls["loop"]],
        "wall_time_ratio": round(ratio, 3),
        "cpu_time_ratio": round(cpu_ratio, 3),
        "direct_tracking_rms_nm": round(direct["tracking_rms_nm"], 1),
        "loop_tracking_rms_nm": round(loop["tracking_rms_nm"], 1),
        "tracking_rms_ratio": round(tracking_ratio, 3),
        "direct_defocus_rms_um": round(direct["defocus_rms_um"], 4),
        "loop_defocus_rms_um": round(loop["defocus_rms_um"], 4),
        "defocus_rms_ratio": round(defocus_ratio, 3),
        "n_exposures": {"direct": direct["n_exposures"], "loop": loop["n_exposures"]},
        "same_tilts": same_tilts,
        "commands_sent_in_loop": loop["commands_sent"],
        "distinct_commands_in_loop": loop["distinct_commands"],
        "command_coverage": f"{implemented}/{listed}",
    }
    goals = {
        "wall_time_ratio": {"value": round(ratio, 3), "goal": "<= 1.2", "met": ratio <= 1.2},
        "tracking_rms_ratio": {
            "value": round(tracking_ratio, 3),
            "goal": "within 0.9..1.1",
            "met": 0.9 <= tracking_ratio <= 1.1,
        },
        "defocus_rms_ratio": {
            "value": round(defocus_ratio, 3),
            "goal": "within 0.9..1.1",
            "met": 0.9 <= defocus_ratio <= 1.1,
        },
        "same_tilts": {"value": same_tilts, "goal": "== true", "met": same_tilts},
        "command_coverage": {
            "value": round(implemented / listed, 3),
            "goal": ">= 1.0",
            "met": implemented >= listed,
        },
    }
    print(json.dumps({"bench": "serialem", "metrics": metrics, "goals": goals}))


if __name__ == "__main__":
    main()
