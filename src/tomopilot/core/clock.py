"""Clocks: the simulated clock of the twin and the wall clock of real microscopes.

Everything that waits goes through a :class:`Clock`, so a run on the twin advances simulated
seconds instantly and deterministically, while a run on a real microscope really waits.

Examples
--------
>>> clock = SimulatedClock()
>>> clock.sleep(2.5)
>>> clock.now_s()
2.5
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from tomopilot.core.errors import ClockError

_DEFAULT_EPOCH = datetime(2026, 1, 1, 9, 0, 0, tzinfo=UTC)


@runtime_checkable
class Clock(Protocol):
    """Time source for instruments and engines (seconds, monotonic)."""

    def now_s(self) -> float:
        """Seconds since the clock's epoch."""
        ...

    def sleep(self, duration_s: float) -> None:
        """Wait ``duration_s`` seconds (a simulated clock only advances)."""
        ...

    def datetime(self) -> datetime:
        """The current date and time, for file headers such as mdoc ``DateTime``."""
        ...


class SimulatedClock:
    """A clock that advances only when told to, and never sleeps.

    Parameters
    ----------
    start_s
        Initial reading in seconds.
    epoch
        The calendar time that corresponds to a reading of 0 s.
    """

    def __init__(self, start_s: float = 0.0, epoch: datetime = _DEFAULT_EPOCH) -> None:
        self._now_s = float(start_s)
        self._epoch = epoch
        self._rate: float | None = None
        self._wall_origin_s = 0.0

    def now_s(self) -> float:
        return self._now_s

    def sleep(self, duration_s: float) -> None:
        self.advance(duration_s)

    def pace(self, microscope_s_per_wall_s: float | None) -> None:
        """Let simulated time run at most this many seconds per wall-clock second from now on.

        ``None`` (the default) never waits. With a rate, :meth:`advance` sleeps whenever the
        simulated reading runs ahead of the wall clock scaled by the rate, so a twin session
        can be played in real time (1.0) or at a chosen speed-up, e.g. to watch the web
        monitor, to train staff, or to load a computer as a microscope session would. Pacing
        only ever waits: results do not change.
        """
        if microscope_s_per_wall_s is not None and not microscope_s_per_wall_s > 0:
            raise ClockError(f"a clock's pace must be > 0, not {microscope_s_per_wall_s}")
        self._rate = microscope_s_per_wall_s
        if microscope_s_per_wall_s is not None:
            self._wall_origin_s = time.monotonic() - self._now_s / microscope_s_per_wall_s

    def advance(self, duration_s: float) -> None:
        """Move time forward by ``duration_s`` seconds."""
        if duration_s < 0 or duration_s != duration_s:
            raise ClockError(f"cannot advance a clock by {duration_s} s")
        self._now_s += float(duration_s)
        if self._rate is not None:
            ahead_s = self._wall_origin_s + self._now_s / self._rate - time.monotonic()
            if ahead_s > 0:
                time.sleep(ahead_s)

    def datetime(self) -> datetime:
        return self._epoch + timedelta(seconds=self._now_s)


class WallClock:
    """The real clock: :func:`time.monotonic` for durations, the system calendar for dates."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def now_s(self) -> float:
        return time.monotonic() - self._t0

    def sleep(self, duration_s: float) -> None:
        if duration_s < 0:
            raise ClockError(f"cannot sleep for {duration_s} s")
        time.sleep(duration_s)

    def datetime(self) -> datetime:
        return datetime.now(tz=UTC)
