"""Reading input files written by people and other programs, with one typed-error boundary.

Every reader of a text or binary input goes through these helpers, so the classes of failure a
file from the field can cause are handled once:

- a path that is a directory, is missing or cannot be read is named as such;
- text that is not UTF-8 (a ``µ`` saved by a Windows program in its ANSI code page) is decoded as
  latin-1, the encoding SerialEM and most scope-PC tools write, instead of failing;
- a file larger than a reader accepts is refused before it is read;
- :func:`input_boundary` turns any decode, number, overflow, unicode or OS error raised while
  parsing into the caller's typed error, naming the file (and the line, when known).

Examples
--------
>>> import tempfile, pathlib
>>> from tomopilot.core.errors import ConfigError
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "a.txt").write_bytes(b"dose = 3 \\xb5m\\n")
>>> read_input_text(folder / "a.txt", what="settings", error=ConfigError)
'dose = 3 µm\\n'
>>> try:
...     read_input_text(folder, what="settings", error=ConfigError)
... except ConfigError as exc:
...     print(exc.message)
is a directory, not a settings file
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TypeVar

from tomopilot.core.errors import TomopilotError

__all__ = [
    "ErrorFactory",
    "check_input_path",
    "describe_exception",
    "input_boundary",
    "line_of_offset",
    "read_input_bytes",
    "read_input_text",
]

DEFAULT_MAX_TEXT_BYTES = 256 * 1024 * 1024
"""Text inputs larger than this (256 MiB) are refused before reading: no mdoc, STAR, Navigator,
targets or YAML file from a session comes near it."""

#: Errors a parser can raise on bad input that are not already typed.
UNTYPED_INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    OverflowError,
    UnicodeError,
    OSError,
    struct.error,
    KeyError,
    IndexError,
    TypeError,
    ZeroDivisionError,
    ArithmeticError,
    RecursionError,
    MemoryError,
    AttributeError,
    EOFError,
    AssertionError,
)


class ErrorFactory(Protocol):
    """A typed error class taking ``message`` and the ``path``/``line`` keywords."""

    def __call__(
        self, message: str, *, path: Path | str | None = ..., line: int | None = ...
    ) -> TomopilotError: ...


E = TypeVar("E", bound=TomopilotError)


def describe_exception(exc: BaseException) -> str:
    """A one-line description of an exception, never empty."""
    text = " ".join(str(exc).split())
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    if isinstance(exc, MemoryError):
        return "the file announces more data than memory can hold"
    if isinstance(exc, RecursionError):
        return "nesting too deep"
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def check_input_path(path: Path, *, what: str, error: ErrorFactory) -> int:
    """Check that ``path`` is a readable regular file; return its size in bytes."""
    try:
        is_dir, exists, is_file = path.is_dir(), path.exists(), path.is_file()
        size = path.stat().st_size if is_file else 0
    except (OSError, ValueError) as exc:  # a NUL byte or an over-long name
        raise error(f"cannot open the {what} file: {describe_exception(exc)}", path=path) from exc
    if is_dir:
        raise error(f"is a directory, not a {what} file", path=path)
    if not exists:
        raise error(f"cannot read the {what} file: not found", path=path)
    if not is_file:
        raise error(f"is not a regular file (a {what} file was expected)", path=path)
    return size


def read_input_bytes(
    path: Path | str, *, what: str, error: ErrorFactory, max_bytes: int | None = None
) -> bytes:
    """The bytes of an input file, after :func:`check_input_path` and a size check."""
    path = Path(path)
    size = check_input_path(path, what=what, error=error)
    if max_bytes is not None and size > max_bytes:
        raise error(
            f"the {what} file has {size} bytes, more than the {max_bytes} a {what} file can "
            "plausibly hold",
            path=path,
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise error(f"cannot read the {what} file: {describe_exception(exc)}", path=path) from exc


def decode_text(data: bytes) -> str:
    """Decode UTF-8 (with or without a byte-order mark), else latin-1 (never fails)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def read_input_text(
    path: Path | str,
    *,
    what: str,
    error: ErrorFactory,
    max_bytes: int = DEFAULT_MAX_TEXT_BYTES,
) -> str:
    """The text of an input file, UTF-8 or (failing that) latin-1, as :func:`decode_text`.

    Raises
    ------
    error
        If the path is a directory, is missing, cannot be read or is larger than ``max_bytes``.
    """
    return decode_text(read_input_bytes(path, what=what, error=error, max_bytes=max_bytes))


def line_of_offset(text: str, offset: int) -> int:
    """The 1-based line holding character ``offset`` of ``text``."""
    return text.count("\n", 0, max(0, offset)) + 1


@contextmanager
def input_boundary(
    path: Path | str | None,
    *,
    what: str,
    error: ErrorFactory,
    line: int | None = None,
) -> Iterator[None]:
    """Turn any untyped error raised inside into ``error`` naming the file (and line).

    Typed errors (:class:`TomopilotError`) pass through unchanged.
    """
    try:
        yield
    except TomopilotError:
        raise
    except UNTYPED_INPUT_ERRORS as exc:
        where = Path(path) if path is not None else None
        raise error(
            f"cannot read this {what} file: {describe_exception(exc)}", path=where, line=line
        ) from exc


def os_name_error(name: str) -> str | None:
    """Why ``name`` cannot be a file name on this system (NUL byte, too long), or None."""
    if "\0" in name:
        return "contains a NUL byte"
    limit = 255
    with contextlib.suppress(OSError, ValueError, AttributeError):  # platform dependent
        limit = os.pathconf("/", "PC_NAME_MAX")
    for part in name.replace("\\", "/").split("/"):
        if len(part.encode("utf-8", "surrogateescape")) > limit:
            return f"has a component longer than the {limit} bytes a file name may have"
    return None
