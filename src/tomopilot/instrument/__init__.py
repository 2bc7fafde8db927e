"""Microscopes: the typed protocol, its value types and errors, and the backends.

The digital twin (:mod:`tomopilot.instrument.twin`) is the default backend. Backends for real
microscopes import their vendor modules lazily, only when they are constructed.
"""

from tomopilot.instrument.errors import (
    CalibrationError,
    CameraTimeoutError,
    ImageShiftLimitError,
    InstrumentError,
    NoBeamError,
    OperatorStop,
    StageError,
    StageLimitError,
)
from tomopilot.instrument.protocol import (
    Camera,
    Housekeeping,
    Measurements,
    Microscope,
    Optics,
    Stage,
)
from tomopilot.instrument.types import (
    AreaPreset,
    DewarStatus,
    Image,
    LowDoseArea,
    Movie,
    ScopeState,
    StageLimits,
    StagePosition,
)

__all__ = [
    "AreaPreset",
    "CalibrationError",
    "Camera",
    "CameraTimeoutError",
    "DewarStatus",
    "Housekeeping",
    "Image",
    "ImageShiftLimitError",
    "InstrumentError",
    "LowDoseArea",
    "Measurements",
    "Microscope",
    "Movie",
    "NoBeamError",
    "OperatorStop",
    "Optics",
    "ScopeState",
    "Stage",
    "StageError",
    "StageLimitError",
    "StageLimits",
    "StagePosition",
]
