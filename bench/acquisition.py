"""Benchmark: tracking, focus, throughput and compute of the strategies on the twin.

Six scenarios (lamella on an autoloader and on a side-entry stage, flat and bent holey film, a
lamella with a stage jump, a thick lamella whose high tilts go dark), seed 1 (``--full``: seeds
1-4), each acquired with the strategies ``none``, ``pace`` and ``fused`` (±60°, 3° steps, groups
of 2, 4 targets), plus late-jump runs (bench/fused_goals.py) and Leginon's sequential order
side by side on the autoloader lamella (bench/sequential.py adds its calm-goniometer accuracy
and the nine-target throughput against the parallel strategies; ``--full`` runs those here).
Everything is judged against the twin's ground truth. Prints one JSON object (DESIGN.md §8);
the goals compare strategies measured in the same run. Dose and microscope time are compared
per tilt image taken (every exposure and operation counted), since a strategy that loses its
targets early takes fewer images and so spends less in total.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from _sequential import (
    CALM,
    nine_target_hours,
    run_sequential,
    scenario_figures,
    sequential_goals,
    sequential_summary,
    series_table,
)
from fused_goals import (
    JUMP_BEYOND_DEG,
    JUMP_UM,
    RECOVERED_NM,
    calm_runs,
    late_jump,
    target_one,
)
from tomopilot.acquisition.plan.estimate import Timing, estimate_duration
from tomopilot.acquisition.plan.scenarios import SCENARIOS, scenario_config
from tomopilot.acquisition.quality import assess_run_dir
from tomopilot.acquisition.run import start_run
from tomopilot.acquisition.setup.measure_geo import geo_points_for
from tomopilot.acquisition.strategies.fused_focus import planned_checks
from tomopilot.acquisition.strategies.fused_track import SHOT_DOSE_FRACTION
from tomopilot.acquisition.time_ledger import ACTIVITIES, efficiency
from tomopilot.instrument.types import LowDoseArea

# The default run must finish in < 10 min on 2 cores (bench rule): a rendered ±60° run of 4
# targets costs ~35 s (fused) to ~60 s (pace) of one core, a sequential one ~100 s, so the
# default is seed 1 of every scenario (and seed 3 of two, below), one late-jump seed and
# sequential on the autoloader lamella only. ``--full`` runs the whole matrix (seeds 1-4, three
# late-jump seeds, sequential on every scenario): about an hour on 2 cores.
FULL = "--full" in sys.argv[1:]
SEEDS = (1, 2, 3, 4) if FULL else (1,)
# Seed 1 made pace run away in five of the six scenarios before session 26's pace_align (since,
# every Record of pace is within 0.5 µm of its target on two of them, bent holey film and the
# lamella with a jump; the thick lamella's run stops early, where it goes dark); the goals on runs
# where it does not need some, so the default adds seed 3 of the two scenarios where pace stays
# within 0.5 µm on it (autoloader lamella, flat holey film; found in a seeds 1-3 run).
EXTRA_SEEDS: dict[str, tuple[int, ...]] = (
    {} if FULL else {"lamella_autoloader": (3,), "holey_flat": (3,)}
)
JUMP_SEEDS = (1, 2, 3) if FULL else (1,)
STRATEGIES = ("none", "pace", "fused")
# Leginon's sequential order, one area per target (bench/_sequential.py): seed 1, compared with
# pace and fused on the same seed; and the autoloader lamella on a calm goniometer (CALM), the
# conditions closest to those UCSF Tomo's published accuracy comes from.
SEQUENTIAL_SEEDS = (1,)
SEQUENTIAL_SCENARIOS = (*SCENARIOS, CALM) if FULL else ("lamella_autoloader",)
# The nine-target throughput runs (sequential against the parallel strategies) and the calm
# goniometer are bench/sequential.py's; the default run here leaves them out to stay within
# 10 min on 2 cores (with them it took about 11), --full runs them with fused on nine targets too.
NINE_STRATEGIES: tuple[str, ...] = ("sequential", "pace", "fused") if FULL else ()


def _one(job: tuple[str, int, str, str]) -> dict[str, Any]:
    name, seed, strategy, folder = job
    out = Path(folder) / f"{name}_{seed}_{strategy}"
    # Each scenario draws its own stages: seed s of scenario k runs the twin with 100·k + s, so
    # a seed whose stage runs away does not run away in every scenario at once.
    twin_seed = 100 * list(SCENARIOS).index(name) + seed
    config = scenario_config(name, twin_seed, strategy, out, render=strategy != "none")
    engine, resolved = start_run(config)
    # Engine compute = time in the strategy's calls minus the time the twin spends rendering
    # the exposures and measurements those calls ask for (a real microscope does that part).
    inside = [False]
    strategy_s = [0.0]
    twin_in_strategy_s = [0.0]

    def in_strategy(original: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            inside[0] = True
            try:
                return original(*args, **kwargs)
            finally:
                inside[0] = False
                strategy_s[0] += time.perf_counter() - start

        return timed

    def twin_work(original: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                if inside[0]:
                    twin_in_strategy_s[0] += time.perf_counter() - start

        return timed

    for method in ("prepare", "observe"):
        setattr(engine.strategy, method, in_strategy(getattr(engine.strategy, method)))
    scope: Any = engine.scope
    scope.camera.acquire = twin_work(scope.camera.acquire)
    scope.measurements.measure_defocus_um = twin_work(scope.measurements.measure_defocus_um)
    summary = engine.run()
    quality = assess_run_dir(out)
    twin = config.microscope.twin
    steps = resolved.scheme.steps()
    travel = sum(abs(b.tilt_deg - a.tilt_deg) for a, b in itertools.pairwise(steps))
    tilt_s = travel / twin.stage.tilt_speed_deg_s + len(steps) * twin.stage.tilt_settle_s
    record_s = twin.presets.record.exposure_s
    physical_s = summary.n_exposures * record_s + tilt_s
    estimate = estimate_duration(
        resolved.settings,
        resolved.scheme,
        sum(not t.skip for t in resolved.targets),
        Timing.from_twin(twin),
        n_geo_points=len(geo_points_for(resolved.settings, resolved.geo_points_um)),
        levers=engine.levers,
        shots_per_tilt=int(strategy == "fused" and resolved.settings.track_spot),
        shot_s=SHOT_DOSE_FRACTION * record_s,
        approach=resolved.area_stage_um != (0.0, 0.0),  # the twin's stage starts at 0, 0
        realign=bool(resolved.targets and resolved.targets[0].view_file),
        start_views=int(strategy == "fused"),
        focus_checks=(
            planned_checks(steps) if strategy == "fused" and resolved.settings.focus_check else 0
        ),
    )
    # pace's losses of target 1 (pace_align): Views after the first Record, Records retaken
    exposures = scope.ground_truth.exposures
    first_record = next(
        (k for k, e in enumerate(exposures) if e.area == LowDoseArea.RECORD), len(exposures)
    )
    losses = (
        sum(1 for e in exposures[first_record:] if e.area == LowDoseArea.VIEW),
        sum(1 for e in exposures if e.area == LowDoseArea.RECORD) - summary.n_exposures,
    )
    with_losses = estimate.total_s + (
        estimate_duration(
            resolved.settings,
            resolved.scheme,
            1,
            Timing.from_twin(twin),
            levers=engine.levers,
            recovery_views=losses[0],
            retakes=losses[1],
        ).recovery_s
        if strategy == "pace"
        else 0.0
    )
    pooled = quality.pooled()
    track = np.concatenate([t.tracking_nm for t in quality.targets])
    others = [t for t in quality.targets if t.target != 1]  # not the tracking target
    focus = np.concatenate([t.defocus_error_um for t in quality.targets])
    tilts = np.concatenate([t.tilts_deg for t in quality.targets])
    return {
        "scenario": name,
        "seed": seed,
        "strategy": strategy,
        "n_exposures": summary.n_exposures,
        "tracking_sq_nm2": float(np.sum(track**2)),
        "tracking_max_nm": float(track.max()),
        "within_50": int(np.sum(track <= 50.0)),
        "within_50_target1": int(
            sum(np.sum(np.asarray(t.tracking_nm) <= 50.0) for t in quality.targets if t.target == 1)
        ),
        "n_target1": int(sum(len(t.tracking_nm) for t in quality.targets if t.target == 1)),
        "within_50_others": int(sum(np.sum(np.asarray(t.tracking_nm) <= 50.0) for t in others)),
        "n_others": int(sum(len(t.tracking_nm) for t in others)),
        "n": int(track.size),
        "defocus_sq_um2": float(np.sum(focus**2)),
        "defocus_high_sq_um2": float(np.sum(focus[np.abs(tilts) > 40] ** 2)),
        "n_high": int(np.sum(np.abs(tilts) > 40)),
        "dose_e_a2": float(sum(t.dose_e_a2 for t in quality.targets)),
        "dose_spent_e_a2": float(sum(e.dose_e_a2 for e in scope.ground_truth.exposures)),
        "records": summary.n_exposures,
        "views": sum(
            1 for e in scope.ground_truth.exposures if str(e.area).lower().endswith("view")
        ),
        "microscope_s": summary.microscope_s,
        "physical_s": physical_s,
        "ledger": dict(summary.time_by_activity_s),
        "estimate_s": estimate.total_s,
        "estimate_with_losses_s": with_losses,
        "losses": losses,
        "complete": summary.n_exposures == estimate.n_records,
        "series": len(quality.targets),
        "compute_s": strategy_s[0] - twin_in_strategy_s[0],
        "twin_in_strategy_s": twin_in_strategy_s[0],
        "minutes_per_ts": pooled["minutes_per_tilt_series"],
    }


def _pool(rows: list[dict[str, Any]]) -> dict[str, float]:
    n = sum(r["n"] for r in rows)
    n_high = sum(r["n_high"] for r in rows)
    hours = sum(r["microscope_s"] for r in rows) / 3600.0
    return {
        "tracking_rms_nm": math.sqrt(sum(r["tracking_sq_nm2"] for r in rows) / max(1, n)),
        "tracking_max_nm": max(r["tracking_max_nm"] for r in rows),
        "within_50nm": sum(r["within_50"] for r in rows) / max(1, n),
        "within_50nm_targets_2_on": sum(r["within_50_others"] for r in rows)
        / max(1, sum(r["n_others"] for r in rows)),
        "defocus_rms_um": math.sqrt(sum(r["defocus_sq_um2"] for r in rows) / max(1, n)),
        "defocus_rms_above_40_um": math.sqrt(
            sum(r["defocus_high_sq_um2"] for r in rows) / max(1, n_high)
        ),
        "tilt_series_per_hour": sum(r["series"] for r in rows) / hours,
        "efficiency": efficiency(_ledger(rows)),
        "compute_ms_per_target_tilt": 1e3 * sum(r["compute_s"] for r in rows) / max(1, n),
        "dose_received_e_a2": sum(r["dose_e_a2"] for r in rows),
        "dose_spent_e_a2": sum(r["dose_spent_e_a2"] for r in rows),
        "dose_spent_per_record_e_a2": sum(r["dose_spent_e_a2"] for r in rows)
        / max(1, sum(r["records"] for r in rows)),
        "records": sum(r["records"] for r in rows),
        "view_exposures": sum(r["views"] for r in rows),
        "microscope_s": sum(r["microscope_s"] for r in rows),
        "microscope_s_per_record": sum(r["microscope_s"] for r in rows)
        / max(1, sum(r["records"] for r in rows)),
    }


def _one_sequential(job: tuple[str, int, str]) -> dict[str, Any]:
    name, seed, folder = job
    # The same stages as the other runs (the calm one: the autoloader lamella's, calmed).
    twin_seed = 100 * list(SCENARIOS).index(name if name in SCENARIOS else SCENARIOS[0]) + seed
    row = run_sequential(name, twin_seed, Path(folder) / f"{name}_{seed}_sequential")
    return {**row, "seed": seed}


def _nine(job: tuple[str, str]) -> dict[str, float]:
    strategy, folder = job
    return nine_target_hours(strategy, Path(folder) / f"nine_{strategy}")


def _calm_goals(calm: dict[str, Any]) -> dict[str, Any]:
    """Goals on the runs where pace did not run away (bench/fused_goals.py)."""
    if not calm.get("runs"):
        return {}
    goals = {}
    for key in ("tracking", "defocus"):
        pooled, worst = calm[f"{key}_pooled"], calm[f"{key}_worst_run"]
        goals[f"fused_over_pace_{key}_rms_calm_pooled"] = {
            "value": round(pooled, 3),
            "goal": "<= 1.0",
            "met": pooled <= 1.0,
            "note": f"{calm['runs']} of {calm['of']} runs: pace within 0.5 µm, all Records",
        }
        goals[f"fused_over_pace_{key}_rms_calm_every_run"] = {
            "value": round(worst, 3),
            "goal": "<= 1.1",
            "met": worst <= 1.1,
        }
    return goals


def _ledger(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The engine's time ledgers of ``rows`` added up (seconds by activity)."""
    return {a: sum(r["ledger"].get(a, 0.0) for r in rows) for a in ACTIVITIES}


