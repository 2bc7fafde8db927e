"""Lazy, seeded generation of specimen contents in square tiles.

A specimen can span a whole grid square; only the tiles a render looks at are generated, each
from its own seed (the specimen seed and the tile index), so the contents are the same whatever
order the tiles are visited in. Objects belong to the tile holding their centre; a query widens
its bounds by ``reach_um`` so objects that stick out of their tile are found.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from tomopilot.instrument.twin.specimen.base import BlobGroup, Spheres

TileContent = tuple[list[BlobGroup], Spheres]
TileGenerator = Callable[[np.random.Generator, tuple[float, float, float, float]], TileContent]


class TileCache:
    """Generate and cache tile contents.

    Parameters
    ----------
    seed
        The specimen's seed.
    tile_um
        Tile side.
    generate
        ``generate(rng, (x0, x1, y0, y1))`` → the blob groups and spheres of one tile.
    reach_um
        The farthest an object's points extend from its centre.
    max_tiles
        How many tiles to keep in memory.
    """

    def __init__(
        self,
        seed: int,
        tile_um: float,
        generate: TileGenerator,
        reach_um: float,
        max_tiles: int = 2048,
    ) -> None:
        self.seed = seed
        self.tile_um = tile_um
        self.reach_um = reach_um
        self._generate = generate
        self._cache: OrderedDict[tuple[int, int], TileContent] = OrderedDict()
        self._max = max_tiles

    def _tile(self, i: int, j: int) -> TileContent:
        key = (i, j)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 7919, i + 2**20, j + 2**20]))
        t = self.tile_um
        content = self._generate(rng, (i * t, (i + 1) * t, j * t, (j + 1) * t))
        self._cache[key] = content
        if len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return content

    def _tiles_for(self, bounds: tuple[float, float, float, float]) -> list[TileContent]:
        x0, x1, y0, y1 = bounds
        r, t = self.reach_um, self.tile_um
        ix = range(math.floor((x0 - r) / t), math.floor((x1 + r) / t) + 1)
        iy = range(math.floor((y0 - r) / t), math.floor((y1 + r) / t) + 1)
        return [self._tile(i, j) for i in ix for j in iy]

    def blobs(self, bounds: tuple[float, float, float, float]) -> list[BlobGroup]:
        """Blob groups (merged over tiles) with centres inside ``bounds``."""
        x0, x1, y0, y1 = bounds
        merged: dict[float, list[BlobGroup]] = {}
        for groups, _ in self._tiles_for(bounds):
            for group in groups:
                merged.setdefault(group.sigma_a, []).append(group)
        out = []
        for sigma, groups in sorted(merged.items()):
            pos = np.concatenate([g.positions_um for g in groups])
            w = np.concatenate([g.weights_v_a3 for g in groups])
            keep = (pos[:, 0] >= x0) & (pos[:, 0] <= x1) & (pos[:, 1] >= y0) & (pos[:, 1] <= y1)
            out.append(BlobGroup(sigma, pos[keep], w[keep]))
        return out

    def spheres(self, bounds: tuple[float, float, float, float]) -> Spheres:
        """Spheres whose extent touches ``bounds``."""
        x0, x1, y0, y1 = bounds
        parts = [s for _, s in self._tiles_for(bounds) if len(s.radii_um)]
        if not parts:
            return Spheres()
        c = np.concatenate([s.centres_um for s in parts])
        r = np.concatenate([s.radii_um for s in parts])
        keep = (c[:, 0] + r >= x0) & (c[:, 0] - r <= x1) & (c[:, 1] + r >= y0) & (c[:, 1] - r <= y1)
        return Spheres(c[keep], r[keep])
