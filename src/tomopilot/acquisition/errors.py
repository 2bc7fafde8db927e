"""The acquisition layer's error family."""

from __future__ import annotations

from tomopilot.core.errors import TomopilotError


class AcquisitionError(TomopilotError):
    """The run cannot continue (and says why); files stay consistent and resumable."""
