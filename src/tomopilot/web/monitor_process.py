"""The monitor in a process of its own beside an acquisition (``tomopilot acquire --serve``).

Pages are rendered by a child process that reads the archive the recorder writes (SQLite in WAL
mode, or PostgreSQL), so however many people watch, the engine's process does not share its
interpreter with the web server. Control requests (pause, resume, skip a target, abort) that the
child accepts with the token travel back over a local authenticated connection
(:mod:`multiprocessing.connection`) to the engine's :class:`EngineControl`.

The child is started as ``python -m tomopilot.web.monitor_process`` and reads its settings as
JSON on standard input (so neither the token nor a database password shows in ``ps``).
"""

from __future__ import annotations

import json
import logging
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

from tomopilot.acquisition.control import EngineControl
from tomopilot.web.server import ServerError

_log = logging.getLogger(__name__)


class ControlProxy:
    """In the child: an :class:`EngineControl` look-alike that forwards to the engine's process."""

    def __init__(self, address: tuple[str, int], authkey: bytes) -> None:
        self._connection: Connection = Client(address, authkey=authkey)
        self._lock = threading.Lock()

    def _call(self, *message: Any) -> Any:
        with self._lock:
            self._connection.send(message)
            return self._connection.recv()

    def pause(self) -> None:
        """Finish the current exposure, then wait."""
        self._call("pause")

    def resume(self) -> None:
        """Continue after a pause."""
        self._call("resume")

    def abort(self) -> None:
        """Stop after the current exposure."""
        self._call("abort")

    def skip_target(self, target: int) -> None:
        """Never image ``target`` again."""
        self._call("skip", int(target))

    @property
    def paused(self) -> bool:
        """Whether a pause is in effect."""
        return bool(self._call("paused"))

    def skipped_targets(self) -> set[int]:
        """Targets skipped on request."""
        return set(self._call("skipped"))


def _serve_control(
    listener: Listener,
    control: EngineControl,
    notify: Callable[[str, dict[str, Any]], None] | None,
) -> None:
    try:
        connection = listener.accept()
    except (OSError, EOFError):
        return
    with connection:
        while True:
            try:
                message = connection.recv()
            except (EOFError, OSError):
                return
            action, *args = message
            reply: Any = None
            if action == "pause":
                control.pause()
            elif action == "resume":
                control.resume()
            elif action == "abort":
                control.abort()
            elif action == "skip":
                control.skip_target(int(args[0]))
            elif action == "skipped":
                reply = sorted(control.skipped_targets())
            if action in ("pause", "resume", "abort", "skip") and notify is not None:
                state = {"pause": "paused", "resume": "running", "abort": "aborting"}
                detail = {"target": int(args[0])} if action == "skip" else {}
                try:
                    notify(state.get(action, "skipped"), detail)
                except Exception:
                    _log.exception("control notification failed")
            if action == "paused":
                reply = control.paused
            connection.send(reply)


class MonitorProcess:
    """Start the monitor in a child process that may control ``control``."""

    def __init__(
        self,
        db_url: str,
        control: EngineControl,
        *,
        host: str,
        port: int,
        notify: Callable[[str, dict[str, Any]], None] | None = None,
        refresh_s: float = 1.0,
    ) -> None:
        self.db_url = db_url
        self.control = control
        self.host = host
        self.port = port
        self.notify = notify
        self.refresh_s = refresh_s
        self.token = secrets.token_urlsafe(18)
        self._authkey = secrets.token_bytes(32)
        self._listener: Listener | None = None
        self._child: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Where the pages are."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout_s: float = 60.0) -> MonitorProcess:
        """Start the child and wait until it listens."""
        self._listener = Listener(("127.0.0.1", 0), authkey=self._authkey)
        self._thread = threading.Thread(
            target=_serve_control,
            args=(self._listener, self.control, self.notify),
            name="monitor-control",
            daemon=True,
        )
        self._thread.start()
        settings = {
            "db": self.db_url,
            "host": self.host,
            "port": self.port,
            "token": self.token,
            "control": list(self._listener.address),
            "authkey": self._authkey.hex(),
            "refresh_s": self.refresh_s,
        }
        self._child = subprocess.Popen(
            [sys.executable, "-m", "tomopilot.web.monitor_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._child.stdin is not None and self._child.stdout is not None
        self._child.stdin.write(json.dumps(settings))
        self._child.stdin.close()
        ready: list[str] = []
        reader = threading.Thread(
            target=lambda: ready.append(self._child.stdout.readline()),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        reader.join(timeout_s)
        line = ready[0].strip() if ready else ""
        if not line.startswith("listening "):
            self.stop()
            raise ServerError(f"the monitor could not listen on {self.host}:{self.port} ({line})")
        self.port = int(line.split()[1])
        return self

    def stop(self) -> None:
        """Stop the child (it closes its streams) and the control channel."""
        if self._child is not None and self._child.poll() is None:
            self._child.send_signal(signal.SIGTERM)
            try:
                self._child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._child.kill()
                self._child.wait()
        if self._child is not None and self._child.stdout is not None:
            self._child.stdout.close()
        if self._listener is not None:
            self._listener.close()


def _child_main() -> None:
    from tomopilot.store import open_store
    from tomopilot.web.app import LiveRun
    from tomopilot.web.server import MonitorServer

    settings = json.loads(sys.stdin.read())
    proxy = ControlProxy(tuple(settings["control"]), bytes.fromhex(settings["authkey"]))
    store = open_store(settings["db"])
    live = LiveRun(control=proxy, token=settings["token"])
    server = MonitorServer(
        store,
        host=settings["host"],
        port=int(settings["port"]),
        live=live,
        refresh_s=float(settings["refresh_s"]),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops us after
    try:
        server.start()
    except ServerError as error:
        print(f"failed {error}", flush=True)
        return
    print(f"listening {server.port}", flush=True)
    while not stop.wait(0.5):
        pass
    server.stop()
    store.close()


if __name__ == "__main__":
    _child_main()
