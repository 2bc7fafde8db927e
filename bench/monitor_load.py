"""Benchmark: 50 viewers of the web monitor must not slow a live acquisition by 5 % or more.

A twin acquisition runs as ``tomopilot acquire --serve`` runs it: the engine and the archive
recorder in one process, the web monitor in a child process reading the archive (SQLite, WAL) and
sending control requests back. In the loaded trials another process plays 50
viewers on loopback, each asking once a second for a page (session, tilt series, area, sessions
list or the JSON API, in turn, as a browser tab on auto-refresh would). The engine's progress is
measured in microscope seconds per wall second; the peer is the same run, same seed, same
recorder and server, with no viewer, measured in the same invocation.

The twin is paced (``microscope_s_per_wall_s``, :data:`PACE`): a real session runs at one
microscope second per wall second and its engine mostly waits on the microscope, while an
unpaced twin computes flat out on every core, so any other process on the computer, the viewers'
own load generator included, would slow it by the CPU it takes. Paced at 20x real time the
engine still does twenty times a real session's work per wall second, and the goal fails if the
monitor or the archive hold it up (database locks, the recorder in the engine's interpreter,
the monitor's CPU). The quiet trials must reach the pace, or the computer is too slow to say.

Trials alternate quiet and loaded (warm-up first), and the medians are compared. Page latency
p50/p95 is what the viewers saw. Prints one JSON object (DESIGN.md §8) on its last line.

Run with no arguments; ``--viewers URL N`` is the viewer process it starts itself.
"""

from __future__ import annotations

import http.client
import json
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

N_VIEWERS = 50
PACE = 20.0  # microscope seconds per wall second
POLL_S = 1.0
REPEATS = 3
PAGES = (
    "/sessions/1?fragment=1",
    "/series/1?fragment=1",
    "/api/sessions/1",
    "/areas/1?fragment=1",
    "/",
    "/api/tilt-series/2",
)
GOAL_SLOWDOWN = 0.05


# -- the viewers (a separate process, as browsers are) ----------------------------------------
def _viewer(host: str, port: int, number: int, stop: threading.Event, out: list[Any]) -> None:
    rng = random.Random(number)
    connection = http.client.HTTPConnection(host, port, timeout=30)
    time.sleep(rng.uniform(0, POLL_S))
    index = number
    while not stop.is_set():
        path = PAGES[index % len(PAGES)]
        index += 1
        start = time.perf_counter()
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=30)
            status = 0
        elapsed = time.perf_counter() - start
        out.append((status, elapsed))
        stop.wait(max(0.0, POLL_S - elapsed))
    connection.close()


