"""SerialEM's clock: ``ReportClock`` for the time, ``Delay`` for waits.

Waiting through SerialEM (rather than in tomopilot's process) keeps SerialEM in charge: the
operator's STOP ends a wait at once, and a SerialEM served by the twin advances its simulated
clock instead of sleeping. The reading is made monotonic: if a script resets SerialEM's clock
(``ResetClock``), the readings continue from where they were.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tomopilot.core.errors import ClockError
from tomopilot.instrument.serialem.session import SerialEMSession


class SerialEMClock:
    """A :class:`~tomopilot.core.clock.Clock` read from SerialEM."""

    def __init__(self, session: SerialEMSession) -> None:
        self._session = session
        self._last_report: float | None = None
        self._now_s = 0.0
        self._epoch = datetime.now(tz=UTC)

    def now_s(self) -> float:
        if self._session.stopped:  # nothing more may be sent: the wall clock carries on
            return self._now_s
        report = self._session.number("ReportClock")
        if self._last_report is not None and report >= self._last_report:
            self._now_s += report - self._last_report
        self._last_report = report
        return self._now_s

    def sleep(self, duration_s: float) -> None:
        if not duration_s >= 0:
            raise ClockError(f"cannot wait {duration_s} s")
        if duration_s > 0:
            self._session.call("Delay", float(duration_s), "sec")

    def datetime(self) -> datetime:
        return self._epoch + timedelta(seconds=self.now_s())
