"""Benchmark: what a twin exposure costs, in units of one 2048×2048 complex FFT.

Prints one JSON object (DESIGN.md §8). Every timing is a ratio to a 2048² complex64 FFT into a
reused output buffer (:mod:`fft_reference`, the yardstick every bench shares; same worker count
as the twin). Yardstick and image alternate: each timed image is divided by the yardstick
measured just before it, and a tilt's cost is the median of those ratios, so a change of the
machine's load during the run moves both sides of a ratio alike.
The goal: the *worst* tilt's image costs ≤ 15 FFTs (the mean over the tilts is reported too).

Run: ``python bench/twin.py`` (about 1 minute on 2 cores).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fft_reference
from tomopilot.imaging.fourier import WORKERS
from tomopilot.instrument import LowDoseArea
from tomopilot.instrument.twin import TwinConfig, TwinMicroscope

SIZE = 2048
TILTS_DEG = (0.0, 30.0, -30.0, 60.0, -60.0)
REPEATS = 5
FFT_REPEATS = 3


def _median_time(action: Callable[[], object], repeats: int) -> float:
    action()  # warm-up, as for the FFT yardstick
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _interleaved_ratio(action: Callable[[], object], repeats: int) -> float:
    """Median over ``repeats`` of (one timed ``action``) / (the yardstick timed just before)."""
    action()  # warm-up, as for the FFT yardstick
    ratios = []
    for _ in range(repeats):
        fft = _fft_seconds()
        start = time.perf_counter()
        action()
        ratios.append((time.perf_counter() - start) / fft)
    return statistics.median(ratios)


def _fft_seconds() -> float:
    return fft_reference.complex_fft_seconds((SIZE, SIZE), threads=WORKERS, repeats=FFT_REPEATS)


def main() -> dict[str, object]:
    config = TwinConfig.model_validate(
        {"seed": 1, "presets": {"record": {"camera_area_px": [SIZE, SIZE], "binning": 1}}}
    )
    scope = TwinMicroscope(config)
    scope.measurements.eucentricity(fine=True)
    scope.optics.set_focus_um(-3.0)
    scope.camera.acquire(LowDoseArea.RECORD)  # generates the specimen tiles in view

    fft_s = []
    image_ratios: dict[str, float] = {}
    for tilt in TILTS_DEG:
        scope.stage.tilt_to(tilt, backlash_compensate=True)
        fft_s.append(_fft_seconds())
        image_ratios[f"{tilt:+.0f}"] = _interleaved_ratio(
            lambda: scope.camera.acquire(LowDoseArea.RECORD), REPEATS
        )
    fft_ref = statistics.median(fft_s)
    scope.stage.tilt_to(0.0, backlash_compensate=True)
    movie_s = _median_time(lambda: scope.camera.acquire_movie(LowDoseArea.RECORD, n_frames=10), 2)
    movie_fft = _fft_seconds()
    mean_ratio = statistics.fmean(image_ratios.values())
    worst_ratio = max(image_ratios.values())
    yardstick = fft_reference.describe(WORKERS, FFT_REPEATS)
    how = (
        f"per tilt: 1 warm-up image, then {REPEATS} x (yardstick, one image), median of the "
        f"{REPEATS} ratios; yardstick: {yardstick}"
    )
    return {
        "bench": "twin",
        "metrics": {
            "image_size_px": SIZE,
            "workers": WORKERS,
            "fft_2048_complex64_s": round(fft_ref, 5),
            "image_cost_ffts_by_tilt": {k: round(v, 2) for k, v in image_ratios.items()},
            "image_cost_ffts_mean": round(mean_ratio, 2),
            "image_cost_ffts_worst": round(worst_ratio, 2),
            "movie_10_frames_cost_ffts": round(movie_s / movie_fft, 2),
            "movie_cost_ffts_per_frame": round(movie_s / movie_fft / 10, 2),
            "image_s_mean": round(mean_ratio * fft_ref, 4),
            "movie_s": round(movie_s, 4),
            "how": how,
        },
        "goals": {
            "image_cost_ffts_worst_tilt": {
                "value": round(worst_ratio, 2),
                "goal": "<= 15",
                "met": worst_ratio <= 15,
                "note": f"worst of {len(TILTS_DEG)} tilts; {how}",
            }
        },
    }


if __name__ == "__main__":
    print(json.dumps(main()))
