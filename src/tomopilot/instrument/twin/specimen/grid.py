"""A whole grid: a mesh of square openings, a holey-carbon film, ice, damage and contamination.

The mesh (pitch ``mesh_pitch_um``, bars ``bar_um``, turned by ``mesh_angle_deg``) fills a disc;
outside it and on the bars nothing gets through. Square (i, j) of the mesh is centred at
``R(mesh_angle)·(i, j)·pitch`` from the grid centre. Every square draws, from the specimen seed
and its index only (so any part of the grid can be looked at first), whether it is

- **good**: film with ice; the ice in its holes is ``ice_centre_nm`` plus the grid's gradient
  at the square's centre, times a log-normal factor of the square (``square_ice_spread``), and
  ``ice_on_carbon_fraction`` of that lies on the carbon around the holes;
- **broken**: the film (and its ice) is torn away beyond a straight edge across the square, so
  part of the square is vacuum;
- **empty**: film without ice (blotted dry).

One hole lattice (``hole_diameter_um`` on a pitch of diameter + spacing, turned by
``lattice_angle_deg``) runs across the whole film, as on a Quantifoil; in good squares a few
holes (``empty_hole_fraction``) have lost their ice. Ice crystals and rare ethane blobs lie on
top (attenuating spheres); particles sit in the holes' ice and are drawn only at fine pixels.

Ground truth: :meth:`GridSpecimen.squares` (each square's state and ice in its holes) and
:meth:`GridSpecimen.holes` (each hole's centre, square, and whether it is intact: whole inside
the opening, film around it, ice in it, contamination over less than a tenth of it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tomopilot.instrument.twin.specimen.base import BlobGroup, Columns, FloatArray, Spheres
from tomopilot.instrument.twin.specimen.config import GridConfig
from tomopilot.instrument.twin.specimen.features import particle_sigma_a, particles
from tomopilot.instrument.twin.specimen.tiles import TileCache, TileContent

GOOD, BROKEN, EMPTY = "good", "broken", "empty"
_STATES = (GOOD, BROKEN, EMPTY)
PARTICLE_TILE_UM = 2.0
CONTAMINATION_TILE_UM = 20.0
COVERED_FRACTION = 0.1  # contamination over this much of a hole spoils it
FILM_AROUND = 1.33  # an intact hole has film out to this many radii from its centre
_SALT_HOLE = 0x51ED27
_MASK64 = (1 << 64) - 1


def _hash01(seed: int, a: NDArray[np.int64], b: NDArray[np.int64], salt: int) -> FloatArray:
    """A uniform number in [0, 1) for each integer pair, from the seed (splitmix64)."""
    key = np.uint64((seed * 0x9E3779B97F4A7C15 + salt * 0xD1B54A32D192ED03) & _MASK64)
    with np.errstate(over="ignore"):
        x = (np.asarray(a, np.int64) + 2**31).astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
        x ^= (np.asarray(b, np.int64) + 2**31).astype(np.uint64) * np.uint64(0x94D049BB133111EB)
        x += key
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return np.asarray((x >> np.uint64(11)).astype(np.float64) / float(2**53))


def _lens_area(d: FloatArray, r1: float, r2: float) -> FloatArray:
    """Area where discs of radii r1 and r2 whose centres are d apart overlap."""
    d = np.maximum(np.asarray(d, np.float64), 1e-12)
    inner = math.pi * min(r1, r2) ** 2
    a1 = np.clip((d**2 + r1**2 - r2**2) / (2 * d * r1), -1, 1)
    a2 = np.clip((d**2 + r2**2 - r1**2) / (2 * d * r2), -1, 1)
    k = (-d + r1 + r2) * (d + r1 - r2) * (d - r1 + r2) * (d + r1 + r2)
    lens = r1**2 * np.arccos(a1) + r2**2 * np.arccos(a2) - 0.5 * np.sqrt(np.maximum(k, 0))
    return np.asarray(np.where(d >= r1 + r2, 0.0, np.where(d <= abs(r1 - r2), inner, lens)))


@dataclass(frozen=True)
class SquareTruth:
    """One square of the mesh: index, centre (specimen µm), state and ice in its holes (nm)."""

    index: tuple[int, int]
    centre_um: tuple[float, float]
    state: str
    ice_nm: float
    torn_fraction: float
    open_fraction: float

    @property
    def usable(self) -> bool:
        """A good square (ice in intact film)."""
        return self.state == GOOD


@dataclass(frozen=True)
class HoleTruth:
    """Holes of the film: centres (N, 2) µm, their square (N, 2), intact (N,), ice (N,) nm, and
    whether contamination covers them (N,)."""

    centres_um: FloatArray
    squares: NDArray[np.int64]
    intact: NDArray[np.bool_]
    ice_nm: FloatArray
    covered: NDArray[np.bool_]


class GridSpecimen:
    """The whole-grid specimen (see module docstring)."""

    name = "grid"

    @property
    def finest_feature_um(self) -> float:
        """The smallest sharp structure (a hole's diameter): below a few samples across it the
        render averages the transmission over each sample's area."""
        return float(self.config.hole_diameter_um)

    def __init__(self, config: GridConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        self._c = np.asarray(config.centre_um, np.float64)
        a = math.radians(config.mesh_angle_deg)
        self._mesh_rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        phi = math.radians(config.lattice_angle_deg)
        rot = np.array([[math.cos(phi), -math.sin(phi)], [math.sin(phi), math.cos(phi)]])
        self._basis = rot * config.hole_pitch_um
        self._inverse = np.linalg.inv(self._basis)
        self._n = math.ceil(config.mesh_diameter_um / 2 / config.mesh_pitch_um) + 1
        self._draw_squares()
        self._particles = TileCache(seed, PARTICLE_TILE_UM, self._generate_particles, 0.1)
        reach = max(
            config.contamination.blob_radius_um[1], config.contamination.crystal_radius_um[1]
        )
        self._dirt = TileCache(seed + 1, CONTAMINATION_TILE_UM, self._generate_dirt, reach)
        self._sigma = particle_sigma_a(config.particles.radius_nm)

    # -- squares --------------------------------------------------------------------------------
    def _draw_squares(self) -> None:
        c, n = self.config, self._n
        size = 2 * n + 1
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x6121D]))
        ii, jj = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
        centres = np.stack([ii, jj], -1).astype(np.float64) * c.mesh_pitch_um @ self._mesh_rot.T
        self._square_centres = centres + self._c
        reach = c.mesh_diameter_um / 2 + c.opening_um / 2 * math.sqrt(2)
        self._exists = np.hypot(centres[..., 0], centres[..., 1]) < reach  # any part in the disc
        draw = rng.random((size, size))
        state = np.zeros((size, size), np.int64)
        state[draw < c.broken_fraction] = 1
        state[(draw >= c.broken_fraction) & (draw < c.broken_fraction + c.empty_fraction)] = 2
        self._state = state
        g = math.radians(c.ice_gradient_angle_deg)
        along_mm = (centres[..., 0] * math.cos(g) + centres[..., 1] * math.sin(g)) * 1e-3
        factor = np.exp(c.square_ice_spread * rng.standard_normal((size, size)))
        ice = np.maximum(c.ice_centre_nm + c.ice_gradient_nm_per_mm * along_mm, 0.0) * factor
        self._ice = np.where(state == 2, 0.0, np.maximum(ice, c.min_ice_nm))
        # Broken squares: torn beyond the line n·(lu, lv) = d, d across the inner half.
        half = c.opening_um / 2
        self._tear_angle = rng.uniform(0, 2 * math.pi, (size, size))
        self._tear_offset = rng.uniform(-0.5, 0.5, (size, size)) * half

    def _square_of(
        self, x_um: FloatArray, y_um: FloatArray
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], FloatArray, FloatArray]:
        """Array indices of the square under each point and the point's local (u, v) in it."""
        p = self.config.mesh_pitch_um
        rel = np.stack([np.asarray(x_um, np.float64), np.asarray(y_um, np.float64)], -1) - self._c
        uv = rel @ self._mesh_rot  # rotate by −angle
        i = np.round(uv[..., 0] / p).astype(np.int64)
        j = np.round(uv[..., 1] / p).astype(np.int64)
        lu, lv = uv[..., 0] - i * p, uv[..., 1] - j * p
        n = self._n
        return np.clip(i + n, 0, 2 * n), np.clip(j + n, 0, 2 * n), lu, lv

    def _torn(
        self, ai: NDArray[np.int64], aj: NDArray[np.int64], lu: FloatArray, lv: FloatArray
    ) -> NDArray[np.bool_]:
        angle = self._tear_angle[ai, aj]
        beyond = lu * np.cos(angle) + lv * np.sin(angle) > self._tear_offset[ai, aj]
        return np.asarray((self._state[ai, aj] == 1) & beyond)

    def _open(self, x_um: FloatArray, y_um: FloatArray) -> NDArray[np.bool_]:
        _, _, lu, lv = self._square_of(x_um, y_um)
        half = self.config.opening_um / 2
        inside = (np.abs(lu) <= half) & (np.abs(lv) <= half)
        rel_x = np.asarray(x_um) - self._c[0]
        rel_y = np.asarray(y_um) - self._c[1]
        in_mesh = np.hypot(rel_x, rel_y) <= self.config.mesh_diameter_um / 2
        return np.asarray(inside & in_mesh)

    def squares(self) -> list[SquareTruth]:
        """Every square of the mesh with some of its opening inside the mesh disc, row by row;
        ``open_fraction`` is how much of the opening is (squares cut by the rim have less)."""
        half = self.config.opening_um / 2
        s = np.linspace(-half, half, 41)
        gu, gv = np.meshgrid(s, s)
        out = []
        n = self._n
        for ai, aj in zip(*np.nonzero(self._exists), strict=True):
            shape = gu.shape
            torn = self._torn(np.full(shape, ai), np.full(shape, aj), gu, gv)
            xy = np.stack([gu, gv], -1) @ self._mesh_rot.T + self._square_centres[ai, aj]
            in_disc = np.hypot(xy[..., 0] - self._c[0], xy[..., 1] - self._c[1]) <= (
                self.config.mesh_diameter_um / 2
            )
            if not in_disc.any():
                continue
            out.append(
                SquareTruth(
                    index=(int(ai - n), int(aj - n)),
                    centre_um=(
                        float(self._square_centres[ai, aj, 0]),
                        float(self._square_centres[ai, aj, 1]),
                    ),
                    state=_STATES[int(self._state[ai, aj])],
                    ice_nm=float(self._ice[ai, aj]),
                    torn_fraction=float(torn.mean()),
                    open_fraction=float(in_disc.mean()),
                )
            )
        return out

    # -- holes ----------------------------------------------------------------------------------
    def _hole_indices(self, x_um: FloatArray, y_um: FloatArray) -> NDArray[np.float64]:
        ox, oy = self.config.lattice_offset_um
        rel = np.stack([np.asarray(x_um) - self._c[0] - ox, np.asarray(y_um) - self._c[1] - oy], -1)
        return np.asarray(rel @ self._inverse.T)

    def _hole_centre(self, frac_rounded: NDArray[np.float64]) -> NDArray[np.float64]:
        ox, oy = self.config.lattice_offset_um
        return np.asarray(frac_rounded @ self._basis.T + self._c + [ox, oy])

    def _hole_has_ice(self, hi: NDArray[np.int64], hj: NDArray[np.int64]) -> NDArray[np.bool_]:
        lost = _hash01(self.seed, hi, hj, _SALT_HOLE) < self.config.empty_hole_fraction
        return np.asarray(~lost)

    def holes(self, bounds: tuple[float, float, float, float]) -> HoleTruth:
        """The film's holes with centres inside (x0, x1, y0, y1) over an opening, torn-away
        film excluded. Intact: whole inside the opening, with ice."""
        x0, x1, y0, y1 = bounds
        corners = np.array([[x0, y0], [x0, y1], [x1, y0], [x1, y1]])
        frac = self._hole_indices(corners[:, 0], corners[:, 1])
        lo = np.floor(frac.min(axis=0)) - 1
        hi = np.ceil(frac.max(axis=0)) + 1
        ii, jj = np.meshgrid(
            np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij"
        )
        idx = np.stack([ii.ravel(), jj.ravel()], 1)
        centres = self._hole_centre(idx)
        x, y = centres[:, 0], centres[:, 1]
        keep = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1) & self._open(x, y)
        ai, aj, lu, lv = self._square_of(x, y)
        keep &= ~self._torn(ai, aj, lu, lv)
        centres, idx = centres[keep], idx[keep].astype(np.int64)
        ai, aj, lu, lv = ai[keep], aj[keep], lu[keep], lv[keep]
        r = self.config.hole_diameter_um / 2
        half = self.config.opening_um / 2
        whole = (np.abs(lu) <= half - r) & (np.abs(lv) <= half - r)
        # A hole whose disc reaches the mesh's rim is not whole, nor one without film around
        # it (torn away within a third of the hole radius of its edge).
        for angle in np.arange(8) * math.pi / 4:
            ex = centres[:, 0] + r * math.cos(angle)
            ey = centres[:, 1] + r * math.sin(angle)
            whole &= self._open(ex, ey)
            fx = centres[:, 0] + FILM_AROUND * r * math.cos(angle)
            fy = centres[:, 1] + FILM_AROUND * r * math.sin(angle)
            bi, bj, bu, bv = self._square_of(fx, fy)
            whole &= ~self._torn(bi, bj, bu, bv)
        ice = self._ice[ai, aj]
        covered = self._covered(centres, r)
        intact = whole & (ice > 0) & self._hole_has_ice(idx[:, 0], idx[:, 1]) & ~covered
        n = self._n
        return HoleTruth(
            centres_um=centres,
            squares=np.stack([ai - n, aj - n], 1),
            intact=np.asarray(intact),
            ice_nm=np.where(intact, ice, 0.0),
            covered=covered,
        )

    def _covered(self, centres: NDArray[np.float64], r: float) -> NDArray[np.bool_]:
        """Holes whose disc contamination covers by ``COVERED_FRACTION`` of its area or more."""
        covered = np.zeros(len(centres))
        if not len(centres):
            return covered > 0
        x0, y0 = centres.min(axis=0) - r
        x1, y1 = centres.max(axis=0) + r
        spheres = self._dirt.spheres((float(x0), float(x1), float(y0), float(y1)))
        for (sx, sy, _), radius in zip(spheres.centres_um, spheres.radii_um, strict=True):
            d = np.hypot(centres[:, 0] - sx, centres[:, 1] - sy)
            covered += _lens_area(d, r, float(radius)) / (math.pi * r * r)
        return np.asarray(covered >= COVERED_FRACTION)

    def hole_centres_um(self, bounds: tuple[float, float, float, float]) -> NDArray[np.float64]:
        """Centres (N, 2) of the film's holes inside the bounds (as the holey film offers)."""
        return self.holes(bounds).centres_um

    def in_hole(self, x_um: FloatArray, y_um: FloatArray) -> NDArray[np.bool_]:
        """True over a hole of the film (whatever it holds)."""
        frac = self._hole_indices(x_um, y_um)
        nearest = self._hole_centre(np.round(frac))
        rel = np.stack([np.asarray(x_um), np.asarray(y_um)], -1)
        dist = np.linalg.norm(rel - nearest, axis=-1)
        return np.asarray(dist <= self.config.hole_diameter_um / 2)

    # -- geometry -------------------------------------------------------------------------------
    def surface_height_um(self, x_um: FloatArray, y_um: FloatArray) -> FloatArray:
        _, _, lu, lv = self._square_of(x_um, y_um)
        half = self.config.opening_um / 2
        return np.asarray(self.config.bend_um * (lu**2 + lv**2) / half**2)

    def surface_slope(self, x_um: FloatArray, y_um: FloatArray) -> tuple[FloatArray, FloatArray]:
        _, _, lu, lv = self._square_of(x_um, y_um)
        scale = 2 * self.config.bend_um / (self.config.opening_um / 2) ** 2
        grad = np.stack([lu, lv], -1) @ self._mesh_rot.T  # back to x, y
        return np.asarray(scale * grad[..., 0]), np.asarray(scale * grad[..., 1])

    def ice_nm(self, x_um: FloatArray, y_um: FloatArray) -> FloatArray:
        """Ice thickness (nm, along the normal) at specimen points."""
        return self.columns(x_um, y_um).ice_nm

    def columns(self, x_um: FloatArray, y_um: FloatArray) -> Columns:
        c = self.config
        x_um, y_um = np.asarray(x_um, np.float64), np.asarray(y_um, np.float64)
        ai, aj, lu, lv = self._square_of(x_um, y_um)
        opaque = ~self._open(x_um, y_um)
        torn = self._torn(ai, aj, lu, lv)
        frac = np.round(self._hole_indices(x_um, y_um)).astype(np.int64)
        hole = self.in_hole(x_um, y_um)
        filled = self._hole_has_ice(frac[..., 0], frac[..., 1])
        square_ice = self._ice[ai, aj]
        ice = np.where(
            hole, np.where(filled, square_ice, 0.0), c.ice_on_carbon_fraction * square_ice
        )
        ice = np.where(torn | opaque, 0.0, ice)
        carbon = np.where(hole | torn | opaque, 0.0, c.carbon_thickness_nm)
        return Columns(ice_nm=np.asarray(ice), carbon_nm=np.asarray(carbon), opaque=opaque)

    # -- contents -------------------------------------------------------------------------------
    def _generate_particles(
        self, rng: np.random.Generator, bounds: tuple[float, float, float, float]
    ) -> TileContent:
        c = self.config
        x0, x1, y0, y1 = bounds
        area = (x1 - x0) * (y1 - y0)
        top_nm = float(np.max(self._ice)) if self._ice.size else 0.0
        n = int(rng.poisson(c.particles.density_per_um3 * area * top_nm * 1e-3))
        px, py = rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)
        cols = self.columns(px, py)
        ice_um = cols.ice_nm * 1e-3
        # Thin out to the local ice (uniform in volume) and keep those in holes with ice.
        keep = (rng.random(n) * top_nm * 1e-3 < ice_um) & self.in_hole(px, py) & (ice_um > 0)
        radius_um = c.particles.radius_nm * 1e-3
        half = np.maximum(ice_um / 2 - radius_um, 0.0)
        pz = self.surface_height_um(px, py) + rng.uniform(-1, 1, n) * half
        pos, w = particles(
            rng, np.stack([px, py, pz], 1)[keep], c.particles.radius_nm, c.particles.contrast_v
        )
        return [BlobGroup(self._sigma, pos, w)], Spheres()

    def _generate_dirt(
        self, rng: np.random.Generator, bounds: tuple[float, float, float, float]
    ) -> TileContent:
        c = self.config.contamination
        x0, x1, y0, y1 = bounds
        area = (x1 - x0) * (y1 - y0)
        n_crystals = int(rng.poisson(c.crystals_per_um2 * area))
        n_blobs = int(rng.poisson(c.blobs_per_um2 * area))
        n = n_crystals + n_blobs
        cx, cy = rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)
        radii = np.concatenate(
            [rng.uniform(*c.crystal_radius_um, n_crystals), rng.uniform(*c.blob_radius_um, n_blobs)]
        )
        ice_um = self.columns(cx, cy).ice_nm * 1e-3
        cz = self.surface_height_um(cx, cy) + ice_um / 2 + radii * 0.6
        return [], Spheres(np.stack([cx, cy, cz], 1), radii)

    def blobs(
        self, bounds_um: tuple[float, float, float, float], pixel_size_a: float
    ) -> list[BlobGroup]:
        if pixel_size_a > self.config.particle_max_pixel_a:
            return []  # 25 nm particles vanish in coarse pixels; a whole grid holds billions
        return self._particles.blobs(bounds_um)

    def contamination(self, bounds_um: tuple[float, float, float, float]) -> Spheres:
        return self._dirt.spheres(bounds_um)

    def texture_density_rad2_a2(self, path_nm: float) -> float:
        return self.config.ice_texture_rad2_a2_per_nm * path_nm

    def describe(self) -> dict[str, object]:
        c = self.config
        squares = self.squares()
        states = {s: sum(q.state == s for q in squares) for s in _STATES}
        good_ice = [q.ice_nm for q in squares if q.usable]
        return {
            "kind": "grid",
            "mesh": f"pitch {c.mesh_pitch_um:g} µm, bar {c.bar_um:g} µm, "
            f"mesh disc {c.mesh_diameter_um:g} µm",
            "holes": f"R{c.hole_diameter_um:g}/{c.hole_spacing_um:g}",
            "squares": states,
            "ice_in_good_squares_nm": (
                [
                    round(min(good_ice), 1),
                    round(float(np.median(good_ice)), 1),
                    round(max(good_ice), 1),
                ]
                if good_ice
                else []
            ),
            "carbon_thickness_nm": c.carbon_thickness_nm,
        }
