"""Element-wise image passes in cache-sized row bands, spread over the twin's worker threads.

A chain of element-wise numpy passes over a 2048² image streams it through memory once per
pass; on a band small enough to stay in cache the chain costs about one stream. numpy releases
the GIL in these passes, so bands on different threads run at once.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from tomopilot.imaging.fourier import WORKERS

BAND_ELEMENTS = 1 << 16  # elements per row band of the element-wise passes (stays in cache)

_POOL = ThreadPoolExecutor(max_workers=WORKERS)


def in_bands(n_rows: int, row_elements: int, work: Callable[[int, int], None]) -> None:
    """Run ``work(a, b)`` over row bands [a, b) of ``n_rows`` rows, spread over the workers.

    Each band is small enough to stay in cache through a chain of element-wise passes; numpy
    releases the GIL in them, so the workers run at once. Bands never overlap, and each
    element is computed the same way whatever the band, so the result is the same for any
    worker count.
    """
    step = max(1, BAND_ELEMENTS // max(1, row_elements))
    bands = [(a, min(n_rows, a + step)) for a in range(0, n_rows, step)]
    n_workers = min(WORKERS, len(bands))

    def run(share: int) -> None:
        for a, b in bands[share::n_workers]:
            work(a, b)

    if n_workers <= 1:
        run(0)
    else:
        list(_POOL.map(run, range(n_workers)))
