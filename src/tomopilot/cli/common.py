"""Pieces shared by the CLI commands: consoles, error reporting and event rendering."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from tomopilot.core.errors import TomopilotError

console = Console()
err_console = Console(stderr=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn tomopilot's typed errors into one red line and exit code 1 (no traceback)."""
    try:
        yield
    except (TomopilotError, FileExistsError, FileNotFoundError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None
