"""Measurements and housekeeping through SerialEM.

Autofocus: ``G -1`` measures without changing the focus, ``SetTargetDefocus`` + ``G 1``
measures and corrects to the target; ``ReportAutoFocus`` gives the measured defocus and an
error code (1 inconsistent, 2 absolute limit, 3 change limit, -1 other), which is raised as
:class:`AutofocusFailed`. Eucentricity: ``Eucentricity 1`` (rough) or ``2`` (refine), the z
change read from ``ReportStageXYZ`` before and after.

Housekeeping: ``AreDewarsFilling`` before each exposure, ``DewarsRemainingTime`` counted down
between occasional reads; ``LongOperation Re 0`` refills
the refrigerant; ``IsFEGFlashingAdvised 1`` / ``0`` (high / low temperature) with
``NextFEGFlashHighTemp`` choosing the kind, then ``LongOperation FF 0`` flashes; ``RefineZLP``
re-centres the slit. Waits go through SerialEM's ``Delay``.
"""

from __future__ import annotations

import math

from tomopilot.instrument.events import HousekeepingDone
from tomopilot.instrument.serialem.core import SerialEMCore, reported_int
from tomopilot.instrument.serialem.session import SerialEMCommandError
from tomopilot.instrument.types import DewarStatus

REFRESH_S = 600.0
"""Ask ``DewarsRemainingTime`` again after this long."""
REFRESH_MARGIN_S = 60.0
"""... or when the countdown comes within twice this of a fill."""

AUTOFOCUS_FAILURES = {
    1: "inconsistent focus measurements",
    2: "absolute focus limits exceeded",
    3: "focus change limits exceeded",
    -1: "other error",
}


class AutofocusFailed(SerialEMCommandError):
    """SerialEM's autofocus reported a failure code."""


class SerialEMMeasurements:
    """Autofocus and eucentricity (implements :class:`~tomopilot.instrument.Measurements`)."""

    def __init__(self, core: SerialEMCore) -> None:
        self._core = core

    def _report(self) -> float:
        values = self._core.session.values("ReportAutoFocus")
        if not values:
            raise AutofocusFailed("ReportAutoFocus", "no autofocus result was reported")
        code = reported_int(values[1]) if len(values) > 1 else 0
        if code != 0:
            raise AutofocusFailed("G", AUTOFOCUS_FAILURES.get(code, f"failure code {code}"))
        return float(values[0])

    def measure_defocus_um(self) -> float:
        core = self._core
        core.session.call("G", -1)
        core.area = "F"
        return self._report()

    def autofocus(self, target_defocus_um: float) -> float:
        core = self._core
        originals = core.originals
        if originals.target_defocus_um is None:
            originals.target_defocus_um = core.session.number("ReportTargetDefocus")
        core.session.call("SetTargetDefocus", float(target_defocus_um))
        core.session.call("G", 1)
        core.area = "F"
        core.focus_cache = None
        return self._report()

    def eucentricity(self, *, fine: bool = False) -> float:
        core = self._core
        before = core.stage_position().z_um
        core.session.call("Eucentricity", 2 if fine else 1)
        core.forget_position()
        core.area = None
        return core.stage_position().z_um - before


class SerialEMHousekeeping:
    """Dewars, cold FEG and slit (implements :class:`~tomopilot.instrument.Housekeeping`)."""

    def __init__(self, core: SerialEMCore) -> None:
        self._core = core
        self._high_temperature = False
        self._remaining: tuple[float, float] | None = None

    def _filling(self) -> bool:
        return reported_int(self._core.session.number("AreDewarsFilling")) != 0

    def dewar_status(self) -> DewarStatus:
        filling = self._filling()
        return DewarStatus(
            filling=filling,
            seconds_until_next_fill=0.0 if filling else self._until_next_fill(),
            seconds_left_in_fill=0.0,
        )

    def _until_next_fill(self) -> float:
        """Seconds to the next scheduled fill (inf if none).

        ``DewarsRemainingTime`` is asked once and then counted down on the clock; it is asked
        again when the countdown nears a fill, after a fill, or every ``REFRESH_S`` seconds, so
        the check before each exposure costs SerialEM one command (``AreDewarsFilling``).
        """
        core = self._core
        now = core.clock.now_s()
        if self._remaining is not None:
            asked_at, remaining = self._remaining
            left = remaining - (now - asked_at)
            if now - asked_at < REFRESH_S and left > 2 * REFRESH_MARGIN_S:
                return left
        try:
            remaining = core.session.number("DewarsRemainingTime")
        except SerialEMCommandError:
            remaining = -1.0
        remaining = remaining if remaining >= 0 else math.inf
        self._remaining = (now, remaining)
        return remaining

    def _done(self, task: str, duration_s: float) -> None:
        core = self._core
        core.events.emit(
            HousekeepingDone(time_s=core.clock.now_s(), task=task, duration_s=duration_s)
        )

    def wait_for_dewar(self) -> float:
        core = self._core
        start = core.clock.now_s()
        if not self._filling():
            return 0.0
        while self._filling():
            core.clock.sleep(core.options.dewar_poll_s)
        waited = core.clock.now_s() - start
        self._remaining = None
        core.forget_position()  # a fill moves the stage: read it again
        self._done("dewar_wait", waited)
        return waited

    def refill_dewar(self) -> None:
        core = self._core
        if not self._filling():
            core.session.call("LongOperation", "Re", "0")
        self.wait_for_dewar()

    def flash_advised(self) -> bool:
        session = self._core.session
        self._high_temperature = reported_int(session.number("IsFEGFlashingAdvised", 1)) == 1
        if self._high_temperature:
            return True
        return reported_int(session.number("IsFEGFlashingAdvised", 0)) == 1

    def flash_feg(self) -> None:
        core = self._core
        start = core.clock.now_s()
        core.session.call("NextFEGFlashHighTemp", 1 if self._high_temperature else 0)
        core.session.call("LongOperation", "FF", "0")
        self._high_temperature = False
        self._done("feg_flash", core.clock.now_s() - start)

    def refine_zlp(self) -> None:
        core = self._core
        start = core.clock.now_s()
        core.session.call("RefineZLP")
        core.forget_position()
        core.area = None
        self._done("zlp_refine", core.clock.now_s() - start)
