"""Benchmark: the ``sequential`` strategy alone (the sequential part of bench/acquisition.py).

Leginon's order with UCSF Tomo's predictor on the twin, judged against its ground truth: the
autoloader lamella (twin seed 1, one run-away branch) and the same lamella on a calm goniometer
(bench/_sequential.CALM_STAGE), every series reported; and nine targets acquired sequentially
and with ``pace`` on the same stage, for the throughput ratio. Runs in about 6 minutes on 2
quiet cores (bench/acquisition.py runs the same and much more in about 10). Prints one JSON
object (DESIGN.md §8).
"""

from __future__ import annotations

import json
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from _sequential import (
    CALM,
    nine_target_hours,
    run_sequential,
    scenario_figures,
    sequential_goals,
    series_table,
)

SCENARIOS = ("lamella_autoloader", CALM)
TWIN_SEED = 1  # bench/acquisition.py's seed 1 of the autoloader lamella (scenario index 0)


def _sequential(job: tuple[str, str]) -> dict[str, Any]:
    name, folder = job
    return run_sequential(name, TWIN_SEED, Path(folder) / name)


def _nine(job: tuple[str, str]) -> dict[str, float]:
    strategy, folder = job
    return nine_target_hours(strategy, Path(folder) / f"nine_{strategy}")


def main() -> dict[str, Any]:
    wall = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="tomopilot-bench-") as folder,
        ProcessPoolExecutor(max_workers=2) as pool,
    ):
        nine_running = {st: pool.submit(_nine, (st, folder)) for st in ("sequential", "pace")}
        rows_running = [pool.submit(_sequential, (n, folder)) for n in SCENARIOS]
        rows = [r.result() for r in rows_running]
        nine = {st: r.result() for st, r in nine_running.items()}
    return {
        "bench": "sequential",
        "metrics": {
            "sequential_scenarios": scenario_figures(rows),
            "sequential_series": series_table(rows),
            "nine_targets": {k: {m: round(x, 3) for m, x in v.items()} for k, v in nine.items()},
            "twin_seed": TWIN_SEED,
            "measured": "one run per scenario; accuracy from the twin's ground truth; "
            "throughput as microscope time on the twin's clock for equal work (9 targets, "
            "±60° in 3°, the same Records and dose), no wall-clock timing",
            "wall_s": round(time.perf_counter() - wall, 1),
        },
        "goals": sequential_goals(rows, nine),
    }


if __name__ == "__main__":
    print(json.dumps(main()))
