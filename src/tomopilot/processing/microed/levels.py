"""Leginon's rules for putting a signed diffraction series into unsigned 16-bit SMV frames.

Gain/dark-corrected Ceta frames are signed, with a background averaging zero. SMV holds uint16,
so the whole series is shifted by one constant:

1. ``LEGINON_OFFSET = -(lowest frame minimum)``, capped at 2000 counts (a deeper minimum is a
   cosmic ray that hit the dark reference, not background) and never negative.
2. Every pixel gets the offset added; pixels that would fall below zero (values below
   ``-offset``) are clipped to 0 and counted, and pixels above 65535 (uint16 overflow, e.g. the
   direct beam) are clipped to 65535 and counted.
3. ``IMAGE_PEDESTAL = offset + (highest frame minimum)``, the value DIALS subtracts: it is where
   the shifted background of the cleanest frame sits.

Examples
--------
The worked example of the Leginon documentation, frame minima (-10000, -145, -200):

>>> levels = series_levels([-10000, -145, -200])
>>> levels.offset, levels.pedestal, levels.capped
(2000, 1855.0, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "LEGINON_OFFSET_CAP",
    "UINT16_MAX",
    "SeriesLevels",
    "Uint16Frame",
    "series_levels",
    "to_uint16",
]

LEGINON_OFFSET_CAP = 2000
"""The largest offset Leginon applies, in counts."""

UINT16_MAX = 65535


@dataclass(frozen=True)
class SeriesLevels:
    """The offset and pedestal of one series.

    Attributes
    ----------
    offset
        LEGINON_OFFSET, the counts added to every pixel (an integer in ``[0, cap]``).
    pedestal
        IMAGE_PEDESTAL, ``offset + highest_minimum``.
    lowest_minimum, highest_minimum
        The lowest and the highest of the frames' minima.
    cap
        The cap that was applied to the offset.
    """

    offset: int
    pedestal: float
    lowest_minimum: float
    highest_minimum: float
    cap: int

    @property
    def capped(self) -> bool:
        """Whether the cap limited the offset (some pixels of some frame are clipped)."""
        return -self.lowest_minimum > self.cap


def series_levels(frame_minima: Sequence[float], *, cap: int = LEGINON_OFFSET_CAP) -> SeriesLevels:
    """Offset and pedestal of a series from its frames' minima.

    Parameters
    ----------
    frame_minima
        The minimum of each frame, in series order.
    cap
        The largest offset (Leginon: 2000).

    Raises
    ------
    ValueError
        If there are no minima, one is not finite, or ``cap`` is negative.
    """
    if not frame_minima:
        raise ValueError("a series needs at least one frame")
    if cap < 0:
        raise ValueError(f"the offset cap must not be negative, got {cap}")
    minima = [float(m) for m in frame_minima]
    if not all(math.isfinite(m) for m in minima):
        raise ValueError(f"frame minima must be finite, got {minima}")
    lowest, highest = min(minima), max(minima)
    offset = min(max(math.ceil(-lowest), 0), cap)
    return SeriesLevels(
        offset=offset,
        pedestal=offset + highest,
        lowest_minimum=lowest,
        highest_minimum=highest,
        cap=cap,
    )


@dataclass(frozen=True)
class Uint16Frame:
    """One frame shifted and clipped into uint16.

    Attributes
    ----------
    data
        The SMV pixels.
    clipped_low
        Pixels below ``-offset``, set to 0.
    clipped_high
        Pixels above ``65535 - offset`` (uint16 overflow), set to 65535.
    """

    data: NDArray[np.uint16]
    clipped_low: int
    clipped_high: int


def to_uint16(frame: NDArray[Any], offset: int) -> Uint16Frame:
    """Add ``offset``, round to whole counts, clip to ``[0, 65535]`` and count the clipped pixels.

    Raises
    ------
    ValueError
        If the frame holds a NaN or an infinity.
    """
    shifted = np.rint(np.asarray(frame, dtype=np.float64)) + offset
    if not np.all(np.isfinite(shifted)):
        raise ValueError("the frame holds NaN or infinite values")
    low = int(np.count_nonzero(shifted < 0))
    high = int(np.count_nonzero(shifted > UINT16_MAX))
    data = np.clip(shifted, 0, UINT16_MAX).astype(np.uint16)
    return Uint16Frame(data=data, clipped_low=low, clipped_high=high)
