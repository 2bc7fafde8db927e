"""The root of tomopilot's typed error hierarchy.

Every error raised on purpose by tomopilot derives from :class:`TomopilotError`. Each layer
owns one family below it (``InstrumentError`` in ``instrument/``, ``FormatError`` in ``io/``,
``ImagingError`` in ``imaging/`` ...), so callers can catch a whole layer or a single failure kind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def restore_error(
    cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]
) -> BaseException:
    """An exception rebuilt from its ``args`` and attributes, without calling ``__init__``.

    Pickle rebuilds an exception as ``cls(*args)`` by default, which breaks for every class whose
    ``__init__`` takes other arguments than the final message (a raise in a worker process then
    arrives in the parent as a ``TypeError``). Errors pickle through this function instead: the
    message (``args``) and the fields (``__dict__``, notes included) come back as they were.
    """
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class TomopilotError(Exception):
    """Base class of every error tomopilot raises deliberately.

    Subclasses may take any ``__init__`` arguments: instances pickle by their message and their
    attributes (:func:`restore_error`), so they cross process boundaries (process pools, Dask).
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return (restore_error, (type(self), self.args, dict(vars(self))))


class ConfigError(TomopilotError, ValueError):
    """A configuration value is missing, malformed or physically impossible.

    Parameters
    ----------
    message
        What is wrong, in the user's terms.
    path
        The configuration file, when the value came from one.
    field
        The dotted path of the offending field (``stage.tilt_limit_deg``).
    line
        The 1-based line of the offending value in ``path``, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        field: str | None = None,
        line: int | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.field = field
        self.line = line
        where = []
        if self.path is not None:
            where.append(f"{self.path}" + (f":{line}" if line is not None else ""))
        if field:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.message = message


class ClockError(TomopilotError):
    """A clock was asked to do something impossible, such as running backwards."""


class JournalError(TomopilotError):
    """A journal file is unreadable or was written by something else."""
