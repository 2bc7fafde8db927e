"""The crash tests' pause hook: inert unless asked for, twin only, and exact."""

from __future__ import annotations

import signal

import pytest

from tomopilot.acquisition.output import pause_hook
from tomopilot.acquisition.output.pause_hook import (
    PAUSE_ENV,
    PausePoint,
    pause_hook_from_env,
)
from tomopilot.core.errors import ConfigError
from tomopilot.core.events import EventBus
from tomopilot.instrument.events import ExposureTaken


def _exposure(area: str) -> ExposureTaken:
    return ExposureTaken(exposure_id=1, area=area, dose_e_a2=1.0, duration_s=1.0, mean_counts=1.0)


@pytest.fixture
def stops(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The signals the hook would send itself (recorded, not sent)."""
    sent: list[int] = []
    monkeypatch.setattr(pause_hook.os, "kill", lambda pid, sig: sent.append(sig))
    return sent


def test_unset_or_not_on_the_twin_the_hook_is_not_armed(
    monkeypatch: pytest.MonkeyPatch, stops: list[int]
) -> None:
    monkeypatch.delenv(PAUSE_ENV, raising=False)
    bus = EventBus()
    assert pause_hook_from_env(True, bus) is None
    monkeypatch.setenv(PAUSE_ENV, "exposure:*:1")
    assert pause_hook_from_env(False, bus) is None  # a real microscope never stops itself
    bus.emit(_exposure("Record"))
    assert stops == [] and bus.n_subscribers == 0


@pytest.mark.parametrize(
    "text", ["journal:committed:2", "after-journal:committed", "exposure:Record:0", "x:y:z"]
)
def test_a_malformed_point_is_a_clear_error(text: str) -> None:
    with pytest.raises(ConfigError, match=PAUSE_ENV):
        PausePoint.parse(text)


def test_it_stops_at_the_nth_matching_point_only_once(
    monkeypatch: pytest.MonkeyPatch, stops: list[int]
) -> None:
    bus = EventBus()
    monkeypatch.setenv(PAUSE_ENV, "exposure:Record:2")
    hook = pause_hook_from_env(True, bus)
    assert hook is not None
    for area in ("Preview", "Record", "Preview", "View"):
        bus.emit(_exposure(area))
    assert stops == []
    bus.emit(_exposure("Record"))
    assert stops == [signal.SIGSTOP]
    bus.emit(_exposure("Record"))
    assert stops == [signal.SIGSTOP]

    monkeypatch.setenv(PAUSE_ENV, "before-journal:committed:1")
    hook = pause_hook_from_env(True, EventBus())
    assert hook is not None
    hook.journal_line("started", written=False)
    hook.journal_line("started", written=True)
    hook.journal_line("committed", written=True)  # after the line: not this point
    assert stops == [signal.SIGSTOP]
    hook.journal_line("committed", written=False)
    assert stops == [signal.SIGSTOP] * 2
