"""Specimens of the twin: a FIB-milled lamella and a holey-carbon film."""

from __future__ import annotations

from tomopilot.instrument.twin.specimen.base import BlobGroup, Columns, Specimen, Spheres
from tomopilot.instrument.twin.specimen.config import (
    HoleyFilmConfig,
    LamellaConfig,
    SpecimenConfig,
)
from tomopilot.instrument.twin.specimen.holey_film import HoleyFilm
from tomopilot.instrument.twin.specimen.lamella import Lamella


def build_specimen(config: LamellaConfig | HoleyFilmConfig, seed: int) -> Lamella | HoleyFilm:
    """The specimen object for a configuration."""
    if isinstance(config, LamellaConfig):
        return Lamella(config, seed)
    return HoleyFilm(config, seed)


__all__ = [
    "BlobGroup",
    "Columns",
    "HoleyFilm",
    "HoleyFilmConfig",
    "Lamella",
    "LamellaConfig",
    "Specimen",
    "SpecimenConfig",
    "Spheres",
    "build_specimen",
]
