"""The FFT yardstick every bench measures against: one 2D FFT into a reused output buffer.

A fresh output array per call costs page faults as large as the transform itself on some
machines (a 4096² half-spectrum is 67 MB), so a bound timed that way reads 10–50 % slow and
makes whatever is compared with it look better. Here the output is allocated once, the
transform is warmed up, and the median of ``repeats`` timed calls is returned. Used by
``bench/motioncorr.py``, ``bench/ctf.py`` and ``bench/twin.py``.
"""

from __future__ import annotations

import importlib
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def _pocketfft() -> Any:
    return importlib.import_module("scipy.fft._pocketfft.pypocketfft")


def _median_seconds(action: Callable[[], object], repeats: int) -> float:
    action()  # warm-up: plan caches, first touch of the buffers
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def real_fft_seconds(shape: tuple[int, int], *, threads: int = 1, repeats: int = 5) -> float:
    """Median seconds of one float32 → complex64 real 2D FFT into a reused buffer."""
    rng = np.random.default_rng(0)
    image = rng.standard_normal(shape).astype(np.float32)
    out = np.empty((shape[0], shape[1] // 2 + 1), np.complex64)
    r2c = _pocketfft().r2c
    return _median_seconds(lambda: r2c(image, (0, 1), True, 0, out, threads), repeats)


def complex_fft_seconds(shape: tuple[int, int], *, threads: int = 1, repeats: int = 5) -> float:
    """Median seconds of one complex64 2D FFT into a reused buffer."""
    rng = np.random.default_rng(0)
    data = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    out = np.empty_like(data)
    c2c = _pocketfft().c2c
    return _median_seconds(lambda: c2c(data, (0, 1), True, 0, out, threads), repeats)


def describe(threads: int, repeats: int) -> str:
    """How the yardstick was measured, for the JSON."""
    return (
        f"scipy pocketfft, {threads} thread(s), output buffer reused, 1 warm-up, "
        f"median of {repeats}"
    )
