"""A holey-carbon film (Quantifoil/C-flat-like) over a grid of square meshes.

Holes lie on a square lattice (pitch = diameter + spacing) rotated by ``lattice_angle_deg``
and offset by ``lattice_offset_um`` from the film centre; each grid square bends like a
paraboloid of sag ``bend_um``; grid bars are opaque. Particles sit in the ice of the holes.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from tomopilot.instrument.twin.specimen.base import BlobGroup, Columns, FloatArray, Spheres
from tomopilot.instrument.twin.specimen.config import HoleyFilmConfig
from tomopilot.instrument.twin.specimen.features import particle_sigma_a, particles
from tomopilot.instrument.twin.specimen.tiles import TileCache, TileContent

TILE_UM = 2.0
ICE_ON_CARBON_FRACTION = 0.3


class HoleyFilm:
    """The holey-film specimen (see module docstring)."""

    name = "holey_film"

    @property
    def finest_feature_um(self) -> float:
        """The smallest sharp structure (a hole's diameter): below a few samples across it the
        render averages the transmission over each sample's area."""
        return float(self.config.hole_diameter_um)

    def __init__(self, config: HoleyFilmConfig, seed: int) -> None:
        self.config = config
        self._cx, self._cy = config.centre_um
        phi = math.radians(config.lattice_angle_deg)
        p = config.pitch_um
        self._basis = (
            np.array([[math.cos(phi), -math.sin(phi)], [math.sin(phi), math.cos(phi)]]) * p
        )
        self._inverse = np.linalg.inv(self._basis)
        self._tiles = TileCache(seed, TILE_UM, self._generate, reach_um=0.1)
        self._sigma = particle_sigma_a(config.particles.radius_nm)

    # -- lattice ground truth -------------------------------------------------------------------
    def lattice_vectors_um(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The two hole-lattice vectors (columns of the basis)."""
        return self._basis[:, 0].copy(), self._basis[:, 1].copy()

    def hole_centres_um(self, bounds: tuple[float, float, float, float]) -> NDArray[np.float64]:
        """Centres (N, 2) of the holes inside (x0, x1, y0, y1) that lie in open grid squares."""
        x0, x1, y0, y1 = bounds
        ox, oy = self.config.lattice_offset_um
        corners = np.array([[x0, y0], [x0, y1], [x1, y0], [x1, y1]]) - [
            self._cx + ox,
            self._cy + oy,
        ]
        frac = corners @ self._inverse.T
        lo = np.floor(frac.min(axis=0)) - 1
        hi = np.ceil(frac.max(axis=0)) + 1
        ii, jj = np.meshgrid(
            np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij"
        )
        centres = np.stack([ii.ravel(), jj.ravel()], axis=1) @ self._basis.T + [
            self._cx + ox,
            self._cy + oy,
        ]
        inside = (
            (centres[:, 0] >= x0)
            & (centres[:, 0] <= x1)
            & (centres[:, 1] >= y0)
            & (centres[:, 1] <= y1)
        )
        centres = centres[inside]
        return centres[self._open(centres[:, 0], centres[:, 1])]

    # -- geometry -------------------------------------------------------------------------------
    def _local(self, x_um: FloatArray, y_um: FloatArray) -> tuple[FloatArray, FloatArray]:
        p = self.config.grid_pitch_um
        u, v = np.asarray(x_um) - self._cx, np.asarray(y_um) - self._cy
        return u - np.round(u / p) * p, v - np.round(v / p) * p

    def _open(self, x_um: FloatArray, y_um: FloatArray) -> NDArray[np.bool_]:
        lu, lv = self._local(x_um, y_um)
        half = self.config.grid_hole_um / 2
        return np.asarray((np.abs(lu) <= half) & (np.abs(lv) <= half))

    def in_hole(self, x_um: FloatArray, y_um: FloatArray) -> NDArray[np.bool_]:
        """True over a hole of the film."""
        ox, oy = self.config.lattice_offset_um
        rel = np.stack([np.asarray(x_um) - self._cx - ox, np.asarray(y_um) - self._cy - oy], -1)
        frac = rel @ self._inverse.T
        nearest = np.round(frac) @ self._basis.T
        dist = np.linalg.norm(rel - nearest, axis=-1)
        return np.asarray(dist <= self.config.hole_diameter_um / 2)

    def surface_height_um(self, x_um: FloatArray, y_um: FloatArray) -> FloatArray:
        lu, lv = self._local(x_um, y_um)
        half = self.config.grid_hole_um / 2
        return np.asarray(self.config.bend_um * (lu**2 + lv**2) / half**2)

    def surface_slope(self, x_um: FloatArray, y_um: FloatArray) -> tuple[FloatArray, FloatArray]:
        lu, lv = self._local(x_um, y_um)
        scale = 2 * self.config.bend_um / (self.config.grid_hole_um / 2) ** 2
        return np.asarray(scale * lu), np.asarray(scale * lv)

    def columns(self, x_um: FloatArray, y_um: FloatArray) -> Columns:
        c = self.config
        hole = self.in_hole(x_um, y_um)
        ice = np.where(hole, c.ice_thickness_nm, c.ice_thickness_nm * ICE_ON_CARBON_FRACTION)
        carbon = np.where(hole, 0.0, c.carbon_thickness_nm)
        return Columns(ice_nm=ice, carbon_nm=carbon, opaque=~self._open(x_um, y_um))

    # -- contents -------------------------------------------------------------------------------
    def _generate(
        self, rng: np.random.Generator, bounds: tuple[float, float, float, float]
    ) -> TileContent:
        c = self.config
        x0, x1, y0, y1 = bounds
        area = (x1 - x0) * (y1 - y0)
        half_um = c.ice_thickness_nm * 1e-3 / 2
        n = int(rng.poisson(c.particles.density_per_um3 * area * 2 * half_um))
        px, py = rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)
        radius_um = c.particles.radius_nm * 1e-3
        pz = self.surface_height_um(px, py) + rng.uniform(-1, 1, n) * max(half_um - radius_um, 0)
        keep = self.in_hole(px, py) & self._open(px, py)
        pos, w = particles(
            rng, np.stack([px, py, pz], 1)[keep], c.particles.radius_nm, c.particles.contrast_v
        )
        n_cont = int(rng.poisson(c.contamination.per_um2 * area))
        cx, cy = rng.uniform(x0, x1, n_cont), rng.uniform(y0, y1, n_cont)
        radii = rng.uniform(*c.contamination.radius_nm, size=n_cont) * 1e-3
        cz = self.surface_height_um(cx, cy) + half_um + radii * 0.6
        return [BlobGroup(self._sigma, pos, w)], Spheres(np.stack([cx, cy, cz], 1), radii)

    def blobs(
        self, bounds_um: tuple[float, float, float, float], pixel_size_a: float
    ) -> list[BlobGroup]:
        return self._tiles.blobs(bounds_um)

    def contamination(self, bounds_um: tuple[float, float, float, float]) -> Spheres:
        return self._tiles.spheres(bounds_um)

    def texture_density_rad2_a2(self, path_nm: float) -> float:
        return self.config.ice_texture_rad2_a2_per_nm * path_nm

    def describe(self) -> dict[str, object]:
        c = self.config
        a, b = self.lattice_vectors_um()
        return {
            "kind": "holey_film",
            "holes": f"R{c.hole_diameter_um:g}/{c.hole_spacing_um:g}",
            "pitch_um": c.pitch_um,
            "lattice_vectors_um": [a.round(4).tolist(), b.round(4).tolist()],
            "ice_thickness_nm": c.ice_thickness_nm,
            "carbon_thickness_nm": c.carbon_thickness_nm,
            "bend_um": c.bend_um,
            "grid": f"pitch {c.grid_pitch_um:g} µm, bar {c.grid_bar_um:g} µm",
            "particles_per_um3": c.particles.density_per_um3,
        }
