"""One frame made ready for the alignment and transformed, in one pass over its rows.

Counts × gain in float32, bad pixels filled (:class:`~tomopilot.imaging.bad_pixels.BadPixelFill`)
and the border rows and columns kept for the periodic-component correction
(:class:`~tomopilot.imaging.periodic_component.FrameEdges`), a block of rows at a time inside the
in-place real FFT's row pass, while the rows are in cache.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from tomopilot.imaging.bad_pixels import BadPixelFill
from tomopilot.imaging.frame_spectra import rfft2_in_place
from tomopilot.imaging.periodic_component import FrameEdges


def prepare_and_transform(
    frame: NDArray[Any],
    spectrum: NDArray[np.complex64],
    gain: NDArray[np.float32] | None,
    filler: BadPixelFill | None,
    seed: int,
    edges: FrameEdges,
    index: int,
) -> None:
    """One frame made ready (counts × gain in float32, bad pixels filled) and transformed
    into ``spectrum`` a block of rows at a time, while the rows are in cache (the frame may
    be the spectrum's own memory): the same numbers as preparing the whole frame first."""
    height, width = frame.shape
    values = None if filler is None else filler.values(frame, seed, gain)
    ys, xs = (filler.ys, filler.xs) if filler is not None else (None, None)
    top_row = np.empty(width, np.float32)
    bottom_row = np.empty(width, np.float32)
    left = np.empty(height, np.float32)
    right = np.empty(height, np.float32)

    def rows(top: int, end: int, out: NDArray[np.float32]) -> None:
        if gain is not None:
            np.multiply(frame[top:end], gain[top:end], out=out, dtype=np.float32, casting="unsafe")
        else:
            np.copyto(out, frame[top:end], casting="unsafe")
        if values is not None and ys is not None and xs is not None:
            first, last = np.searchsorted(ys, (top, end))  # bad pixels in row-major order
            out[ys[first:last] - top, xs[first:last]] = values[first:last]
        if top == 0:
            top_row[...] = out[0]
        if end == height:
            bottom_row[...] = out[end - top - 1]
        left[top:end] = out[:, 0]
        right[top:end] = out[:, -1]

    rfft2_in_place(spectrum, width, rows=rows)
    edges.set_borders(index, top_row, bottom_row, left, right)
