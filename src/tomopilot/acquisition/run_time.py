"""The run's microscope time: its ledger across sessions of the run (crash, stop, resume).

A fresh run's ledger starts empty at the engine's start. A resumed run continues the ledger an
earlier session left: after an operator's stop from its ``finished`` record, after a crash from
the last one journalled, with the time from then to this session's start booked as
``interrupted`` (the work the crash lost and the time the run stood still).
"""

from __future__ import annotations

from typing import Any

from tomopilot.acquisition.time_ledger import TimeLedger
from tomopilot.core.clock import Clock


class RunTime:
    """The ledger of a run and the microscope time of its earlier sessions."""

    def __init__(self, clock: Clock, ledger: TimeLedger) -> None:
        self.clock = clock
        self.ledger = ledger
        self.start_s = clock.now_s()
        self.prior_s = 0.0  # microscope time of earlier sessions of this run (resume)

    def continue_from(self, earlier: dict[str, float], since_s: float | None = None) -> None:
        """Start from an earlier session's ledger. After a crash (``since_s``: when that ledger
        was journalled) the time from then to this session's start is booked as
        ``interrupted``: the work the crash lost and the time the run stood still."""
        self.ledger.add(earlier)
        gap = 0.0 if since_s is None else max(0.0, self.start_s - since_s)
        self.ledger.book("interrupted", gap)
        self.prior_s = sum(earlier.values()) + gap

    def session_s(self) -> float:
        """Microscope time of this session so far."""
        return self.clock.now_s() - self.start_s

    def point(self) -> dict[str, Any]:
        """The ledger so far, closed now, for the journal (see ``time_ledger``)."""
        return {
            "time_ledger_s": self.ledger.snapshot(self.prior_s + self.session_s()),
            "ledger_time_s": self.clock.now_s(),
        }

    def close(self) -> dict[str, Any]:
        """Close the ledger at the end of the session; the journal's fields for it."""
        self.ledger.close(self.prior_s + self.session_s())
        return {"time_ledger_s": self.ledger.as_dict(), "ledger_time_s": self.clock.now_s()}


__all__ = ["RunTime"]
