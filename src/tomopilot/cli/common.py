"""Pieces shared by the CLI commands: consoles, error reporting and event rendering."""

from __future__ import annotations

import logging
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


class ConsoleWarnings(logging.Handler):
    """Show the library's warnings (and errors) on stderr, once each, in the CLI's style."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        colour = "red" if record.levelno >= logging.ERROR else "yellow"
        label = "error" if record.levelno >= logging.ERROR else "warning"
        err_console.print(f"[{colour}]{label}:[/] {record.getMessage()}", highlight=False)


def show_library_warnings() -> None:
    """Route ``tomopilot`` log warnings to the console (idempotent)."""
    logger = logging.getLogger("tomopilot")
    if not any(isinstance(h, ConsoleWarnings) for h in logger.handlers):
        logger.addHandler(ConsoleWarnings())
