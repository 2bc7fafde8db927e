"""The digital twin: a physically realistic, seeded microscope on a simulated clock.

Examples
--------
>>> from tomopilot.instrument import LowDoseArea
>>> from tomopilot.instrument.twin import TwinConfig, TwinMicroscope
>>> scope = TwinMicroscope(TwinConfig.model_validate(
...     {"seed": 3, "presets": {"record": {"camera_area_px": [256, 256]}}}))
>>> image = scope.camera.acquire(LowDoseArea.RECORD)
>>> image.data.shape
(256, 256)
>>> truth = scope.ground_truth.exposure(image.exposure_id)
>>> round(truth.dose_e_a2, 2)
3.0
"""

from tomopilot.instrument.twin.config import (
    CameraConfig,
    FaultSpec,
    HousekeepingConfig,
    MovieConfig,
    OpticsConfig,
    StageConfig,
    StageProfile,
    TwinConfig,
    TwinPresets,
)
from tomopilot.instrument.twin.ground_truth import DoseReceived, ExposureTruth, GroundTruth
from tomopilot.instrument.twin.microscope import TwinMicroscope
from tomopilot.instrument.twin.specimen import GridConfig, HoleyFilmConfig, LamellaConfig

__all__ = [
    "CameraConfig",
    "DoseReceived",
    "ExposureTruth",
    "FaultSpec",
    "GridConfig",
    "GroundTruth",
    "HoleyFilmConfig",
    "HousekeepingConfig",
    "LamellaConfig",
    "MovieConfig",
    "OpticsConfig",
    "StageConfig",
    "StageProfile",
    "TwinConfig",
    "TwinMicroscope",
    "TwinPresets",
]
