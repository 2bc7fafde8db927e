"""BLAS is held to one thread while any movie of the process is inside the limit, and its own
setting comes back when the last one leaves."""

from __future__ import annotations

import threading

import numpy  # noqa: F401  (loads the BLAS library the limits act on)
from threadpoolctl import threadpool_info, threadpool_limits

from tomopilot.imaging.blas_threads import single_threaded_blas


def _blas_threads() -> list[int]:
    return [int(p["num_threads"]) for p in threadpool_info() if p["user_api"] == "blas"]


def test_the_limit_is_shared_by_overlapping_users_and_then_restored() -> None:
    """A job limits BLAS from its main thread; its movies enter and leave the limit on worker
    threads while it holds; the original setting comes back when the job leaves."""
    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        seen: list[list[int]] = []

        def movie() -> None:
            with single_threaded_blas():
                seen.append(_blas_threads())

        with single_threaded_blas():
            seen.append(_blas_threads())
            workers = [threading.Thread(target=movie) for _ in range(2)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(10)
            seen.append(_blas_threads())  # the movies left: still limited for the job
        after = _blas_threads()
    assert before and all(n == 2 for n in before)
    assert len(seen) == 4 and all(n == 1 for threads in seen for n in threads)
    assert after == before
