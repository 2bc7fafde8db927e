"""The recorder: engine and microscope events into the archive, without ever stopping a run.

The engine's thread only turns an event into a dictionary and queues it; a writer thread applies
the queue to the database, one event per transaction. When the database fails (a server gone, a
locked file) the events stay queued, the writer retries with a growing pause, and the failure is
reported (a log warning, and a :class:`~tomopilot.core.events.Message` on the bus from the
engine's own thread). When the database comes back the queue drains in order; nothing is lost and
nothing is written twice (each event carries a key logged with its rows). If the database is
still unreachable when the recorder closes, the queue is saved to ``archive_pending.jsonl`` in
the run folder, which the next ``tomopilot archive import`` of that folder replays.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import exc as sa_exc

from tomopilot.archive.apply_events import SessionInfo, apply_event
from tomopilot.archive.sections import resync_sections
from tomopilot.core.events import Event, EventBus, Message
from tomopilot.store import Store

_log = logging.getLogger(__name__)

PENDING_FILE = "archive_pending.jsonl"
TRANSIENT_ERRORS = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
)
"""Failures that mean the database is away (retried); any other failure sets the event aside."""
RECORDED_KINDS = {
    "RunStarted",
    "SetupStep",
    "TiltReached",
    "ExposureRecorded",
    "TargetSkipped",
    "BranchAborted",
    "ExposureLost",
    "RunStateChanged",
    "RunFinished",
    "HousekeepingDone",
    "FaultTriggered",
}

TruthSource = Callable[[dict[str, Any]], dict[str, float] | None]
"""Given an ``ExposureRecorded`` dictionary, the twin's truth columns for it (or ``None``)."""


class Recorder:
    """Record the events of one run into ``store``.

    Parameters
    ----------
    store
        The open archive.
    info
        The run's folder, name and targets.
    truth
        On the twin, where the ground truth of each exposure comes from.
    token
        Prefix of the events' keys (random by default; one per recording).
    retry_s
        First pause after a failure; doubles up to ``max_retry_s``.
    """

    def __init__(
        self,
        store: Store,
        info: SessionInfo,
        *,
        truth: TruthSource | None = None,
        token: str | None = None,
        retry_s: float = 0.05,
        max_retry_s: float = 2.0,
    ) -> None:
        self.store = store
        self.info = info
        self.truth = truth
        self.token = token or uuid.uuid4().hex[:12]
        self.retry_s = retry_s
        self.max_retry_s = max_retry_s
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self._n = 0
        self._pending = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self.n_written = 0
        self.n_failures = 0
        self.n_rejected = 0
        self.last_error: str | None = None
        self._failing = False
        self._reported_failing = False
        self._bus: EventBus | None = None
        self._stop_requested = threading.Event()
        self._unsubscribe: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._write_loop, name="archive-recorder")
        self._thread.daemon = True
        self._thread.start()

    # -- the engine's side ------------------------------------------------------------------
    def attach(self, bus: EventBus) -> None:
        """Subscribe to every event on ``bus``."""
        self._bus = bus
        self._unsubscribe = bus.subscribe(Event, self.on_event)

    def on_event(self, event: Event) -> None:
        """Queue ``event`` (called on the emitter's thread; never raises into it)."""
        if event.kind not in RECORDED_KINDS:
            return
        payload = event.to_dict()
        if event.kind == "ExposureRecorded" and self.truth is not None:
            try:
                payload["truth"] = self.truth(payload)
            except Exception:  # the truth is a report's concern: never stop the run for it
                _log.exception("ground truth of exposure %s unavailable", payload["exposure_id"])
        self.submit(payload)
        self._report()

    def submit(self, payload: dict[str, Any]) -> None:
        """Queue an event dictionary with a fresh key."""
        with self._lock:
            self._n += 1
            key = f"{self.token}:{self._n}"
            self._pending += 1
        self._queue.put((key, payload))

    def _report(self) -> None:
        if self._bus is None or self._failing == self._reported_failing:
            return
        self._reported_failing = self._failing
        if self._failing:
            text = (
                f"archive database unreachable ({self.last_error}); "
                f"{self.pending} events kept and retried, the acquisition goes on"
            )
            self._bus.emit(Message(level="warning", text=text))
        else:
            self._bus.emit(Message(level="info", text="archive database back; events written"))

    # -- the writer's side ------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Events queued and not yet written."""
        with self._lock:
            return self._pending

    @property
    def healthy(self) -> bool:
        """Whether the last write succeeded."""
        return not self._failing

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            key, payload = item
            pause = self.retry_s
            while True:
                try:
                    self._apply(key, payload)
                except TRANSIENT_ERRORS as error:
                    self.n_failures += 1
                    self.last_error = f"{type(error).__name__}: {str(error).splitlines()[0]}"
                    if not self._failing:
                        _log.warning("archive write failed, will retry: %s", self.last_error)
                    self._failing = True
                    if self._stop_requested.is_set():
                        self._spill(key, payload)
                        break
                    time.sleep(pause)
                    pause = min(self.max_retry_s, pause * 2)
                    continue
                except Exception:
                    # not the database being away but an event it refuses: retrying would
                    # block every later event, so it is set aside (kept in the pending file)
                    _log.exception(
                        "archive: a %s event could not be recorded; kept in %s",
                        payload.get("kind"),
                        PENDING_FILE,
                    )
                    self.n_rejected += 1
                    self._spill(key, payload)
                    break
                if self._failing:
                    _log.warning("archive database back after %d failures", self.n_failures)
                self._failing = False
                self.n_written += 1
                break
            with self._lock:
                self._pending -= 1
                self._idle.notify_all()

    def _apply(self, key: str, payload: dict[str, Any]) -> None:
        with self.store.session() as db:
            written = apply_event(db, self.info, key, payload)
        if written and payload.get("kind") == "RunFinished":
            with self.store.session() as db:
                resync_sections(db, self.info.run_dir)

    def _spill(self, key: str, payload: dict[str, Any]) -> None:
        path = Path(self.info.run_dir) / PENDING_FILE
        try:
            with path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"key": key, "event": payload}, default=str) + "\n")
        except OSError:
            _log.exception("could not save an unrecorded event to %s", path)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every queued event is written; ``False`` on time-out."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._idle:
            while self._pending > 0:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self, timeout_s: float = 30.0) -> bool:
        """Stop recording: write what is queued (waiting up to ``timeout_s``), else save it.

        Returns whether everything reached the database.
        """
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        done = self.flush(timeout_s)
        if not done:
            self._stop_requested.set()
        self._queue.put(None)
        self._thread.join()
        return done
