"""Benchmark scenarios: realistic areas on the twin, the same for every strategy.

Each scenario is an :class:`~tomopilot.acquisition.run_config.AcquireConfig`: a specimen, a stage
profile, targets placed as a user would place them, PACEtomo's usual settings and, where the
scenario calls for it, a fault. Records are 512² at 16 Å (an 0.8 µm field) so that a whole suite
runs in minutes; the physics does not depend on the camera area.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tomopilot.acquisition.run_config import AcquireConfig
from tomopilot.instrument.twin import TwinConfig
from tomopilot.instrument.twin.specimen import HoleyFilm

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
    twin: dict[str, Any], area_um: tuple[float, float]
) -> tuple[tuple[float, float], list[tuple[float, float]]]:
    """Target 1 on the hole nearest ``area_um`` and three neighbouring holes (as a user picks)."""
    config = TwinConfig.model_validate(twin)
    film = HoleyFilm(config.specimen, seed=0)  # type: ignore[arg-type]
    x, y = area_um
    centres = film.hole_centres_um((x - 4, x + 4, y - 4, y + 4))
    first = centres[np.argmin(np.hypot(centres[:, 0] - x, centres[:, 1] - y))]
    a, b = film.lattice_vectors_um()
    offsets = [np.zeros(2), a, -a, b]
    return (float(first[0]), float(first[1])), [(float(o[0]), float(o[1])) for o in offsets]


def scenario_config(
    name: str, seed: int, strategy: str, out_dir: Path, *, render: bool = True
) -> AcquireConfig:
    """The configuration of scenario ``name`` with ``seed`` and ``strategy``.

    ``render=False`` gives the twin flat images at the true mean counts: enough for a strategy
    that never looks at pixels (``none``), and much faster.
    """
    twin: dict[str, Any] = {"seed": seed, "presets": _PRESETS, "camera": {"render": render}}
    settings = _settings(pretilt=10.0)
    targets = LAMELLA_TARGETS_UM
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
        area, targets = _holey_targets(twin, area_guess)
        settings = _settings(pretilt=0.0)
    elif name != "lamella_autoloader":
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    data = {
        "microscope": {"twin": twin},
        "targets": [{"SSX": x, "SSY": y} for x, y in targets],
        "area": {"x_um": area[0], "y_um": area[1]},
        "settings": settings,
        "strategy": strategy,
        "output": {"dir": str(out_dir), "root": name},
    }
    return AcquireConfig.model_validate(data)
