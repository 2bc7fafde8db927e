"""The twin's housekeeping: autofill dewars, cold-FEG flashing, zero-loss-peak refinement.

Each duty costs realistic time on the simulated clock (twin_magnitudes §5): a dewar fill lasts
``dewar_refill_duration_s`` and comes every ``dewar_refill_interval_s``, with a burst of stage
drift after it; the cold FEG's emission decays until it is flashed; the zero-loss peak drifts
out of the slit at ``zlp_drift_ev_per_h`` until it is refined. A forced refill (the
``dewar_refill`` fault) begins at the first query of the dewars' state or exposure after its
time, whichever comes first.
"""

from __future__ import annotations

from tomopilot.instrument.events import FaultTriggered, HousekeepingDone
from tomopilot.instrument.twin.core import STREAM_HOUSEKEEPING, TwinCore, logged
from tomopilot.instrument.types import DewarStatus

DEWAR_POLL_S = 0.1  # one query of the dewars' state (SerialEM's AreDewarsFilling; est.)


class TwinHousekeeping:
    """Housekeeping of the twin (implements :class:`~tomopilot.instrument.Housekeeping`)."""

    _part = "housekeeping"

    def __init__(self, core: TwinCore) -> None:
        self._core = core
        self._n_refines = 0

    @logged
    def dewar_status(self) -> DewarStatus:
        core = self._core
        core.spend("housekeeping_poll", DEWAR_POLL_S)
        now = core.clock.now_s()
        if core.faults.on_time(now) is not None:  # a forced refill due: it is seen filling
            core.events.emit(FaultTriggered(time_s=now, fault="dewar_refill"))
            core.start_fill(now)
        filling = core.filling()
        return DewarStatus(
            filling=filling,
            seconds_until_next_fill=max(0.0, core.next_fill_s - now),
            seconds_left_in_fill=max(0.0, core.fill_end_s - now) if filling else 0.0,
        )

    def _done(self, task: str, duration_s: float) -> None:
        self._core.events.emit(
            HousekeepingDone(time_s=self._core.clock.now_s(), task=task, duration_s=duration_s)
        )

    @logged
    def wait_for_dewar(self) -> float:
        core = self._core
        if not core.filling():
            return 0.0
        waited = core.fill_end_s - core.clock.now_s()
        core.spend("dewar_wait", waited)
        self._done("dewar_wait", waited)
        return waited

    @logged
    def refill_dewar(self) -> None:
        core = self._core
        if not core.filling():
            core.start_fill(core.clock.now_s())
        self.wait_for_dewar()

    def flash_advised(self) -> bool:
        core = self._core
        return (
            core.clock.now_s() - core.last_flash_s >= core.config.housekeeping.feg_flash_interval_s
        )

    @logged
    def flash_feg(self) -> None:
        core = self._core
        duration = core.config.housekeeping.feg_flash_duration_s
        core.spend("feg_flash", duration)
        core.last_flash_s = core.clock.now_s()
        core.truth.note(core.last_flash_s, "feg_flash")
        self._done("feg_flash", duration)

    @logged
    def refine_zlp(self) -> None:
        core = self._core
        duration = core.config.housekeeping.zlp_refine_duration_s
        core.spend("zlp_refine", duration)
        self._n_refines += 1
        core.last_zlp_refine_s = core.clock.now_s()
        core.zlp_offset_start_ev = float(
            core.rng(STREAM_HOUSEKEEPING, self._n_refines).normal(0.0, 0.1)
        )
        core.truth.note(core.last_zlp_refine_s, "zlp_refine")
        self._done("zlp_refine", duration)
