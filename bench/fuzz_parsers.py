"""Benchmark: a seeded mutation fuzzer over every parser of files from the field.

Each parser of bench/fuzz_targets.py (mdoc, mdoc import, Navigator autodoc and XML, targets
file, STAR + RELION import, YAML config; TIA .bin and .ser, SMV, MRC stack resume, MRC frames,
EER) gets mutated copies of its seed files: text mutations (a value replaced by a hostile one:
empty, NaN, 400 or 5,000 digits, a NUL, a latin-1 byte, a 5,000-character path; lines deleted,
duplicated, swapped or repeated 2,000 times; a STAR row of 100,000 fields) and binary ones (bit
flips, header words set to 0, -1, 2^31-1 ..., truncation, splices). 1 to 4 mutations per input
(a mutation that would make the input larger than 4 MiB is skipped), from
``random.Random(seed)``: the same seed gives the same inputs.

Every input runs in a worker process (two workers, one per core) under a CPU-time cap and an
address-space cap (``resource.setrlimit``); a worker is reused for many inputs and restarted
when it dies (a time-out). For each input the worker resets the kernel's peak-RSS mark
(``/proc/self/clear_refs``) and reads it back, so the peak memory of each input is measured on
its own. An input is:

- ``typed``: the parser raised tomopilot's typed error (TomopilotError);
- ``untyped``: anything else (a bug);
- ``time-out``: the CPU cap (5 s) or the wall cap (20 s) was hit;
- ``over memory``: the peak grew more than 10 x the input + 200 MB, or an allocation failed
  against the address-space cap (MemoryError anywhere in the error's chain).

Goals: >= 10,000 inputs per text parser and 2,000 per binary one, 0 untyped, 0 time-outs,
0 over memory. No timing goal (a fuzzer has no peer); the run takes a few minutes on 2 cores.

Run: ``.venv/bin/python bench/fuzz_parsers.py`` (optional: ``--seed N``, ``--scale F`` for a
shorter run; ``--show N`` prints N examples of each untyped error).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import get_context
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzz_targets import Files, Target, targets
from tomopilot.core.errors import TomopilotError

TEXT_INPUTS = 10_000
BINARY_INPUTS = 2_000
CPU_CAP_S = 5
WALL_CAP_S = 20.0
MEMORY_SLACK_BYTES = 200 * 2**20
WORKERS = 2
MAX_INPUT_BYTES = 4 * 2**20

HOSTILE = [
    "",
    "-",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e999",
    "-0",
    "0",
    "-1",
    "1,5",
    "0x1F",
    "b",
    "True",
    "9" * 20,
    "9" * 400,
    "9" * 5000,
    "-" + "9" * 400,
    "\x00",
    "µ",
    "'",
    '"',
    "[",
    "]",
    "=",
    "data_",
    "loop_",
    "_rlnX",
    "#",
    "a" * 5000,
    "C:\\" + "d" * 300 + "\\x.tif",
    " \t ",
]
HOSTILE_BYTES = [b"\xb5", b"\xff\xfe", b"\x00", b"\r", b"\n\n", b"\xe9t\xe9"]
INTS = [0, 1, -1, 2, 255, 65535, 65536, 2**31 - 1, -(2**31), 2**32 - 1, 10**9, 0x4949, 65001]


# ---------------------------------------------------------------- mutation


def _mutate_text(data: bytes, rnd: random.Random, other: bytes) -> bytes:
    lines = data.split(b"\n")
    choice = rnd.randrange(11)
    index = rnd.randrange(len(lines))
    if choice <= 3:  # a value (after '=' or a whitespace token) replaced by a hostile one
        line = lines[index]
        value = rnd.choice(HOSTILE).encode("utf-8")
        if b"=" in line and rnd.random() < 0.7:
            key = line.split(b"=", 1)[0]
            lines[index] = key + b"= " + value
        else:
            tokens = line.split()
            if tokens:
                tokens[rnd.randrange(len(tokens))] = value
                lines[index] = b" ".join(tokens)
    elif choice == 4:
        del lines[index]
    elif choice == 5:
        lines.insert(index, lines[rnd.randrange(len(lines))])
    elif choice == 6:
        other_index = rnd.randrange(len(lines))
        lines[index], lines[other_index] = lines[other_index], lines[index]
    elif choice == 7:
        lines[index:index] = [lines[index]] * 2000
    elif choice == 8:
        other_lines = other.split(b"\n")
        lines.insert(index, other_lines[rnd.randrange(len(other_lines))])
    elif choice == 9:
        if rnd.random() < 0.1:
            lines.insert(index, b" ".join([b"1"] * 100_000))
        else:
            lines[index] = lines[index] + rnd.choice(HOSTILE_BYTES)
    else:
        return _mutate_bytes(data, rnd, other)
    return b"\n".join(lines)


def _mutate_bytes(data: bytes, rnd: random.Random, other: bytes) -> bytes:
    buffer = bytearray(data)
    choice = rnd.randrange(8)
    if not buffer:
        return bytes(rnd.randrange(256) for _ in range(rnd.randrange(64)))
    position = rnd.randrange(len(buffer))
    if choice <= 1:
        for _ in range(rnd.randint(1, 8)):
            spot = rnd.randrange(len(buffer))
            buffer[spot] ^= 1 << rnd.randrange(8)
    elif choice <= 3:  # a header word set to a boundary value
        head = min(len(buffer), 1100)
        spot = rnd.randrange(max(1, head - 8)) & ~1
        width = rnd.choice((2, 4, 8))
        value = rnd.choice(INTS) % (1 << (8 * width))
        buffer[spot : spot + width] = value.to_bytes(width, "little")[: len(buffer) - spot]
    elif choice == 4:
        del buffer[position:]
    elif choice == 5:
        buffer[position:position] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 64)))
    elif choice == 6:
        start = rnd.randrange(len(other)) if other else 0
        chunk = other[start : start + rnd.randint(1, 256)]
        buffer[position : position + len(chunk)] = chunk
    else:
        end = min(len(buffer), position + rnd.randint(1, 512))
        buffer[position:position] = buffer[position:end]
    return bytes(buffer)


def make_input(target: Target, rnd: random.Random) -> Files:
    """A mutated copy of one of the target's seeds (1-4 mutations of one of its files)."""
    seed = dict(rnd.choice(target.seeds))
    name = rnd.choice(target.mutable) if target.mutable else next(iter(seed))
    other = rnd.choice(target.seeds)[name]
    data = seed[name]
    mutate = _mutate_text if target.kind == "text" else _mutate_bytes
    for _ in range(rnd.randint(1, 4)):
        mutated = mutate(data, rnd, other)
        if len(mutated) <= MAX_INPUT_BYTES:  # a repeat of a repeat would make gigabytes
            data = mutated
    seed[name] = data
    return seed


