"""Presets: named, stored microscope + camera states with a measured dose (Leginon's presets).

A :class:`Preset` is a low-dose area's conditions (:class:`~tomopilot.instrument.types.AreaPreset`:
magnification, pixel, binning, camera area, exposure, defocus offset, dose rate) under a name,
with the low-dose area it is applied through and the dose last measured with it. Applying a
preset writes its conditions into that area (``Optics.set_preset``), so every backend that has
low-dose areas has presets with no other command, and every strategy that exposes in an area
uses them. Several presets may share an area (Grid and Square both go through Search, at their
own magnifications).

:class:`PresetManager` keeps them, applies them, measures their dose and saves them as YAML.
Leginon's set for tomography is built from the microscope's areas by :meth:`from_scope`: ``Grid``
(the atlas, Search at about a twentieth of its magnification, 115× on the twin), ``Square``
(Search at about a quarter of its magnification: one grid square and its bars in view, 510× on
the twin), ``Hole`` (View), ``Preview``, ``Focus`` and ``Tomography`` (Record). Grid and Square
take the magnification of the microscope's own table nearest the aim (the lenses have no
others) and the pixel the microscope's calibration gives there (not Search's pixel scaled).
Users add their own names.

Examples
--------
>>> from tomopilot.instrument.types import AreaPreset
>>> p = Preset(name="Hole", area=LowDoseArea.VIEW, conditions=AreaPreset(
...     magnification=6500, unbinned_pixel_size_a=14.0, exposure_s=1.0, dose_rate_e_px_s=6.0))
>>> round(p.dose_e_a2, 4)
0.0306
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml
from pydantic import Field

from tomopilot.core.config import ConfigModel
from tomopilot.core.errors import ConfigError
from tomopilot.core.files import atomic_write_text
from tomopilot.instrument.protocol import Microscope
from tomopilot.instrument.types import AreaPreset, Image, LowDoseArea

GRID_MAG_FACTOR = 20
SQUARE_MAG_FACTOR = 4
LEGINON_AREAS = {
    "Grid": LowDoseArea.SEARCH,
    "Square": LowDoseArea.SEARCH,
    "Hole": LowDoseArea.VIEW,
    "Preview": LowDoseArea.PREVIEW,
    "Focus": LowDoseArea.FOCUS,
    "Tomography": LowDoseArea.RECORD,
}


def nearest_magnification(table: tuple[int, ...] | list[int], wanted: float) -> int:
    """The magnification of ``table`` nearest ``wanted`` (by ratio, as mags are spaced).

    >>> nearest_magnification((84, 115, 155), 112.5)
    115
    """
    if not table:
        raise ConfigError("the microscope reported no magnification table")
    if not wanted > 0:
        raise ConfigError(f"magnification {wanted} is not positive")
    return min(table, key=lambda m: abs(math.log(m / wanted)))


class Preset(ConfigModel):
    """A named microscope + camera state and the dose measured with it."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.-]*$")
    area: LowDoseArea
    conditions: AreaPreset
    measured_dose_e_a2: float | None = Field(default=None, ge=0)
    measured_at_s: float | None = None

    @property
    def dose_e_a2(self) -> float:
        """Dose of one exposure: the measured one if there is one, else the nominal one."""
        if self.measured_dose_e_a2 is not None:
            return self.measured_dose_e_a2
        return self.conditions.dose_e_a2

    @property
    def dose_rate_e_a2_s(self) -> float:
        """Dose per second of exposure."""
        return self.dose_e_a2 / self.conditions.exposure_s


class PresetFile(ConfigModel):
    """The stored form: presets in cycle order."""

    presets: list[Preset] = Field(default_factory=list)


class PresetManager:
    """Named presets of one microscope (see module docstring)."""

    def __init__(self, scope: Microscope, presets: list[Preset] | None = None) -> None:
        self.scope = scope
        self.presets: dict[str, Preset] = {}
        for preset in presets or []:
            self.add(preset)
        self.current: str | None = None

    @classmethod
    def from_scope(cls, scope: Microscope) -> PresetManager:
        """Leginon's tomography presets, from the microscope's low-dose areas."""
        out = []
        table = scope.optics.magnifications()
        for name, area in LEGINON_AREAS.items():
            conditions = scope.optics.preset(area)
            factor = {"Grid": GRID_MAG_FACTOR, "Square": SQUARE_MAG_FACTOR}.get(name)
            if factor is not None:
                magnification = nearest_magnification(table, conditions.magnification / factor)
                conditions = conditions.model_copy(
                    update={
                        "magnification": magnification,
                        "unbinned_pixel_size_a": scope.optics.pixel_size_a(magnification),
                    }
                )
            out.append(Preset(name=name, area=area, conditions=conditions))
        return cls(scope, out)

    def add(self, preset: Preset) -> None:
        """Add or replace a preset."""
        self.presets[preset.name] = preset

    def get(self, name: str) -> Preset:
        """The preset called ``name``; a ConfigError lists the known names."""
        try:
            return self.presets[name]
        except KeyError:
            known = ", ".join(self.presets) or "none"
            raise ConfigError(f"no preset named {name!r} (known: {known})") from None

    def apply(self, name: str) -> LowDoseArea:
        """Write the preset's conditions into its low-dose area; returns that area."""
        preset = self.get(name)
        self.scope.optics.set_preset(preset.area, preset.conditions)
        self.current = name
        return preset.area

    def acquire(self, name: str) -> Image:
        """Apply ``name`` and expose with it."""
        return self.scope.camera.acquire(self.apply(name))

    def measure_dose(self, name: str) -> float:
        """Expose with ``name`` and store the dose the camera counted (e⁻/Å²).

        Counts / (counts per electron × pixel area): through vacuum this is the beam's dose;
        over the specimen it is what came through (Leginon measures where the user points it).
        """
        return self.record_dose(name, self.acquire(name))

    def record_dose(self, name: str, image: Image) -> float:
        """Store the dose ``image`` (an exposure with preset ``name``) counted, as
        :meth:`measure_dose` does; for a caller that checks the image first (vacuum?)."""
        dose = image.mean_counts / (image.counts_per_electron * image.pixel_size_a**2)
        preset = self.get(name)
        self.presets[name] = preset.model_copy(
            update={"measured_dose_e_a2": dose, "measured_at_s": self.scope.clock.now_s()}
        )
        return dose

    def save(self, path: Path | str) -> Path:
        """Store the presets as YAML (atomically)."""
        data = PresetFile(presets=list(self.presets.values())).model_dump(mode="json")
        return atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))

    @classmethod
    def load(cls, scope: Microscope, path: Path | str) -> PresetManager:
        """Presets stored by :meth:`save`; a clear error names a bad file."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            stored = PresetFile.model_validate(data)
        except (OSError, yaml.YAMLError, ValueError) as exc:
            raise ConfigError(f"cannot read presets: {exc}", path=path) from exc
        return cls(scope, stored.presets)
