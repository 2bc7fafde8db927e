"""Small acquisition configurations for tests (fast: 256² Records, few tilts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray

from tomopilot.acquisition.plan.run_config import load_acquire_config
from tomopilot.acquisition.run import start_run
from tomopilot.acquisition.strategies.fused import FusedStrategy
from tomopilot.instrument.twin import TwinMicroscope
from tomopilot.instrument.types import Image, LowDoseArea

SEQUENTIAL_PRESETS = {
    "record": {"camera_area_px": [4096, 4096], "binning": 16},
    "preview": {"camera_area_px": [4096, 4096], "binning": 16, "exposure_s": 0.5},
}
"""Records and Previews of the whole camera binned to 256² (32 Å, a 0.8 µm field, as the
sequential benchmark's: Leginon's tracking needs the field to overlap from tilt to tilt)."""


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


def write_sequential_config(
    folder: Path,
    *,
    seed: int,
    max_tilt_deg: float,
    targets: list[dict[str, float]] | None = None,
    settings: dict[str, Any] | None = None,
    twin: dict[str, Any] | None = None,
    sequential: dict[str, Any] | None = None,
) -> Path:
    """A ``sequential`` session's YAML in ``folder`` (made if missing): one target at the area's
    centre unless ``targets``, a bidirectional scheme from 0° to ±``max_tilt_deg`` in 3° steps
    without pretilt, :data:`SEQUENTIAL_PRESETS`; ``settings``/``twin`` add or replace keys
    (``twin["presets"]`` merged into those), ``sequential`` is the config's ``sequential``
    section."""
    folder.mkdir(parents=True, exist_ok=True)
    twin = dict(twin or {})
    presets = {**SEQUENTIAL_PRESETS, **twin.pop("presets", {})}
    path = write_config(
        folder,
        strategy="sequential",
        seed=seed,
        targets=targets or [{"SSX": 0.0, "SSY": 0.0}],
        settings={
            "minTilt": -max_tilt_deg,
            "maxTilt": max_tilt_deg,
            "tiltScheme": "bidirectional",
            "pretilt": 0,
            **(settings or {}),
        },
        twin={"presets": presets, **twin},
    )
    if sequential is not None:
        data = yaml.safe_load(path.read_text())
        data["sequential"] = sequential
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def shots_along_tilts(
    scope: TwinMicroscope, area: LowDoseArea, place_um: tuple[float, float], tilts: list[float]
) -> tuple[list[Image], list[NDArray[np.float64]]]:
    """Images of ``area`` taken one after the other at ``tilts`` at the stage position
    ``place_um``, and for each the true offset (µm) of the first image's centre point from
    that image's centre (the twin's truth)."""
    scope.stage.move_to(x_um=place_um[0], y_um=place_um[1])
    images, offsets, point = [], [], None
    for tilt in tilts:
        scope.stage.tilt_to(tilt)
        images.append(scope.camera.acquire(area))
        truth = scope.ground_truth.exposures[-1]
        point = point or truth.specimen_centre_um
        offsets.append(np.asarray(truth.offset_nm(point)) / 1e3)
    return images, offsets


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