def main() -> dict[str, Any]:
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tomopilot-bench-") as folder:
        jobs = [
            (n, s, st, folder)
            for n in SCENARIOS
            for s in (*SEEDS, *EXTRA_SEEDS.get(n, ()))
            for st in STRATEGIES
        ]
        with ProcessPoolExecutor(max_workers=2) as pool:
            # Everything is queued at once, the longest jobs first, so neither worker idles.
            nine_running = [pool.submit(_nine, (st, folder)) for st in NINE_STRATEGIES]
            sequential_running = [
                pool.submit(_one_sequential, (n, s, folder))
                for n in SEQUENTIAL_SCENARIOS
                for s in SEQUENTIAL_SEEDS
            ]
            rows_running = [pool.submit(_one, job) for job in jobs if job[2] == "pace"]
            rows_running += [pool.submit(_one, job) for job in jobs if job[2] == "fused"]
            jumps_running = [pool.submit(late_jump, seed) for seed in JUMP_SEEDS]
            rows_running += [pool.submit(_one, job) for job in jobs if job[2] == "none"]
            rows = [r.result() for r in rows_running]
            sequential_rows = [r.result() for r in sequential_running]
            nine = {st: r.result() for st, r in zip(NINE_STRATEGIES, nine_running, strict=True)}
            jumps = [j.result() for j in jumps_running]
    table: dict[str, dict[str, dict[str, float]]] = {}
    for name in SCENARIOS:
        table[name] = {}
        for strategy in STRATEGIES:
            mine = [r for r in rows if r["scenario"] == name and r["strategy"] == strategy]
            table[name][strategy] = {k: round(v, 4) for k, v in _pool(mine).items()}
    overall = {st: _pool([r for r in rows if r["strategy"] == st]) for st in STRATEGIES}
    pace, fused = overall["pace"], overall["fused"]
    pace_autoloader = table["lamella_autoloader"]["pace"]["within_50nm"]
    compute = max(overall[st]["compute_ms_per_target_tilt"] for st in ("pace", "fused"))
    track_ratio = fused["tracking_rms_nm"] / pace["tracking_rms_nm"]
    focus_ratio = fused["defocus_rms_above_40_um"] / pace["defocus_rms_above_40_um"]
    # "The same dose": what the microscope spends per tilt image (Records plus every tracking,
    # View and focus exposure), not what lands on the targets, which rewards losing them.
    dose_ratio = fused["dose_spent_per_record_e_a2"] / pace["dose_spent_per_record_e_a2"]
    # "No more microscope time", normalised like the dose: per tilt image taken. A strategy that
    # keeps its targets takes more tilt images, and more time, than one that loses them.
    time_ratio = fused["microscope_s_per_record"] / pace["microscope_s_per_record"]
    total_time_ratio = fused["microscope_s"] / pace["microscope_s"]
    per_seed_wins = statistics.fmean(
        float(math.sqrt(f["tracking_sq_nm2"] / f["n"]) <= math.sqrt(p["tracking_sq_nm2"] / p["n"]))
        for f in rows
        if f["strategy"] == "fused"
        for p in rows
        if p["strategy"] == "pace" and p["scenario"] == f["scenario"] and p["seed"] == f["seed"]
    )
    same = [
        r for r in rows if r["seed"] in SEQUENTIAL_SEEDS and r["scenario"] in SEQUENTIAL_SCENARIOS
    ]
    side_by_side = {
        st: {k: round(v, 4) for k, v in _pool([r for r in same if r["strategy"] == st]).items()}
        for st in ("pace", "fused")
    }
    seq = sequential_summary([r for r in sequential_rows if r["scenario"] in SCENARIOS])
    side_by_side["sequential"] = {k: round(v, 4) for k, v in seq.items()}
    calm = calm_runs(rows)
    t1 = target_one(rows, "fused", "lamella_autoloader")
    done = [j for j in jumps if j.get("jumped")]
    worst_jump = max((int(j["tilts_before_recovered"]) for j in done), default=99)
    complete = [r for r in rows if r["complete"]]
    estimate_worst = max(
        (abs(r["estimate_s"] / r["microscope_s"] - 1.0) for r in complete), default=1.0
    )
    pace_complete = [r for r in complete if r["strategy"] == "pace"]
    pace_losses = [
        sum(r["losses"][0] for r in pace_complete),
        sum(r["losses"][1] for r in pace_complete),
    ]
    estimate_pace_with_losses = max(
        (abs(r["estimate_with_losses_s"] / r["microscope_s"] - 1.0) for r in pace_complete),
        default=1.0,
    )
    return {
        "bench": "acquisition",
        "metrics": {
            "sequential_side_by_side": side_by_side,
            "sequential_scenarios": scenario_figures(sequential_rows),
            "sequential_series": series_table(sequential_rows),
            "nine_targets": {k: {m: round(x, 3) for m, x in v.items()} for k, v in nine.items()}
            or "bench/sequential.py (and --full)",
            "scenarios": table,
            "overall": {st: {k: round(v, 4) for k, v in overall[st].items()} for st in STRATEGIES},
            "fused_wins_per_run": round(per_seed_wins, 3),
            "time_ledger_share": {
                st: {a: round(v / max(1e-9, sum(ledger.values())), 4) for a, v in ledger.items()}
                for st, ledger in (
                    (st, _ledger([r for r in rows if r["strategy"] == st])) for st in STRATEGIES
                )
            },
            "time_ledger_s_per_record": {
                st: {
                    a: round(v / max(1, overall[st]["records"]), 3)
                    for a, v in _ledger([r for r in rows if r["strategy"] == st]).items()
                }
                for st in STRATEGIES
            },
            "efficiency_note": "engine ledger: (Record exposure + stage tilting) / time used",
            "fused_vs_pace_where_pace_does_not_run_away": calm,
            "target_one_autoloader_lamella": {
                st: {k: round(v, 3) for k, v in target_one(rows, st, "lamella_autoloader").items()}
                for st in ("pace", "fused")
            },
            "late_jump_runs": jumps,
            "dry_run_estimate_pace": {
                "worst_within": round(
                    max(
                        (abs(r["estimate_s"] / r["microscope_s"] - 1.0) for r in pace_complete),
                        default=1.0,
                    ),
                    4,
                ),
                "worst_within_given_its_losses": round(estimate_pace_with_losses, 4),
                "relocation_views_and_retakes": pace_losses,
                "note": "pace's Views and retakes after target 1 was lost depend on the "
                "specimen and stage, not the plan: the dry run leaves them out and prints what "
                "one costs; given the run's own, the estimate is within the second figure",
            },
            "runs": [
                {
                    "scenario": r["scenario"],
                    "seed": r["seed"],
                    "strategy": r["strategy"],
                    "records": r["records"],
                    "views": r["views"],
                    "tracking_rms_nm": round(math.sqrt(r["tracking_sq_nm2"] / max(1, r["n"])), 1),
                    "within_50nm": round(r["within_50"] / max(1, r["n"]), 3),
                    "microscope_min": round(r["microscope_s"] / 60.0, 2),
                }
                for r in rows
            ],
            "targets_per_area": 4,
            "seeds": list(SEEDS),
            "extra_seeds": {k: list(v) for k, v in EXTRA_SEEDS.items()},
            "jump_seeds": list(JUMP_SEEDS),
            "sequential_on": list(SEQUENTIAL_SCENARIOS),
            "matrix": "full (--full)"
            if FULL
            else "default: cut to fit 10 min on 2 cores (seed 1, plus seed 3 where pace does not "
            "run away, one late-jump seed, sequential on the autoloader lamella; the nine-target "
            "throughput and the calm goniometer are bench/sequential.py's); --full runs seeds "
            "1-4, 3 jump seeds, sequential on every scenario and the calm goniometer, and nine "
            "targets with sequential, pace and fused",
            "twin_seeds": "100 × scenario index + seed",
            "wall_s": round(time.perf_counter() - wall, 1),
        },
        "goals": {
            **(sequential_goals(sequential_rows, nine) if FULL else {}),
            "pace_within_50nm_autoloader_lamella": {
                "value": round(pace_autoloader, 3),
                "goal": ">= 0.95",
                "met": pace_autoloader >= 0.95,
            },
            "fused_over_pace_tracking_rms": {
                "value": round(track_ratio, 3),
                "goal": "<= 0.5",
                "met": track_ratio <= 0.5,
            },
            "fused_over_pace_defocus_rms_above_40deg": {
                "value": round(focus_ratio, 3),
                "goal": "<= 0.5",
                "met": focus_ratio <= 0.5,
            },
            "fused_over_pace_dose": {
                "value": round(dose_ratio, 4),
                "goal": "<= 1.02",
                "met": dose_ratio <= 1.02,
                "note": "dose spent per tilt image, all exposures counted (the tracking spot's "
                "shots included)",
            },
            "fused_over_pace_microscope_time": {
                "value": round(time_ratio, 4),
                "goal": "<= 0.85",
                "met": time_ratio <= 0.85,
                "note": "microscope time per tilt image taken; the total ratio is "
                f"{total_time_ratio:.4f} for {fused['records']} against {pace['records']} images",
            },
            **_calm_goals(calm),
            "fused_target1_within_50nm_autoloader_lamella": {
                "value": round(t1["target1_within_50nm"], 3),
                "goal": ">= 0.9",
                "met": t1["target1_within_50nm"] >= 0.9,
                "note": f"targets 2-4: {t1['others_within_50nm']:.3f}",
            },
            "late_jump_recovered_within_two_tilts": {
                "value": worst_jump,
                "goal": "<= 2",
                "met": worst_jump <= 2,
                "note": f"{JUMP_UM} µm jump at the first tilt beyond {JUMP_BEYOND_DEG:g}°, "
                f"fused, seeds {list(JUMP_SEEDS)}: tilts taken before every target is back "
                f"within {RECOVERED_NM:g} nm (worst seed)",
            },
            "fused_efficiency": {
                "value": round(fused["efficiency"], 3),
                "goal": ">= 0.5",
                "met": fused["efficiency"] >= 0.5,
                "note": "(Record exposure + stage tilting) / microscope time, engine ledger",
            },
            "dry_run_estimate_within_10pct": {
                "value": round(estimate_worst, 4),
                "goal": "<= 0.10",
                "met": estimate_worst <= 0.10,
                "note": "worst |estimate / microscope time - 1| over runs that took every Record",
            },
            "compute_ms_per_target_per_tilt": {
                "value": round(compute, 1),
                "goal": "<= 100",
                "met": compute <= 100,
                "note": "strategy time minus the twin's rendering of images it asked for",
            },
        },
    }


if __name__ == "__main__":
    print(json.dumps(main()))
