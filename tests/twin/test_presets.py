"""Presets: named microscope + camera states applied through the low-dose areas, with a dose
measured on the twin and stored as YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from tomopilot.core.errors import ConfigError
from tomopilot.instrument.presets import LEGINON_AREAS, Preset, PresetManager
from tomopilot.instrument.twin import TwinConfig, TwinMicroscope
from tomopilot.instrument.twin.microscope import as_microscope
from tomopilot.instrument.types import LowDoseArea

SMALL = {
    "record": {"camera_area_px": [1024, 1024], "binning": 4},
    "search": {"camera_area_px": [1024, 1024], "binning": 4},
}


def _scope(seed: int = 1) -> tuple[TwinMicroscope, object]:
    twin = TwinMicroscope(TwinConfig.model_validate({"seed": seed, "presets": SMALL}))
    return twin, as_microscope(twin)


def test_leginon_presets_from_the_low_dose_areas() -> None:
    _, scope = _scope()
    presets = PresetManager.from_scope(scope)  # type: ignore[arg-type]
    assert list(presets.presets) == list(LEGINON_AREAS)
    grid, square = presets.get("Grid"), presets.get("Square")
    assert grid.area == square.area == LowDoseArea.SEARCH
    search = scope.optics.preset(LowDoseArea.SEARCH)  # type: ignore[attr-defined]
    # Magnifications of the microscope's own table nearest Search/4 and Search/20 (2250× →
    # 562× → 510×, 112× → 115×), each with the pixel of the twin's calibration there, which
    # below Search's magnification scales as 1/magnification from Search's own pixel.
    table = scope.optics.magnifications()  # type: ignore[attr-defined]
    assert (square.conditions.magnification, grid.conditions.magnification) == (510, 115)
    assert {square.conditions.magnification, grid.conditions.magnification} <= set(table)
    for preset in (square, grid):
        c = preset.conditions
        assert c.unbinned_pixel_size_a * c.magnification == pytest.approx(
            search.unbinned_pixel_size_a * search.magnification
        )
    assert square.conditions.binning == grid.conditions.binning == search.binning
    # Applying Grid puts its magnification into Search; Square puts Search back.
    presets.apply("Grid")
    assert scope.optics.preset(LowDoseArea.SEARCH).magnification == grid.conditions.magnification  # type: ignore[attr-defined]
    image = presets.acquire("Square")
    assert image.magnification == square.conditions.magnification
    assert presets.current == "Square"
    with pytest.raises(ConfigError, match="known: Grid, Square"):
        presets.get("Atlas")


def test_measured_dose_matches_the_beam_through_the_specimen(tmp_path: Path) -> None:
    twin, scope = _scope()
    presets = PresetManager.from_scope(scope)  # type: ignore[arg-type]
    tomo = presets.get("Tomography")
    dose = presets.measure_dose("Tomography")
    truth = twin.ground_truth.exposures[-1]
    # What the camera counted: the nominal dose times what the specimen lets through (the
    # transmission is the truth's at the field centre; the field's mean differs by ~10 %).
    assert dose == pytest.approx(tomo.conditions.dose_e_a2 * truth.transmission_centre, rel=0.15)
    assert dose < tomo.conditions.dose_e_a2
    assert presets.get("Tomography").dose_e_a2 == dose
    assert presets.get("Tomography").dose_rate_e_a2_s == pytest.approx(
        dose / tomo.conditions.exposure_s
    )
    # Stored and read back, user presets included.
    presets.add(Preset(name="Low mag 2", area=LowDoseArea.VIEW, conditions=tomo.conditions))
    path = presets.save(tmp_path / "presets.yaml")
    again = PresetManager.load(scope, path)  # type: ignore[arg-type]
    assert again.presets == presets.presets
    path.write_text("presets: [{name: x}]\n")
    with pytest.raises(ConfigError, match=r"presets\.yaml"):
        PresetManager.load(scope, path)  # type: ignore[arg-type]
