"""One BLAS thread while our own threads share out the work.

The motion correction splits its work over frames and row blocks on its own threads, and calls
BLAS (``numpy.matmul``) only for small products inside them. OpenBLAS, as numpy ships it, answers
each call with all its threads and leaves them spinning for a while afterwards: on a 2-core
machine that spinning took about a third of a 4096² movie's CPU time and competed with our own
threads. :func:`single_threaded_blas` limits BLAS to one thread while any caller is inside it
(reference-counted, so concurrent movies on threads of one process share one limit, and the
original setting returns when the last one leaves). Enter it first from the thread that runs
the job: OpenBLAS ignores a limit set from another thread once the main thread has set and
restored one, so the job (:func:`~tomopilot.processing.motioncorr.run_motioncorr`) holds the
limit for the movies on its worker threads.

Examples
--------
>>> import numpy as np
>>> with single_threaded_blas():
...     value = float(np.ones(4) @ np.ones(4))
>>> value
4.0
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_LOCK = threading.Lock()
_USERS = 0
_LIMITER: Any = None
_CONTROLLER: Any = None


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Limit BLAS libraries to one thread inside the block (see the module docstring).

    The libraries are looked up once per process (about 10 ms); entering costs tens of µs.
    """
    global _USERS, _LIMITER, _CONTROLLER
    with _LOCK:
        if _USERS == 0:
            if _CONTROLLER is None:
                from threadpoolctl import ThreadpoolController

                _CONTROLLER = ThreadpoolController()
            _LIMITER = _CONTROLLER.limit(limits=1, user_api="blas")
        _USERS += 1
    try:
        yield
    finally:
        with _LOCK:
            _USERS -= 1
            if _USERS == 0 and _LIMITER is not None:
                _LIMITER.restore_original_limits()
                _LIMITER = None