def viewers_main(url: str, n: int) -> None:
    """Play ``n`` viewers until SIGTERM; print their (status, latency) list as JSON."""
    parts = urlsplit(url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    results: list[list[Any]] = [[] for _ in range(n)]
    threads = [
        threading.Thread(
            target=_viewer, args=(parts.hostname, parts.port, i, stop, results[i]), daemon=True
        )
        for i in range(n)
    ]
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    while not stop.is_set():
        stop.wait(0.1)
    for thread in threads:
        thread.join(timeout=35)
    print(json.dumps([r for per in results for r in per]), flush=True)


# -- the acquisition -------------------------------------------------------------------------
def _config(folder: Path) -> Path:
    data = {
        "microscope": {
            "twin": {
                "seed": 5,
                "microscope_s_per_wall_s": PACE,
                "presets": {
                    "record": {"camera_area_px": [2048, 2048], "binning": 8},
                    "preview": {"camera_area_px": [2048, 2048], "binning": 8, "exposure_s": 0.5},
                },
            }
        },
        "targets": [{"SSX": 0.0, "SSY": 0.0}, {"SSX": 1.2, "SSY": 0.8}, {"SSX": -1.0, "SSY": 1.4}],
        "settings": {
            "minTilt": -45,
            "maxTilt": 45,
            "step": 3,
            "groupSize": 2,
            "maxDefocus": -4,
            "minDefocus": -3,
            "delayIS": 0.1,
            "delayTilt": 0.1,
        },
        "strategy": "pace",
        "output": {"dir": str(folder / "run"), "root": "L1"},
    }
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def trial(loaded: bool) -> dict[str, Any]:
    """One acquisition with the monitor beside it; with 50 viewers if ``loaded``."""
    from tomopilot.acquisition.control import EngineControl
    from tomopilot.acquisition.output.side_files import detach_run_log
    from tomopilot.acquisition.plan.run_config import load_acquire_config
    from tomopilot.acquisition.run import attach_outputs, start_run
    from tomopilot.archive.live import record_run
    from tomopilot.store import open_store
    from tomopilot.web.monitor_process import MonitorProcess

    with tempfile.TemporaryDirectory(prefix="monitor_load_") as tmp:
        control = EngineControl()
        engine, resolved = start_run(load_acquire_config(_config(Path(tmp))), control=control)
        handler = attach_outputs(engine, resolved)
        store = open_store(engine.plan.run_dir)
        recorder = record_run(engine, resolved, store)
        server = MonitorProcess(store.url, control, host="127.0.0.1", port=0).start()
        viewers = None
        if loaded:
            viewers = subprocess.Popen(
                [sys.executable, __file__, "--viewers", server.url, str(N_VIEWERS)],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert viewers.stdout is not None
            assert viewers.stdout.readline().strip() == "ready"
        start = time.perf_counter()
        summary = engine.run()
        wall_s = time.perf_counter() - start
        samples: list[list[Any]] = []
        if viewers is not None:
            viewers.send_signal(signal.SIGTERM)
            out, _ = viewers.communicate(timeout=120)
            samples = json.loads(out.strip().splitlines()[-1])
        server.stop()
        assert recorder.close(60)
        detach_run_log(handler)
        store.close()
    return {
        "loaded": loaded,
        "wall_s": wall_s,
        "microscope_s": summary.microscope_s,
        "rate": summary.microscope_s / wall_s,
        "n_exposures": summary.n_exposures,
        "samples": samples,
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def main() -> dict[str, Any]:
    trial(loaded=False)  # warm-up: imports, specimen tiles, first renders
    quiet, loaded = [], []
    for _ in range(REPEATS):
        quiet.append(trial(loaded=False))
        loaded.append(trial(loaded=True))
    rate_quiet = statistics.median(t["rate"] for t in quiet)
    rate_loaded = statistics.median(t["rate"] for t in loaded)
    slowdown = 1.0 - rate_loaded / rate_quiet
    quiet_reaches_pace = rate_quiet >= 0.95 * PACE
    pairs = [1.0 - b["rate"] / a["rate"] for a, b in zip(quiet, loaded, strict=True)]
    noise = (max(t["rate"] for t in quiet) - min(t["rate"] for t in quiet)) / rate_quiet
    samples = [s for t in loaded for s in t["samples"]]
    ok = [latency for status, latency in samples if status == 200]
    n_requests = len(samples)
    viewer_wall = sum(t["wall_s"] for t in loaded)
    return {
        "bench": "monitor_load",
        "metrics": {
            "viewers": N_VIEWERS,
            "twin_microscope_s_per_wall_s": PACE,
            "viewer_poll_s": POLL_S,
            "pages": list(PAGES),
            "repeats": REPEATS,
            "n_exposures_per_run": quiet[0]["n_exposures"],
            "microscope_s_per_wall_s_quiet": [round(t["rate"], 2) for t in quiet],
            "microscope_s_per_wall_s_loaded": [round(t["rate"], 2) for t in loaded],
            "wall_s_quiet": [round(t["wall_s"], 2) for t in quiet],
            "wall_s_loaded": [round(t["wall_s"], 2) for t in loaded],
            "slowdown": round(slowdown, 4),
            "slowdown_per_pair": [round(p, 4) for p in pairs],
            "quiet_rate_spread": round(noise, 4),
            "quiet_reaches_pace": quiet_reaches_pace,
            "statuses": {
                str(code): sum(1 for status, _ in samples if status == code)
                for code in sorted({status for status, _ in samples})
            },
            "requests": n_requests,
            "requests_ok": len(ok),
            "requests_per_s": round(n_requests / viewer_wall, 1) if viewer_wall else 0.0,
            "latency_p50_ms": round(1000 * _percentile(ok, 0.5), 2),
            "latency_p95_ms": round(1000 * _percentile(ok, 0.95), 2),
            "latency_max_ms": round(1000 * max(ok, default=float("nan")), 2),
            "method": (
                "engine + recorder in one process, the monitor in its child process (as acquire "
                "--serve); viewers in a third process on 127.0.0.1, each GET once per second over "
                "keep-alive; same "
                f"twin run (seed 5, 31 tilts x 3 targets, paced at {PACE:g} microscope s per wall "
                "s, a real session runs at 1) with no viewer as the peer; trials "
                "alternate quiet/loaded after a warm-up, medians of microscope s per wall s; "
                "non-200 answers are pages asked for before the run created them; the spread of "
                "the quiet trials is the machine's noise floor"
            ),
        },
        "goals": {
            "engine_slowdown_with_50_viewers": {
                "value": round(slowdown, 4),
                "goal": f"< {GOAL_SLOWDOWN}",
                "met": slowdown < GOAL_SLOWDOWN and quiet_reaches_pace,
            }
        },
    }


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--viewers":
        viewers_main(sys.argv[2], int(sys.argv[3]))
    else:
        print(json.dumps(main(), allow_nan=False))