# ---------------------------------------------------------------- worker


def _status(key: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _memory_error_in_chain(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, MemoryError):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _run_one(target: Target, files: Files, folder: Path) -> dict[str, Any]:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    size = sum(len(d) for d in files.values())
    limit = 10 * size + MEMORY_SLACK_BYTES
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu = int(used.ru_utime + used.ru_stime) + 1 + CPU_CAP_S
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, resource.RLIM_INFINITY))
    resource.setrlimit(resource.RLIMIT_AS, (_status("VmSize:") + limit, resource.RLIM_INFINITY))
    exact = _reset_peak()
    before = _status("VmRSS:")
    outcome, detail, memory_error = "ok", "", False
    t0 = time.perf_counter()
    try:
        target.run(folder)
    except TomopilotError as exc:
        outcome, memory_error = "typed", _memory_error_in_chain(exc)
    except BaseException as exc:  # counting exactly these is the point
        outcome, memory_error = "untyped", _memory_error_in_chain(exc)
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:300]
        frames = traceback.extract_tb(exc.__traceback__)[-3:]
        detail += " @ " + " < ".join(f"{Path(f.filename).name}:{f.lineno}" for f in frames[::-1])
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    seconds = time.perf_counter() - t0
    peak = _status("VmHWM:") - before if exact else 0
    return {
        "seconds": seconds,
        "outcome": outcome,
        "detail": detail,
        "peak": max(0, peak),
        "size": size,
        "over_memory": memory_error or peak > limit,
    }


