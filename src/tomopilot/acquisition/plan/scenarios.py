"""Benchmark scenarios: realistic areas on the twin, the same for every strategy.

Each scenario is an :class:`~tomopilot.acquisition.plan.run_config.AcquireConfig`: a specimen, a
stage profile, targets placed as a user would place them, PACEtomo's usual settings and, where the
scenario calls for it, a fault. Records are 512² at 16 Å (an 0.8 µm field) so that a whole suite
runs in minutes; the physics does not depend on the camera area.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tomopilot.acquisition.plan.run_config import AcquireConfig
from tomopilot.instrument.twin import TwinConfig, TwinMicroscope
from tomopilot.instrument.twin.microscope import as_microscope
from tomopilot.instrument.twin.specimen import HoleyFilm
from tomopilot.instrument.types import LowDoseArea
from tomopilot.io.mrc_image import write_mrc

SCENARIOS = (
    "lamella_autoloader",
    "lamella_side_entry",
    "holey_flat",
    "holey_bent",
    "lamella_jump",
    "thick_lamella_dark",
)

LAMELLA_TARGETS_UM = [(0.0, 0.0), (2.0, 1.0), (-2.0, 1.5), (1.5, -2.0)]

_PRESETS: dict[str, Any] = {
    "record": {"camera_area_px": [4096, 4096], "binning": 8},
    "preview": {"camera_area_px": [4096, 4096], "binning": 16, "exposure_s": 0.5},
}


def _settings(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "startTilt": 0,
        "minTilt": -60,
        "maxTilt": 60,
        "step": 3,
        "groupSize": 2,
        "maxDefocus": -4.0,
        "minDefocus": -4.0,
        "delayIS": 0.3,
        "delayTilt": 0.3,
    }
    base.update(extra)
    return base


def _holey_targets(
    twin: dict[str, Any], area_um: tuple[float, float], out_dir: Path, root: str
) -> tuple[tuple[float, float], list[dict[str, Any]]]:
    """Target 1 on a hole picked on a View map, and three neighbouring holes.

    As a user does it: the stage goes to ``area_um`` and a View is taken; the user clicks the
    hole nearest the field centre (the twin's truth stands in for the click), and the stage
    position of that click becomes the area. A View centred on that hole is saved as target
    1's ``viewfile``, so the run starts by realigning to it. Targets placed by stage
    coordinates alone land wherever the stage's error (up to a micrometre) puts them, often
    on carbon, where a Record has nothing to track.
    """
    config = TwinConfig.model_validate(twin)
    film = HoleyFilm(config.specimen, seed=0)  # type: ignore[arg-type]
    twin_scope = TwinMicroscope(config)
    scope = as_microscope(twin_scope)
    scope.stage.move_to(x_um=area_um[0], y_um=area_um[1], backlash_compensate=True)
    scope.camera.acquire(LowDoseArea.VIEW)
    seen = np.array(twin_scope.ground_truth.exposures[-1].specimen_centre_um[:2])
    x, y = seen
    centres = film.hole_centres_um((x - 4, x + 4, y - 4, y + 4))
    hole = centres[np.argmin(np.hypot(centres[:, 0] - x, centres[:, 1] - y))]
    click = np.array(area_um) + (hole - seen)  # the stage position of the clicked pixel
    scope.stage.move_to(x_um=float(click[0]), y_um=float(click[1]), backlash_compensate=True)
    scope.camera.acquire(LowDoseArea.VIEW)
    miss = hole - np.array(twin_scope.ground_truth.exposures[-1].specimen_centre_um[:2])
    scope.optics.set_image_shift_um(float(miss[0]), float(miss[1]))  # centred on the hole
    view = scope.camera.acquire(LowDoseArea.VIEW)
    name = f"{root}_tgt_001_view.mrc"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_mrc(out_dir / name, view.data, pixel_size_a=view.pixel_size_a)
    a, b = film.lattice_vectors_um()
    offsets = [np.zeros(2), a, -a, b]
    targets: list[dict[str, Any]] = [{"SSX": float(o[0]), "SSY": float(o[1])} for o in offsets]
    targets[0]["viewfile"] = name
    return (float(click[0]), float(click[1])), targets


def scenario_config(
    name: str, seed: int, strategy: str, out_dir: Path, *, render: bool = True
) -> AcquireConfig:
    """The configuration of scenario ``name`` with ``seed`` and ``strategy``.

    ``render=False`` gives the twin flat images at the true mean counts: enough for a strategy
    that never looks at pixels (``none``), and much faster.
    """
    twin: dict[str, Any] = {"seed": seed, "presets": _PRESETS, "camera": {"render": render}}
    settings = _settings(pretilt=10.0)
    targets: list[dict[str, Any]] = [{"SSX": x, "SSY": y} for x, y in LAMELLA_TARGETS_UM]
    area: tuple[float, float] = (0.0, 0.0)
    if name == "lamella_side_entry":
        twin["stage"] = {"profile": "side-entry"}
    elif name == "lamella_jump":
        twin["faults"] = [{"kind": "stage_jump", "at_move": 40, "magnitude_um": 0.4}]
    elif name == "thick_lamella_dark":
        twin["specimen"] = {"kind": "lamella", "thickness_nm": 400.0}
        settings = _settings(pretilt=10.0, minCounts=1.5)
    elif name in ("holey_flat", "holey_bent"):
        bend = 0.0 if name == "holey_flat" else 2.0
        twin["specimen"] = {"kind": "holey_film", "bend_um": bend, "ice_thickness_nm": 120.0}
        area_guess = (0.0, 0.0) if name == "holey_flat" else (14.0, 9.0)
        area, targets = _holey_targets(twin, area_guess, out_dir, name)
        settings = _settings(pretilt=0.0)
    elif name != "lamella_autoloader":
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    data = {
        "microscope": {"twin": twin},
        "targets": targets,
        "area": {"x_um": area[0], "y_um": area[1]},
        "settings": settings,
        "strategy": strategy,
        "output": {"dir": str(out_dir), "root": name},
    }
    return AcquireConfig.model_validate(data)
