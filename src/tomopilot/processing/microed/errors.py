"""Errors of the microED conversion pipeline (file-format errors are in ``tomopilot.io.errors``)."""

from __future__ import annotations

from tomopilot.core.errors import TomopilotError


class ConversionError(TomopilotError):
    """A series conversion was asked something it cannot do (no inputs, clashing outputs)."""


class OutputExistsError(ConversionError, FileExistsError):
    """An output file exists and overwriting was not allowed."""