def _worker(connection: Connection, names: list[str]) -> None:
    import logging

    logging.getLogger("tifffile").setLevel(logging.CRITICAL + 1)  # it logs every bad tag
    by_name = {t.name: t for t in targets() if t.name in names}
    folder = Path(
        tempfile.mkdtemp(prefix="fuzz-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None)
    )
    for target in by_name.values():  # warm up: imports and lazily loaded libraries
        for seed in target.seeds:
            with contextlib.suppress(BaseException):
                _run_one(target, seed, folder / "warm")
    connection.send("ready")
    while True:
        message = connection.recv()
        if message is None:
            break
        name, files = message
        connection.send(_run_one(by_name[name], files, folder / "in"))
    shutil.rmtree(folder, ignore_errors=True)


class Worker:
    """A worker process, restarted when it dies or hangs."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.restarts = -1
        self._start()

    def _start(self) -> None:
        context = get_context("fork")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(child, self.names), daemon=True)
        self.process.start()
        self.restarts += 1
        if not self.connection.poll(300) or self.connection.recv() != "ready":
            raise RuntimeError("fuzz worker did not start")

    def run(self, name: str, files: Files) -> dict[str, Any]:
        self.connection.send((name, files))
        if self.connection.poll(WALL_CAP_S):
            try:
                return dict(self.connection.recv())
            except EOFError:
                pass
        self.process.kill()
        self.process.join()
        code = self.process.exitcode
        self._start()
        why = "CPU cap" if code == -signal.SIGXCPU else f"wall cap or death (exit {code})"
        return {
            "outcome": "timeout",
            "detail": why,
            "peak": 0,
            "size": 0,
            "over_memory": False,
            "seconds": WALL_CAP_S,
        }

    def close(self) -> None:
        self.connection.send(None)
        self.process.join(5)


def _dump(folder: Path, files: Files, outcome: dict[str, Any]) -> None:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    (folder / "outcome.json").write_text(json.dumps(outcome))


def _run_share(worker: Worker, name: str, inputs: list[Files]) -> list[dict[str, Any]]:
    return [worker.run(name, files) for files in inputs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--show", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="fuzz only these parsers (a partial run)")
    parser.add_argument("--dump", type=Path, help="write failing inputs below this folder")
    args = parser.parse_args()
    all_targets = [t for t in targets() if not args.only or t.name in args.only]
    names = [t.name for t in all_targets]
    workers = [Worker(names) for _ in range(WORKERS)]
    results: dict[str, Any] = {}
    load_start = os.getloadavg()[0]  # other work on the machine slows the run, not the goals
    started = time.perf_counter()
    for number, target in enumerate(all_targets):
        goal = TEXT_INPUTS if target.kind == "text" else BINARY_INPUTS
        count = max(1, int(goal * args.scale))
        rnd = random.Random(f"{args.seed}:{target.name}")
        inputs = [make_input(target, rnd) for _ in range(count)]
        counts = {"ok": 0, "typed": 0, "untyped": 0, "timeout": 0}
        examples: dict[str, int] = {}
        peak, peak_ratio, over, parse_times = 0, 0.0, 0, []
        t0 = time.perf_counter()
        # The two workers take alternate inputs, each driven from its own thread.
        with ThreadPoolExecutor(WORKERS) as pool:
            shares = list(
                pool.map(
                    _run_share,
                    workers,
                    [target.name] * WORKERS,
                    [inputs[share::WORKERS] for share in range(WORKERS)],
                )
            )
        ordered = [None] * count
        for share, results_of_share in enumerate(shares):
            ordered[share::WORKERS] = results_of_share
        for index, outcome in enumerate(ordered):
            assert outcome is not None
            if args.dump and (
                outcome["outcome"] in ("untyped", "timeout") or outcome["over_memory"]
            ):
                _dump(args.dump / target.name / f"{index:05d}", inputs[index], outcome)
            counts[outcome["outcome"]] += 1
            peak = max(peak, outcome["peak"])
            limit = 10 * outcome["size"] + MEMORY_SLACK_BYTES
            peak_ratio = max(peak_ratio, outcome["peak"] / limit if outcome["size"] else 0.0)
            over += bool(outcome["over_memory"])
            parse_times.append(outcome["seconds"])
            if outcome["outcome"] in ("untyped", "timeout") or outcome["over_memory"]:
                key = outcome["detail"].split(" @ ")[0][:120] or "over memory"
                if examples.get(key, 0) < args.show:
                    print(
                        f"[{target.name}] {outcome['outcome']}: {outcome['detail']}",
                        file=sys.stderr,
                    )
                examples[key] = examples.get(key, 0) + 1
        seconds = time.perf_counter() - t0
        results[target.name] = {
            "kind": target.kind,
            "inputs": count,
            "ok": counts["ok"],
            "typed_errors": counts["typed"],
            "untyped_exceptions": counts["untyped"],
            "timeouts": counts["timeout"],
            "over_memory": over,
            "peak_memory_mb": round(peak / 2**20, 1),
            "peak_over_limit": round(peak_ratio, 3),
            "seconds": round(seconds, 1),
            "parse_ms_median": round(1000 * sorted(parse_times)[len(parse_times) // 2], 2),
            "parse_ms_max": round(1000 * max(parse_times), 1),
            "distinct_untyped": len([k for k in examples if k != "over memory"]),
        }
        print(
            f"{number + 1}/{len(all_targets)} {target.name}: {json.dumps(results[target.name])}",
            file=sys.stderr,
        )
    for worker in workers:
        worker.close()
    total_s = time.perf_counter() - started
    text = [r for r in results.values() if r["kind"] == "text"]
    binary = [r for r in results.values() if r["kind"] == "binary"]
    untyped = sum(r["untyped_exceptions"] for r in results.values())
    timeouts = sum(r["timeouts"] for r in results.values())
    over = sum(r["over_memory"] for r in results.values())
    min_text = min(r["inputs"] for r in text)
    min_binary = min(r["inputs"] for r in binary)
    goals = {
        "min_inputs_per_text_parser": {
            "value": min_text,
            "goal": ">= 10000",
            "met": min_text >= 10_000,
        },
        "min_inputs_per_binary_parser": {
            "value": min_binary,
            "goal": ">= 2000",
            "met": min_binary >= 2_000,
        },
        "untyped_exceptions": {"value": untyped, "goal": "== 0", "met": untyped == 0},
        "timeouts": {"value": timeouts, "goal": "== 0", "met": timeouts == 0},
        "inputs_over_memory_limit": {"value": over, "goal": "== 0", "met": over == 0},
    }
    print(
        json.dumps(
            {
                "bench": "fuzz_parsers",
                "metrics": {
                    "parsers": results,
                    "seed": args.seed,
                    "total_seconds": round(total_s, 1),
                    "worker_restarts": sum(w.restarts for w in workers),
                    "load_average_1min_at_start_and_end": [
                        round(load_start, 1),
                        round(os.getloadavg()[0], 1),
                    ],
                    "max_input_bytes": MAX_INPUT_BYTES,
                    "method": (
                        f"seeded mutation fuzzing, {WORKERS} worker processes; per input "
                        f"RLIMIT_CPU {CPU_CAP_S} s, wall cap {WALL_CAP_S} s, RLIMIT_AS of "
                        "10 x input + 200 MB above the worker's size; peak = VmHWM after "
                        "resetting it through /proc/self/clear_refs, minus VmRSS before; "
                        "memory limit per input 10 x input size + 200 MB"
                    ),
                },
                "goals": goals,
            }
        )
    )


if __name__ == "__main__":
    main()
