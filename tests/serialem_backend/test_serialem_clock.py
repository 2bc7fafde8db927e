"""SerialEM's clock as the backend reads it: ReportClock only when a command came in between."""

from __future__ import annotations

import pytest

from tomopilot.instrument.serialem.clock import SerialEMClock
from tomopilot.instrument.serialem.session import SerialEMSession


class _Module:
    """A SerialEM whose clock reads what the test sets; every command is counted."""

    def __init__(self, simulated: bool) -> None:
        if simulated:
            self.simulated_clock = True
        self.time_s = 100.0
        self.reads = 0

    def ReportClock(self) -> float:
        self.reads += 1
        return self.time_s

    def ResetClock(self) -> None:
        self.time_s = 0.0

    def Delay(self, value: float, unit: str) -> None:
        self.time_s += value


def test_a_simulated_clock_is_read_once_between_commands() -> None:
    module = _Module(simulated=True)
    clock = SerialEMClock(SerialEMSession(module))
    assert clock.now_s() == 0.0
    assert [clock.now_s() for _ in range(5)] == [0.0] * 5
    assert module.reads == 1  # nothing was sent in between: the reading stands
    clock.sleep(2.5)  # a command: the next reading asks again
    assert clock.now_s() == pytest.approx(2.5) and module.reads == 2
    module.ResetClock()  # a script restarted SerialEM's clock: time still goes forward
    clock.sleep(1.0)
    assert clock.now_s() == pytest.approx(2.5) and module.reads == 3
    clock.sleep(1.0)
    assert clock.now_s() == pytest.approx(3.5)


def test_a_real_clock_is_carried_forward_between_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    local = [50.0]
    monkeypatch.setattr("tomopilot.instrument.serialem.clock.time.monotonic", lambda: local[0])
    module = _Module(simulated=False)
    clock = SerialEMClock(SerialEMSession(module))
    assert clock.now_s() == 0.0
    local[0] += 0.75  # tomopilot computes for 0.75 s: SerialEM's clock runs on meanwhile
    module.time_s += 0.75
    assert clock.now_s() == pytest.approx(0.75) and module.reads == 1
    clock.sleep(2.0)  # SerialEM waited 2 s while this computer's clock read slightly less
    local[0] += 1.9
    assert clock.now_s() == pytest.approx(2.75) and module.reads == 2
    local[0] += 0.1
    assert clock.now_s() == pytest.approx(2.85)  # carried on from the last reading
    local[0] -= 5.0  # never backwards, whatever the local clock does
    assert clock.now_s() == pytest.approx(2.85)
