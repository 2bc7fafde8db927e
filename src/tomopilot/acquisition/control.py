"""Pause, resume, abort and skip-target for a running engine (safe from other threads)."""

from __future__ import annotations

import threading


class RunAborted(Exception):
    """Raised inside the engine when an abort was requested; the run ends cleanly."""


class EngineControl:
    """Requests to a running engine, checked between exposures."""

    def __init__(self) -> None:
        self._running = threading.Event()
        self._running.set()
        self._abort = threading.Event()
        self._lock = threading.Lock()
        self._skip: set[int] = set()

    def pause(self) -> None:
        """Finish the current exposure, then wait."""
        self._running.clear()

    def resume(self) -> None:
        """Continue after a pause."""
        self._running.set()

    def abort(self) -> None:
        """Stop after the current exposure; files stay consistent and resumable."""
        self._abort.set()
        self._running.set()

    def skip_target(self, target: int) -> None:
        """Never image ``target`` again in this run."""
        with self._lock:
            self._skip.add(target)

    @property
    def paused(self) -> bool:
        """Whether a pause is in effect."""
        return not self._running.is_set()

    @property
    def aborting(self) -> bool:
        """Whether an abort was requested."""
        return self._abort.is_set()

    def skipped_targets(self) -> set[int]:
        """Targets skipped on request."""
        with self._lock:
            return set(self._skip)

    def checkpoint(self, timeout_s: float | None = None) -> None:
        """Block while paused; raise :class:`RunAborted` if an abort was requested."""
        self._running.wait(timeout_s)
        if self._abort.is_set():
            raise RunAborted("the run was aborted on request")
