"""Twin configurations and ground-truth measures for the targeting tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from tomopilot.instrument import Image, LowDoseArea
from tomopilot.instrument.twin import TwinConfig, TwinMicroscope

NO_DRIFT: dict[str, Any] = {"drift_nm_s": 0.0, "drift_floor_nm_s": 0.0, "jump_probability": 0.0}


def twin(
    seed: int,
    *,
    stage: dict[str, Any] | None = None,
    specimen: dict[str, Any] | None = None,
    presets: dict[str, Any] | None = None,
) -> TwinMicroscope:
    """A twin with small, fast images: View 512² over 3.3 µm, Search 512² over 20 µm."""
    base: dict[str, Any] = {
        "view": {"camera_area_px": [4096, 4096], "binning": 8},
        "search": {"camera_area_px": [4096, 4096], "binning": 8},
        "preview": {"camera_area_px": [512, 512], "binning": 2},
        "record": {"camera_area_px": [256, 256]},
        "focus": {"camera_area_px": [256, 256]},
        "trial": {"camera_area_px": [256, 256]},
    }
    for name, values in (presets or {}).items():
        base[name] = {**base.get(name, {}), **values}
    return TwinMicroscope(
        TwinConfig.model_validate(
            {
                "seed": seed,
                "stage": stage or {},
                "specimen": specimen or {"kind": "lamella"},
                "presets": base,
            }
        )
    )


def nm_from_nearest_hole(scope: TwinMicroscope, image: Image) -> float:
    """Distance (nm) from the specimen point at an exposure's centre to the nearest hole centre."""
    truth = scope.ground_truth.exposure(image.exposure_id)
    x, y, _ = truth.specimen_centre_um
    holes = scope.specimen.hole_centres_um((x - 4, x + 4, y - 4, y + 4))  # type: ignore[union-attr]
    return float(np.min(np.hypot(holes[:, 0] - x, holes[:, 1] - y)) * 1e3)


def beam_offset_nm(scope: TwinMicroscope, point: tuple[float, float, float]) -> float:
    """How far a specimen point is from the beam centre now (a fresh Record exposure), in nm."""
    image = scope.camera.acquire(LowDoseArea.RECORD)
    dx, dy = scope.ground_truth.exposure(image.exposure_id).offset_nm(point)
    return float(np.hypot(dx, dy))
