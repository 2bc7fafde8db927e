"""The imaging layer's error family."""

from __future__ import annotations

from tomopilot.core.errors import TomopilotError


class ImagingError(TomopilotError, ValueError):
    """An image-maths operation got input it cannot work with (shape, size, no signal)."""


class NoCorrelationPeakError(ImagingError):
    """No cross-correlation peak was found inside the allowed search radius."""


class DefocusFitError(ImagingError):
    """The power spectrum carries no Thon rings that a defocus fit could lock on to."""
