"""Benchmark: what a twin exposure costs, in units of one 2048×2048 complex FFT.

Prints one JSON object (DESIGN.md §8). Every timing is a ratio to a 2048² complex64 FFT
(scipy.fft, same worker count as the twin) timed in the same run, so the figures survive a
loaded machine. The goal: an image costs ≤ 15 FFTs, averaged over a tilt series' angles.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable

import numpy as np
import scipy.fft as sfft

from tomopilot.imaging.fourier import WORKERS
from tomopilot.instrument import LowDoseArea
from tomopilot.instrument.twin import TwinConfig, TwinMicroscope

SIZE = 2048
TILTS_DEG = (0.0, 30.0, -30.0, 60.0, -60.0)
REPEATS = 3


def _median_time(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> dict[str, object]:
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((SIZE, SIZE)) + 1j * rng.standard_normal((SIZE, SIZE))).astype(
        np.complex64
    )
    sfft.fft2(data, workers=WORKERS)  # plan and warm up
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
        fft = _median_time(lambda: sfft.fft2(data, workers=WORKERS), 5)
        image = _median_time(lambda: scope.camera.acquire(LowDoseArea.RECORD), REPEATS)
        fft_s.append(fft)
        image_ratios[f"{tilt:+.0f}"] = image / fft
    fft_ref = statistics.median(fft_s)
    scope.stage.tilt_to(0.0, backlash_compensate=True)
    movie_s = _median_time(lambda: scope.camera.acquire_movie(LowDoseArea.RECORD, n_frames=10), 2)
    movie_fft = _median_time(lambda: sfft.fft2(data, workers=WORKERS), 5)
    mean_ratio = statistics.fmean(image_ratios.values())
    return {
        "bench": "twin",
        "metrics": {
            "image_size_px": SIZE,
            "workers": WORKERS,
            "fft_2048_complex64_s": round(fft_ref, 5),
            "image_cost_ffts_by_tilt": {k: round(v, 2) for k, v in image_ratios.items()},
            "image_cost_ffts_mean": round(mean_ratio, 2),
            "image_cost_ffts_worst": round(max(image_ratios.values()), 2),
            "movie_10_frames_cost_ffts": round(movie_s / movie_fft, 2),
            "movie_cost_ffts_per_frame": round(movie_s / movie_fft / 10, 2),
            "image_s_mean": round(mean_ratio * fft_ref, 4),
            "movie_s": round(movie_s, 4),
        },
        "goals": {
            "image_cost_ffts": {
                "value": round(mean_ratio, 2),
                "goal": "<= 15",
                "met": mean_ratio <= 15,
            }
        },
    }


if __name__ == "__main__":
    print(json.dumps(main()))
