"""A FIB-milled lamella: a thin tilted slab in a window of thick bulk, with a milled trench.

In specimen coordinates relative to the lamella centre (x', y'), the mid-plane height is
``tan(pretilt) · (y' cos r − x' sin r)`` (r = rotation, CCW positive), the plane PACEtomo's
geometry model fits. The window |x'| ≤ W/2, |y'| ≤ L/2 holds ``thickness_nm`` of vitreous ice
with particles, vesicles and organelle envelopes cut by the FIB; y' > L/2 is the bright trench
(vacuum) and the rest is bulk too thick to image through.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from tomopilot.instrument.twin.specimen.base import BlobGroup, Columns, FloatArray, Spheres
from tomopilot.instrument.twin.specimen.config import LamellaConfig
from tomopilot.instrument.twin.specimen.features import (
    CROWDING_TILE_UM,
    MEMBRANE_SIGMA_A,
    crowding_sigma_a,
    crowding_weight_v_a3,
    particle_sigma_a,
    particles,
    sphere_shell,
)
from tomopilot.instrument.twin.specimen.tiles import TileCache, TileContent

TILE_UM = 2.0


class Lamella:
    """The lamella specimen (see module docstring)."""

    name = "lamella"

    def __init__(self, config: LamellaConfig, seed: int) -> None:
        self.config = config
        self._cx, self._cy = config.centre_um
        p = math.radians(config.pretilt_deg)
        r = math.radians(config.rotation_deg)
        self._gx = -math.tan(p) * math.sin(r)  # ∂z/∂x
        self._gy = math.tan(p) * math.cos(r)  # ∂z/∂y
        reach = max(config.membranes.organelle_radius_nm) * 1e-3 + 0.1
        self._tiles = TileCache(seed, TILE_UM, self._generate, reach_um=reach)
        self._particle_sigma = particle_sigma_a(config.particles.radius_nm)
        self._crowd = TileCache(seed + 1, CROWDING_TILE_UM, self._generate_crowd, reach_um=0.01)
        self._crowd_sigma = crowding_sigma_a(config.crowding.mass_kda)

    # -- geometry -----------------------------------------------------------------------------
    def surface_height_um(self, x_um: FloatArray, y_um: FloatArray) -> FloatArray:
        return np.asarray(self._gx * (x_um - self._cx) + self._gy * (y_um - self._cy))

    def surface_slope(self, x_um: FloatArray, y_um: FloatArray) -> tuple[FloatArray, FloatArray]:
        shape = np.broadcast(x_um, y_um).shape
        return np.full(shape, self._gx), np.full(shape, self._gy)

    def in_window(self, x_um: FloatArray, y_um: FloatArray) -> NDArray[np.bool_]:
        """True inside the thin lamella window."""
        c = self.config
        return np.asarray(
            (np.abs(x_um - self._cx) <= c.width_um / 2)
            & (np.abs(y_um - self._cy) <= c.length_um / 2)
        )

    def columns(self, x_um: FloatArray, y_um: FloatArray) -> Columns:
        c = self.config
        dx, dy = x_um - self._cx, y_um - self._cy
        window = (np.abs(dx) <= c.width_um / 2) & (np.abs(dy) <= c.length_um / 2)
        trench = (np.abs(dx) <= c.width_um / 2) & (dy > c.length_um / 2)
        ice = np.where(window, c.thickness_nm, np.where(trench, 0.0, c.bulk_thickness_nm))
        return Columns(
            ice_nm=ice.astype(np.float64),
            carbon_nm=np.zeros(np.shape(ice)),
            opaque=np.zeros(np.shape(ice), bool),
        )

    # -- contents -----------------------------------------------------------------------------
    def _generate(
        self, rng: np.random.Generator, bounds: tuple[float, float, float, float]
    ) -> TileContent:
        c = self.config
        x0, x1, y0, y1 = bounds
        area_um2 = (x1 - x0) * (y1 - y0)
        half_um = c.thickness_nm * 1e-3 / 2

        def uniform_xy(n: int) -> tuple[FloatArray, FloatArray]:
            return rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)

        # Particles fill the slab; only those in the window survive the milling.
        n = int(rng.poisson(c.particles.density_per_um3 * area_um2 * 2 * half_um))
        px, py = uniform_xy(n)
        radius_um = c.particles.radius_nm * 1e-3
        pz = self.surface_height_um(px, py) + rng.uniform(-1, 1, n) * max(half_um - radius_um, 0)
        keep = self.in_window(px, py)
        centres = np.stack([px, py, pz], axis=1)[keep]
        part_pos, part_w = particles(rng, centres, c.particles.radius_nm, c.particles.contrast_v)

        shells_pos, shells_w = [np.zeros((0, 3))], [np.zeros(0, np.float32)]
        m = c.membranes
        for per_um2, (r_lo, r_hi), z_spread in (
            (m.vesicles_per_um2, m.vesicle_radius_nm, 1.0),
            (m.organelles_per_um2, m.organelle_radius_nm, 2.5),
        ):
            for _ in range(int(rng.poisson(per_um2 * area_um2))):
                sx, sy = uniform_xy(1)
                radius = float(rng.uniform(r_lo, r_hi)) * 1e-3
                sz = self.surface_height_um(sx, sy)[0] + rng.uniform(-1, 1) * half_um * z_spread
                pos, w = sphere_shell(
                    np.array([sx[0], sy[0], sz]), radius, m.thickness_nm, m.contrast_v
                )
                inside = (
                    np.abs(pos[:, 2] - self.surface_height_um(pos[:, 0], pos[:, 1])) < half_um
                ) & (self.in_window(pos[:, 0], pos[:, 1]))
                shells_pos.append(pos[inside])
                shells_w.append(w[inside])

        n_cont = int(rng.poisson(c.contamination.per_um2 * area_um2))
        cx, cy = uniform_xy(n_cont)
        radii = rng.uniform(*c.contamination.radius_nm, size=n_cont) * 1e-3
        side = rng.choice([-1.0, 1.0], size=n_cont)
        cz = self.surface_height_um(cx, cy) + side * (half_um + radii * 0.6)
        spheres = Spheres(np.stack([cx, cy, cz], axis=1), radii)
        groups = [
            BlobGroup(self._particle_sigma, part_pos, part_w),
            BlobGroup(MEMBRANE_SIGMA_A, np.concatenate(shells_pos), np.concatenate(shells_w)),
        ]
        return groups, spheres

    def _generate_crowd(
        self, rng: np.random.Generator, bounds: tuple[float, float, float, float]
    ) -> TileContent:
        c = self.config
        x0, x1, y0, y1 = bounds
        half_um = c.thickness_nm * 1e-3 / 2
        volume = (x1 - x0) * (y1 - y0) * 2 * half_um
        n = int(rng.poisson(c.crowding.density_per_um3 * volume))
        px, py = rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)
        pz = self.surface_height_um(px, py) + rng.uniform(-half_um, half_um, n)
        keep = self.in_window(px, py)
        weight = crowding_weight_v_a3(c.crowding.mass_kda, c.crowding.contrast_v)
        positions = np.stack([px, py, pz], axis=1)[keep]
        group = BlobGroup(self._crowd_sigma, positions, np.full(len(positions), weight, np.float32))
        return [group], Spheres()

    def blobs(
        self, bounds_um: tuple[float, float, float, float], pixel_size_a: float
    ) -> list[BlobGroup]:
        groups = self._tiles.blobs(bounds_um)
        crowding = self.config.crowding
        if crowding.density_per_um3 > 0 and pixel_size_a <= crowding.max_pixel_a:
            groups += self._crowd.blobs(bounds_um)
        return groups

    def contamination(self, bounds_um: tuple[float, float, float, float]) -> Spheres:
        return self._tiles.spheres(bounds_um)

    def texture_density_rad2_a2(self, path_nm: float) -> float:
        return self.config.ice_texture_rad2_a2_per_nm * path_nm

    def describe(self) -> dict[str, object]:
        c = self.config
        return {
            "kind": "lamella",
            "centre_um": list(c.centre_um),
            "thickness_nm": c.thickness_nm,
            "pretilt_deg": c.pretilt_deg,
            "rotation_deg": c.rotation_deg,
            "window_um": [c.width_um, c.length_um],
            "trench": "+y beyond the window; bulk elsewhere",
            "particles_per_um3": c.particles.density_per_um3,
            "vesicles_per_um2": c.membranes.vesicles_per_um2,
            "organelles_per_um2": c.membranes.organelles_per_um2,
            "contamination_per_um2": c.contamination.per_um2,
        }
