"""Twin configurations for tests: small images and, where a test needs it, a quiet stage."""

from __future__ import annotations

from typing import Any

from tomopilot.instrument.twin import TwinConfig


def small_config(seed: int = 1, size: int = 512, **overrides: Any) -> TwinConfig:
    """A twin with small camera areas (fast) and any nested overrides merged in."""

    def area(factor: int) -> dict[str, list[int]]:
        side = min(factor * size, 4096)
        return {"camera_area_px": [side, side]}

    data: dict[str, Any] = {
        "seed": seed,
        "presets": {
            "record": area(1),
            "preview": area(2),
            "view": area(2),
            "trial": area(4),
            "focus": area(4),
            "search": area(4),
        },
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            merged = dict(data[key])
            for sub_key, sub_value in value.items():
                if isinstance(sub_value, dict) and isinstance(merged.get(sub_key), dict):
                    merged[sub_key] = {**merged[sub_key], **sub_value}
                else:
                    merged[sub_key] = sub_value
            data[key] = merged
        else:
            data[key] = value
    return TwinConfig.model_validate(data)


QUIET_STAGE: dict[str, Any] = {
    "step_error_sigma_um": 0.0,
    "runaway_probability": 0.0,
    "branch_start_jump_um": 0.0,
    "tilt_reversal_play_um": 0.0,
    "drift_nm_s": 0.0,
    "drift_floor_nm_s": 0.0,
    "jump_probability": 0.0,
    "xy_periodic_error_um": 0.0,
}
