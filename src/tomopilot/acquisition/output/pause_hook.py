"""A test hook: a run on the twin stops itself at an exact point, so a test can kill it there.

Crash-recovery tests SIGKILL ``tomopilot acquire`` and resume it. A kill sent when a journal
line appears lands some milliseconds later, wherever the process then is; this hook makes the
point exact. With the environment variable :data:`PAUSE_ENV` set, the process sends itself
``SIGSTOP`` at the point it names, and the test (which sees the stop with
``os.waitpid(pid, os.WUNTRACED)``) kills it there. Points, counted in this process only:

- ``after-journal:KIND:N``: right after the N-th journal line of kind KIND is fsync'd
  (``*`` for any kind), e.g. ``after-journal:committed:2``;
- ``before-journal:KIND:N``: right before it is written (for ``committed``: the stack and mdoc
  sections are written, the commit is not journalled);
- ``exposure:AREA:N``: right after the camera delivered the N-th image of AREA (``Record``,
  ``Preview``, ``View``, ... or ``*``), before the engine has it: a Record taken, not committed.

It is a test hook, not a feature: inert unless the variable is set, honoured only when the run's
microscope is the digital twin (a run on a real microscope never stops itself, whatever its
environment says), and announced in the run log when armed. A malformed value is an error.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass

from tomopilot.core.errors import ConfigError
from tomopilot.core.events import EventBus
from tomopilot.instrument.events import ExposureTaken

PAUSE_ENV = "TOMOPILOT_TEST_PAUSE_AT"
"""The environment variable that arms the hook (tests only)."""

_POINTS = ("after-journal", "before-journal", "exposure")
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PausePoint:
    """Where the process stops: the ``count``-th ``what`` (journal kind or camera area) at
    ``point`` (one of ``after-journal``, ``before-journal``, ``exposure``)."""

    point: str
    what: str
    count: int

    @classmethod
    def parse(cls, text: str) -> PausePoint:
        """``POINT:WHAT:N`` as documented in the module."""
        parts = text.strip().split(":")
        if len(parts) != 3 or parts[0] not in _POINTS or not parts[2].isdigit():
            raise ConfigError(
                f"{PAUSE_ENV}={text!r}: expected POINT:WHAT:N with POINT one of "
                f"{', '.join(_POINTS)} and N a positive integer"
            )
        if int(parts[2]) < 1:
            raise ConfigError(f"{PAUSE_ENV}={text!r}: N counts from 1")
        return cls(parts[0], parts[1], int(parts[2]))


class PauseHook:
    """Counts this process's journal lines and camera images; stops the process at its point."""

    def __init__(self, point: PausePoint) -> None:
        self.point = point
        self.seen = 0  # matching points passed so far
        self.fired = False

    def journal_line(self, kind: str, *, written: bool) -> None:
        """Called before (``written=False``) and after each journal line."""
        self._count("after-journal" if written else "before-journal", kind)

    def exposure(self, event: ExposureTaken) -> None:
        """Called for each image the camera delivers."""
        self._count("exposure", event.area)

    def _count(self, point: str, what: str) -> None:
        if self.fired or point != self.point.point or self.point.what not in ("*", what):
            return
        self.seen += 1
        if self.seen >= self.point.count:
            self.fired = True
            _log.warning("test pause hook: stopping at %s", self.point)
            os.kill(os.getpid(), signal.SIGSTOP)  # a test kills or continues it from here


def pause_hook_from_env(on_twin: bool, events: EventBus) -> PauseHook | None:
    """The hook :data:`PAUSE_ENV` asks for, subscribed to the camera's images; None when the
    variable is unset or the microscope is not the twin."""
    text = os.environ.get(PAUSE_ENV)
    if not text:
        return None
    point = PausePoint.parse(text)
    if not on_twin:
        _log.warning("%s is set but ignored: the microscope is not the digital twin", PAUSE_ENV)
        return None
    hook = PauseHook(point)
    events.subscribe(ExposureTaken, hook.exposure)
    _log.warning("test pause hook armed (%s=%s): this run will stop itself", PAUSE_ENV, text)
    return hook
