"""Run the monitor with uvicorn: in the foreground (``tomopilot serve``) or in a thread beside an
acquisition (``tomopilot acquire --serve``, tests, the load benchmark)."""

from __future__ import annotations

import threading
import time

import uvicorn

from tomopilot.core.errors import TomopilotError
from tomopilot.store import Store
from tomopilot.web.app import LiveRun, MonitorState, create_app

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


class ServerError(TomopilotError):
    """The monitor could not start (the port taken, say)."""


class MonitorServer:
    """The monitor on ``host:port`` (``port=0`` picks a free one), started in a thread."""

    def __init__(
        self,
        store: Store,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        live: LiveRun | None = None,
        poll_s: float = 0.5,
        refresh_s: float = 1.0,
    ) -> None:
        self.app = create_app(store, live, poll_s=poll_s, refresh_s=refresh_s)
        self.config = uvicorn.Config(
            self.app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
            lifespan="off",
        )
        self.server = uvicorn.Server(self.config)
        self._thread: threading.Thread | None = None
        self.host = host
        self.port = port

    @property
    def state(self) -> MonitorState:
        """The app's state (stopping flag, attached run)."""
        state: MonitorState = self.app.state.monitor
        return state

    @property
    def url(self) -> str:
        """Where the pages are."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout_s: float = 20.0) -> MonitorServer:
        """Serve in a background thread; returns once the socket listens."""
        self._thread = threading.Thread(target=self.server.run, name="monitor", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ServerError(f"the monitor could not listen on {self.host}:{self.port}")
            time.sleep(0.02)
        sockets = [s for server in self.server.servers for s in server.sockets]
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        """Close live streams and stop serving."""
        self.state.stopping = True
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def run(self) -> None:
        """Serve in the foreground until interrupted."""
        self.server.run()
        self.state.stopping = True
