"""What every twin specimen provides to image formation.

A specimen lives in its own frame (µm; x along the stage's tilt axis at 0°, z up). It describes

- its mid-surface height and slope, so the renderer can find where a beam ray meets it and
  how long the path through it is at any tilt;
- what a ray crosses there (ice, carbon, opaque bulk or grid bar);
- its contents as 3D Gaussian "blobs" of projected potential (particles, membranes), grouped by
  blob width so each group is convolved once in Fourier space;
- surface contamination as spheres that only attenuate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@dataclass
class BlobGroup:
    """Blobs of one width: centres (N, 3) in µm and integrated potentials (N,) in V·Å³."""

    sigma_a: float
    positions_um: FloatArray
    weights_v_a3: NDArray[np.float32]

    @classmethod
    def empty(cls, sigma_a: float) -> BlobGroup:
        """A group with no blobs."""
        return cls(sigma_a, np.zeros((0, 3)), np.zeros(0, np.float32))


@dataclass
class Spheres:
    """Attenuating spheres (contamination): centres (N, 3) µm, radii (N,) µm."""

    centres_um: FloatArray = field(default_factory=lambda: np.zeros((0, 3)))
    radii_um: FloatArray = field(default_factory=lambda: np.zeros(0))


@dataclass
class Columns:
    """What vertical specimen columns contain, per unit of path along the surface normal.

    ``ice_nm`` and ``carbon_nm`` are thicknesses measured along the normal (the renderer
    divides by the cosine of the incidence angle); ``opaque`` marks grid bars.
    """

    ice_nm: FloatArray
    carbon_nm: FloatArray
    opaque: NDArray[np.bool_]


class Specimen(Protocol):
    """Interface the renderer uses."""

    name: str

    def surface_height_um(self, x_um: FloatArray, y_um: FloatArray) -> FloatArray:
        """Mid-surface height z at specimen (x, y)."""
        ...

    def surface_slope(self, x_um: FloatArray, y_um: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Partial derivatives (∂z/∂x, ∂z/∂y) of the mid-surface."""
        ...

    def columns(self, x_um: FloatArray, y_um: FloatArray) -> Columns:
        """Material at specimen (x, y), thicknesses along the surface normal."""
        ...

    def blobs(
        self, bounds_um: tuple[float, float, float, float], pixel_size_a: float
    ) -> list[BlobGroup]:
        """Blobs centred in (x0, x1, y0, y1), one group per width; fine ones only at fine pixels."""
        ...

    def contamination(self, bounds_um: tuple[float, float, float, float]) -> Spheres:
        """Contamination spheres centred in the bounds."""
        ...

    def texture_density_rad2_a2(self, path_nm: float) -> float:
        """Phase spectral density of the amorphous texture through ``path_nm`` of ice."""
        ...

    def describe(self) -> dict[str, object]:
        """A human-readable summary of the specimen's geometry."""
        ...
