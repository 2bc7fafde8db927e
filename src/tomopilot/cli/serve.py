"""``tomopilot serve``: the web monitor of an archive."""

from __future__ import annotations

from typing import Annotated

import typer

from tomopilot.cli.common import console, err_console, user_errors
from tomopilot.store import open_store
from tomopilot.web.server import DEFAULT_HOST, DEFAULT_PORT, MonitorServer

HostOption = Annotated[
    str,
    typer.Option("--host", help="Address to listen on; the default serves this computer only."),
]
PortOption = Annotated[int, typer.Option("--port", help="TCP port (0: any free port).")]


def warn_if_exposed(host: str) -> None:
    """Say so when the monitor is reachable from other computers."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(
            f"[yellow]listening on {host}: anyone on this network can read the archive "
            "(control still needs the token)[/]"
        )


def serve_command(
    db: Annotated[
        str,
        typer.Option(
            "--db",
            help="Database URL (postgresql://user@host/db), SQLite file, or a run folder "
            "(its tomopilot_archive.sqlite).",
        ),
    ] = ".",
    host: HostOption = DEFAULT_HOST,
    port: PortOption = DEFAULT_PORT,
) -> None:
    """Serve the archive's sessions, tilt series and plots to a browser (read-only)."""
    with user_errors():
        store = open_store(db)
        try:
            server = MonitorServer(store, host=host, port=port)
            warn_if_exposed(host)
            console.print(
                f"tomopilot monitor of {store.display_url} at {server.url}/ (Ctrl-C stops)"
            )
            server.run()
        finally:
            store.close()


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the main command."""
    app.command("serve")(serve_command)
