"""Errors raised while reading or writing files.

Every failure to read or write a file format derives from :class:`FormatError`, which names the
file and, where it makes sense, the line or header field at fault, in the same style as
:class:`tomopilot.core.errors.ConfigError`::

    data/frame_003.bin, field 'data type code': unknown TIA data-type code 9

Callers catch :class:`FormatError` for any bad file, or a subclass for one kind of failure.
"""

from __future__ import annotations

from pathlib import Path

from tomopilot.core.errors import TomopilotError


class FormatError(TomopilotError, ValueError):
    """A file is malformed, inconsistent, or cannot hold the data asked of it.

    Parameters
    ----------
    message
        What is wrong, in the user's terms.
    path
        The file at fault, when there is one.
    line
        The 1-based line of a text file (or header) where the fault is, when known.
    field
        The header field or record at fault (``SIZE1``, ``data type code``).
    """

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.line = line
        self.field = field
        self.message = message
        where: list[str] = []
        if self.path is not None:
            where.append(f"{self.path}" + (f":{line}" if line is not None else ""))
        elif line is not None:
            where.append(f"line {line}")
        if field:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class TruncatedFileError(FormatError):
    """A file ends before the data its header announces."""


class SizeMismatchError(FormatError):
    """A file's size disagrees with its header in a way other than truncation."""


class UnknownTypeCodeError(FormatError):
    """A header names a data type (a code or a type name) that the format does not define."""


class MissingFieldError(FormatError):
    """A header field that the format, or the conversion asked for, requires is absent."""


class LossyConversionError(FormatError):
    """Data cannot be stored in the target format without changing a value."""
