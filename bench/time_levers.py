"""Benchmark: each time lever alone, and all together, on the acquisition suite's scenarios.

The levers (``acquisition/time_levers.py``) change when the microscope waits, not what the
strategy does, so they are measured with the ``none`` strategy on flat images (fast), every
scenario of bench/acquisition.py × seeds 1–3, against the same runs without levers: microscope
time per tilt image from the engine's own ledger, and the ledger's parts per tilt image. Every
run saves its Records' frames, as tomography runs do: SerialEM returns early only from a shot
that saves frames, so without them ``early_return`` could not save anything.
Prints one JSON object (DESIGN.md §8).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from tomopilot.acquisition.plan.scenarios import SCENARIOS, scenario_config
from tomopilot.acquisition.run import start_run
from tomopilot.acquisition.time_ledger import ACTIVITIES, efficiency
from tomopilot.acquisition.time_levers import ALL_LEVERS

SEEDS = (1, 2, 3)
CONFIGS: dict[str, list[str]] = {
    "none": [],
    **{lever: [lever] for lever in ALL_LEVERS},
    "all": list(ALL_LEVERS),
}


def _one(job: tuple[str, int, str, str]) -> dict[str, Any]:
    name, seed, label, folder = job
    out = Path(folder) / f"{name}_{seed}_{label}"
    config = scenario_config(name, 100 * list(SCENARIOS).index(name) + seed, "none", out)
    config.microscope.twin.camera.render = False
    config.save_frames = True  # early return exists only for shots that save frames
    config.settings.time_levers = CONFIGS[label]  # type: ignore[assignment]
    engine, _ = start_run(config)
    summary = engine.run()
    shutil.rmtree(out, ignore_errors=True)  # ~1.7 GB of frames per run: only the ledger is kept
    return {
        "label": label,
        "records": summary.n_exposures,
        "ledger": dict(summary.time_by_activity_s),
    }


def main() -> dict[str, Any]:
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tomopilot-levers-") as folder:
        jobs = [(n, s, label, folder) for n in SCENARIOS for s in SEEDS for label in CONFIGS]
        with ProcessPoolExecutor(max_workers=2) as pool:
            rows = list(pool.map(_one, jobs))
    per_record: dict[str, dict[str, float]] = {}
    for label in CONFIGS:
        mine = [r for r in rows if r["label"] == label]
        n = sum(r["records"] for r in mine)
        ledger = {a: sum(r["ledger"].get(a, 0.0) for r in mine) for a in ACTIVITIES}
        per_record[label] = {
            "s_per_record": round(sum(ledger.values()) / max(1, n), 3),
            "efficiency": round(efficiency(ledger), 3),
            **{a: round(v / max(1, n), 3) for a, v in ledger.items() if v > 0},
        }
    base = per_record["none"]["s_per_record"]
    ratios = {k: round(v["s_per_record"] / base, 4) for k, v in per_record.items()}
    return {
        "bench": "time_levers",
        "metrics": {
            "per_tilt_image": per_record,
            "time_ratio_to_no_lever": ratios,
            "method": "strategy none, flat images, Record frames saved, microscope time per "
            "tilt image from the engine's ledger on the simulated clock; same scenarios, seeds "
            "and twin seeds as bench/acquisition.py",
            "wall_s": round(time.perf_counter() - wall, 1),
        },
        "goals": {
            **{
                f"{lever}_saves_time": {
                    "value": ratios[lever],
                    "goal": "< 1.0",
                    "met": ratios[lever] < 1.0,
                }
                for lever in ALL_LEVERS
            },
            "all_levers_time_ratio": {
                "value": ratios["all"],
                "goal": "<= 0.8",
                "met": ratios["all"] <= 0.8,
            },
        },
    }


if __name__ == "__main__":
    print(json.dumps(main()))
