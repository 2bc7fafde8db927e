"""The pixels of a movie that must be replaced before its frames are transformed.

Zero gain and defects, and, when asked, hot pixels: pixels of the unaligned sum (times the
gain) above its mean + σ·std over the pixels not already bad (RELION's rule). Each thread does a
band of rows, a block of rows at a time in a small buffer: no frame-sized memory beyond the mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import NDArray

from tomopilot.imaging.errors import ImagingError
from tomopilot.processing.motioncorr.options import MotionCorrOptions


class GainShapeError(ImagingError):
    """The gain reference and the movie frames differ in size."""


def run_split(pool: ThreadPoolExecutor | None, parts: int, work: Callable[[int], None]) -> None:
    """``work(k)`` for k in range(parts), on the pool's threads when there is a pool."""
    if pool is None:
        for k in range(parts):
            work(k)
        return
    for future in [pool.submit(work, k) for k in range(parts)]:
        future.result()


def mark_bad_pixels(
    frames: NDArray[np.generic],
    gain: NDArray[np.float32] | None,
    defects: NDArray[np.bool_] | None,
    options: MotionCorrOptions,
    pool: ThreadPoolExecutor | None = None,
    threads: int = 1,
) -> tuple[NDArray[np.bool_], NDArray[np.int64], tuple[NDArray[np.intp], NDArray[np.intp]]]:
    """The bad-pixel mask (hot ∪ defects ∪ zero gain), the hot pixels' (x, y) and the bad
    pixels' (rows, columns) as ``np.nonzero`` gives them, a band of rows per thread."""
    shape = frames.shape[1:]
    bad = np.zeros(shape, bool)
    hot_xy = np.zeros((0, 2), np.int64)
    if gain is not None and gain.shape != shape:
        raise GainShapeError(
            f"the gain reference is {gain.shape[1]}×{gain.shape[0]} px but the frames are "
            f"{shape[1]}×{shape[0]} px (check the gain, its rotation and super-resolution)"
        )
    if defects is not None and defects.shape != shape:
        raise ImagingError(f"defect mask {defects.shape} does not match frames {shape}")
    bounds = np.linspace(0, shape[0], threads + 1).astype(int)

    def mark(k: int) -> None:  # zero gain and defects, a band of rows per thread
        rows = slice(bounds[k], bounds[k + 1])
        if gain is not None:
            np.equal(gain[rows], 0, out=bad[rows])
        if defects is not None:
            bad[rows] |= defects[rows]

    if gain is not None or defects is not None:
        run_split(pool, threads, mark)
    if options.remove_hot_pixels:
        # The unaligned sum, its mean and spread over the pixels not already bad, and the
        # pixels above mean + σ·std: each thread does its band of rows, a block of rows at a
        # time in a small buffer (summed again for the threshold: no frame-sized memory).
        moments = np.zeros((threads, 3))  # count, Σ, Σ² per band (float64)
        block = max(1, (1 << 16) // max(1, shape[1]))

        def blocks(
            k: int, wanted: Callable[[int], bool] | None = None
        ) -> Iterator[tuple[int, int, NDArray[np.float32]]]:
            """(top, end, unaligned sum of those rows) over band ``k`` (the ``wanted``-th
            blocks only, when given)."""
            buffer = np.empty((block, shape[1]), np.float32)
            for number, top in enumerate(range(bounds[k], bounds[k + 1], block)):
                if wanted is not None and not wanted(number):
                    continue
                end = min(top + block, bounds[k + 1])
                total = buffer[: end - top]
                np.sum(frames[:, top:end], axis=0, dtype=np.float32, out=total)
                if gain is not None:
                    total *= gain[top:end]
                yield top, end, total

        # The largest good value of every block: the search for hot pixels sums again only
        # the blocks that pass the threshold (or hold a NaN).
        peaks: list[list[float]] = [[] for _ in range(threads)]

        def add_rows(k: int) -> None:
            for top, end, total in blocks(k):
                good = total[~bad[top:end]]
                values = good.astype(np.float64)
                moments[k] += (values.size, values.sum(), np.square(values, out=values).sum())
                peaks[k].append(float(good.max()) if good.size else -math.inf)

        run_split(pool, threads, add_rows)
        count, first, second = moments.sum(axis=0)
        if count:
            mean = first / count
            std = math.sqrt(max(second / count - mean * mean, 0.0))
            threshold = np.float32(mean + options.hot_pixel_sigma * std)
            found: list[list[tuple[NDArray[np.intp], NDArray[np.intp]]]] = [
                [] for _ in range(threads)
            ]

            def find_hot(k: int) -> None:
                for top, end, total in blocks(k, lambda b: not peaks[k][b] <= threshold):
                    hot_y, hot_x = np.nonzero((total > threshold) & ~bad[top:end])
                    if hot_y.size:
                        found[k].append((hot_y + top, hot_x))

            run_split(pool, threads, find_hot)
            parts = [part for band in found for part in band]  # row-major, as np.nonzero
            hot_y = np.concatenate([p[0] for p in parts] or [np.zeros(0, np.intp)])
            hot_x = np.concatenate([p[1] for p in parts] or [np.zeros(0, np.intp)])
            hot_xy = np.stack([hot_x, hot_y], axis=1).astype(np.int64)
            bad[hot_y, hot_x] = True
    if gain is None and defects is None and not options.remove_hot_pixels:
        return bad, hot_xy, (np.zeros(0, np.intp), np.zeros(0, np.intp))  # nothing marked
    return bad, hot_xy, bad_positions(bad, bounds, pool, threads)


def bad_positions(
    bad: NDArray[np.bool_],
    bounds: NDArray[np.int_],
    pool: ThreadPoolExecutor | None,
    threads: int,
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """``np.nonzero(bad)``, a band of rows per thread (the same row-major order)."""
    parts: list[tuple[NDArray[np.intp], NDArray[np.intp]]] = [
        (np.zeros(0, np.intp), np.zeros(0, np.intp))
    ] * threads

    def find(k: int) -> None:
        ys, xs = np.nonzero(bad[bounds[k] : bounds[k + 1]])
        parts[k] = (ys + bounds[k], xs)

    run_split(pool, threads, find)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
