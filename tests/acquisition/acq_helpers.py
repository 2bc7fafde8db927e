"""Small acquisition configurations for tests (fast: 256² Records, few tilts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tomopilot.acquisition.plan.run_config import load_acquire_config
from tomopilot.acquisition.run import start_run
from tomopilot.acquisition.strategies.fused import FusedStrategy
from tomopilot.instrument.twin import TwinMicroscope


def calm_stage(**overrides: float) -> dict[str, float]:
    """Twin stage settings of a calm goniometer: 20 nm run-out and steps, no axis calibration
    residual, no jumps or run-aways (``overrides`` replace or add keys)."""
    return {
        "tilt_axis_calibration_residual_um": 0.0,
        "runout_x_um": 0.02,
        "runout_y_um": 0.02,
        "runout_z_um": 0.02,
        "step_error_sigma_um": 0.02,
        "jump_probability": 0.0,
        "runaway_probability": 0.0,
        **overrides,
    }


def run_fused_on_twin(config: Path) -> tuple[FusedStrategy, TwinMicroscope]:
    """Run a fused configuration to the end; its strategy and the twin it ran on."""
    engine, _ = start_run(load_acquire_config(config))
    assert engine.run().status == "finished"
    scope = engine.scope.wrapped  # type: ignore[attr-defined]  # the twin inside the ledger
    assert isinstance(scope, TwinMicroscope) and isinstance(engine.strategy, FusedStrategy)
    return engine.strategy, scope


def write_config(
    folder: Path,
    *,
    strategy: str = "pace",
    seed: int = 3,
    targets: list[dict[str, float]] | None = None,
    settings: dict[str, Any] | None = None,
    twin: dict[str, Any] | None = None,
    name: str = "run.yaml",
) -> Path:
    """Write an acquisition YAML into ``folder`` and return its path."""
    twin_data: dict[str, Any] = {
        "seed": seed,
        "presets": {
            "record": {"camera_area_px": [2048, 2048], "binning": 8},
            "preview": {"camera_area_px": [2048, 2048], "binning": 8, "exposure_s": 0.5},
        },
    }
    for key, value in (twin or {}).items():
        if isinstance(value, dict) and isinstance(twin_data.get(key), dict):
            twin_data[key] = {**twin_data[key], **value}
        else:
            twin_data[key] = value
    data: dict[str, Any] = {
        "microscope": {"twin": twin_data},
        "targets": targets
        or [{"SSX": 0.0, "SSY": 0.0}, {"SSX": 1.2, "SSY": 0.8}, {"SSX": -1.0, "SSY": 1.4}],
        "settings": {
            "minTilt": -9,
            "maxTilt": 9,
            "step": 3,
            "groupSize": 2,
            "pretilt": 10,
            "maxDefocus": -4,
            "minDefocus": -3,
            "delayIS": 0.1,
            "delayTilt": 0.1,
            **(settings or {}),
        },
        "strategy": strategy,
        "output": {"dir": str(folder / "run"), "root": "L1"},
    }
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
