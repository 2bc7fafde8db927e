"""The targeting layer's error family: every deliberate failure of target selection."""

from __future__ import annotations

from tomopilot.core.errors import TomopilotError


class TargetingError(TomopilotError, ValueError):
    """Target selection, editing or positioning was asked for something impossible."""
