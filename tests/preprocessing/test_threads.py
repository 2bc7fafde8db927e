"""In-process execution: the threaded executor, and one movie spread over several threads."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from preprocessing_support import synthetic_movie

from tomopilot.processing.executor import (
    SerialExecutor,
    ThreadExecutor,
    threads_per_task,
)
from tomopilot.processing.motioncorr.correct_frames import correct_frames, each_frame
from tomopilot.processing.motioncorr.options import MotionCorrOptions


def test_threaded_movie_is_identical_to_the_single_threaded_one() -> None:
    shifts = np.cumsum(np.random.default_rng(2).normal(0.0, 0.8, (7, 2)), axis=0)
    frames = synthetic_movie(shifts, size=192, seed=4)
    frames[:, 10, 20] = 400  # a hot pixel to find and fill
    gain = np.random.default_rng(3).normal(1.0, 0.05, frames.shape[1:]).astype(np.float32)
    options = MotionCorrOptions(even_odd=True, ps_size_px=128, ps_every_n_frames=2)
    one = correct_frames(frames, pixel_size_a=2.0, options=options, gain=gain, threads=1)
    two = correct_frames(frames, pixel_size_a=2.0, options=options, gain=gain, threads=3)
    assert one.even is not None and two.even is not None
    assert one.power_spectrum is not None and two.power_spectrum is not None
    np.testing.assert_array_equal(one.shifts_px, two.shifts_px)
    np.testing.assert_array_equal(one.image, two.image)
    np.testing.assert_array_equal(one.even, two.even)
    np.testing.assert_array_equal(one.power_spectrum, two.power_spectrum)
    np.testing.assert_array_equal(one.hot_pixels, two.hot_pixels)
    assert [20, 10] in one.hot_pixels.tolist()


def test_thread_executor_keeps_order_reports_errors_and_shares_cores() -> None:
    seen: set[str] = set()

    def work(x: int) -> int:
        seen.add(threading.current_thread().name)
        return 10 // x

    with ThreadExecutor(2, cores=4) as executor:
        done: list[int] = []
        outcomes = executor.map(work, [5, 0, 2, 1], on_done=lambda o: done.append(o.index))
        assert [o.value for o in outcomes] == [2, None, 5, 10]
        assert outcomes[1].error is not None and outcomes[1].error.startswith("ZeroDivision")
        assert sorted(done) == [0, 1, 2, 3]
        assert threading.current_thread().name not in seen  # ran on the pool's threads
        assert threads_per_task(executor, 1) == 4  # a lone movie gets every core
        assert threads_per_task(executor, 10) == 2  # two at once, two cores each
    assert threads_per_task(SerialExecutor(), 1) == 1


def test_thread_executor_stops_when_asked() -> None:
    def work(x: int) -> int:
        time.sleep(0.05)
        return x

    with ThreadExecutor(1) as executor:
        outcomes = executor.map(work, list(range(6)), should_stop=lambda: True)
    assert outcomes[0].value == 0
    cancelled = [o for o in outcomes if o.error == "cancelled"]
    # the task that had already started when the stop came finishes; the rest never run
    assert len(cancelled) >= 4
    assert all(o.value == o.index for o in outcomes if o.error is None)


def test_bad_pixels_listed_by_bands_of_rows_are_in_nonzero_order() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from tomopilot.processing.motioncorr.bad_pixel_mask import bad_positions

    bad = np.random.default_rng(4).random((37, 23)) < 0.05
    bad[0, 0] = bad[-1, -1] = True  # the corners of the first and last bands
    with ThreadPoolExecutor(3) as pool:
        for threads in (1, 2, 3):
            bounds = np.linspace(0, bad.shape[0], threads + 1).astype(int)
            ys, xs = bad_positions(bad, bounds, pool if threads > 1 else None, threads)
            expected = np.nonzero(bad)
            np.testing.assert_array_equal(ys, expected[0])
            np.testing.assert_array_equal(xs, expected[1])


def test_frames_go_to_whichever_thread_is_free() -> None:
    """A thread held up on its first frame (fresh memory, a busy core) must not keep the frames
    it would have been dealt: the other thread does them, and every frame is done once."""
    n = 9
    done: dict[int, list[int]] = {0: [], 1: []}
    all_done = threading.Event()
    lock = threading.Lock()

    def work(k: int, i: int) -> None:
        with lock:
            done[k].append(i)
            if len(done[0]) + len(done[1]) == n:
                all_done.set()
        if k == 0 and len(done[0]) == 1:  # a slow first frame: held until all are done
            all_done.wait(timeout=10.0)

    with ThreadPoolExecutor(2) as pool:
        each_frame(pool, 2, n, work)
    assert sorted(done[0] + done[1]) == list(range(n))
    assert len(done[0]) <= 1  # dealt out in advance, thread 0 would have done 5 of the 9
    seen: list[tuple[int, int]] = []
    each_frame(None, 1, 4, lambda k, i: seen.append((k, i)))  # no pool: in order, here
    assert seen == [(0, 0), (0, 1), (0, 2), (0, 3)]
