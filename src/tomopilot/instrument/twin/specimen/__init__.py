"""Specimens of the twin: a FIB-milled lamella, a holey-carbon film and a whole grid."""

from __future__ import annotations

from tomopilot.instrument.twin.specimen.base import BlobGroup, Columns, Specimen, Spheres
from tomopilot.instrument.twin.specimen.config import (
    GridConfig,
    HoleyFilmConfig,
    LamellaConfig,
    SpecimenConfig,
)
from tomopilot.instrument.twin.specimen.grid import GridSpecimen, HoleTruth, SquareTruth
from tomopilot.instrument.twin.specimen.holey_film import HoleyFilm
from tomopilot.instrument.twin.specimen.lamella import Lamella


def build_specimen(
    config: LamellaConfig | HoleyFilmConfig | GridConfig, seed: int
) -> Lamella | HoleyFilm | GridSpecimen:
    """The specimen object for a configuration."""
    if isinstance(config, LamellaConfig):
        return Lamella(config, seed)
    if isinstance(config, GridConfig):
        return GridSpecimen(config, seed)
    return HoleyFilm(config, seed)


__all__ = [
    "BlobGroup",
    "Columns",
    "GridConfig",
    "GridSpecimen",
    "HoleTruth",
    "HoleyFilm",
    "HoleyFilmConfig",
    "Lamella",
    "LamellaConfig",
    "Specimen",
    "SpecimenConfig",
    "Spheres",
    "SquareTruth",
    "build_specimen",
]
