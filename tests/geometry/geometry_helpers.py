"""Twin configurations for the geometry tests."""

from __future__ import annotations

from typing import Any

from tomopilot.instrument.twin import TwinConfig, TwinMicroscope

QUIET: dict[str, Any] = {
    "step_error_sigma_um": 0.0,
    "runaway_probability": 0.0,
    "branch_start_jump_um": 0.0,
    "tilt_reversal_play_um": 0.0,
    "drift_nm_s": 0.0,
    "drift_floor_nm_s": 0.0,
    "jump_probability": 0.0,
    "xy_periodic_error_um": 0.0,
}


def twin(
    seed: int, *, stage: dict[str, Any] | None = None, specimen: dict[str, Any] | None = None
) -> TwinMicroscope:
    """A twin with small, fast images (View 512² at 16 Å over 0.8 µm... see presets)."""
    return TwinMicroscope(
        TwinConfig.model_validate(
            {
                "seed": seed,
                "stage": stage or {},
                "specimen": specimen or {"kind": "lamella"},
                "presets": {
                    "view": {"camera_area_px": [2048, 2048], "binning": 4},
                    "preview": {"camera_area_px": [512, 512], "binning": 2},
                    "record": {"camera_area_px": [256, 256]},
                    "focus": {"camera_area_px": [256, 256]},
                    "trial": {"camera_area_px": [256, 256]},
                    "search": {"camera_area_px": [1024, 1024], "binning": 4},
                },
            }
        )
    )
