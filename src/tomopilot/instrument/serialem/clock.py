"""SerialEM's clock: ``ReportClock`` for the time, ``Delay`` for waits.

Waiting through SerialEM (rather than in tomopilot's process) keeps SerialEM in charge: the
operator's STOP ends a wait at once, and a SerialEM served by the twin advances its simulated
clock instead of sleeping. The reading is made monotonic: if a script resets SerialEM's clock
(``ResetClock``), the readings continue from where they were.

``ReportClock`` is asked only when a command has been sent since the last reading: between
commands a real SerialEM's clock runs at the rate of this computer's monotonic clock, so the
time is carried forward from the last reading (a SerialEM served by the twin advances only on
commands, so the last reading stands). This halves the commands the run's time ledger would
otherwise send (it reads the clock before and after each command).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from tomopilot.core.errors import ClockError
from tomopilot.instrument.serialem.session import SerialEMSession


class SerialEMClock:
    """A :class:`~tomopilot.core.clock.Clock` read from SerialEM."""

    def __init__(self, session: SerialEMSession) -> None:
        self._session = session
        self._simulated = bool(getattr(session.module, "simulated_clock", False))
        self._last_report: float | None = None
        self._synced_s = 0.0  # SerialEM's time at the last reading (monotonic)
        self._now_s = 0.0  # the last time returned
        self._read_at: float | None = None  # this computer's monotonic clock then
        self._sent_at_read = -1
        self._epoch = datetime.now(tz=UTC)

    def now_s(self) -> float:
        session = self._session
        if session.stopped:  # nothing more may be sent: the wall clock carries on
            return self._now_s
        if self._read_at is not None and session.n_sent == self._sent_at_read:
            if not self._simulated:  # nothing sent since the last reading
                carried = self._synced_s + (time.monotonic() - self._read_at)
                self._now_s = max(self._now_s, carried)
            return self._now_s
        report = session.number("ReportClock")
        if self._last_report is not None and report >= self._last_report:
            self._synced_s += report - self._last_report
        self._last_report = report
        self._read_at = time.monotonic()
        self._sent_at_read = session.n_sent
        self._now_s = max(self._now_s, self._synced_s)
        return self._now_s

    def sleep(self, duration_s: float) -> None:
        if not duration_s >= 0:
            raise ClockError(f"cannot wait {duration_s} s")
        if duration_s > 0:
            self._session.call("Delay", float(duration_s), "sec")

    def datetime(self) -> datetime:
        return self._epoch + timedelta(seconds=self.now_s())
