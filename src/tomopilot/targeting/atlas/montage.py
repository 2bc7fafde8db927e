"""A grid atlas: a montage of low-magnification tiles taken by stage moves, and its stitching.

Tiles lie on a rectangular lattice in *camera* pixels (so neighbouring pieces overlap by the
same strip whatever the camera's rotation): tile (i, j) is centred ``(i·sx, j·sy)`` pixels from
the montage centre, ``s = (1 − overlap)·field``, which is the stage position
``centre + M⁻¹·(i·sx, j·sy)`` with M the preset's specimen-to-camera matrix. Tiles are taken in
a serpentine order (rows alternate direction), as SerialEM takes a stage montage.

Stitching (:func:`align_pieces`): each pair of neighbours is cross-correlated over their
nominal overlap strip (grid bars make strong, sharp features at this scale); the measured
disagreements give, by least squares over every good edge with the first piece fixed, each
piece's correction to its nominal place. These are SerialEM's ``PieceCoordinates`` (nominal)
and ``AlignedPieceCoords`` (after alignment). :meth:`Atlas.stitched` blends the pieces at
their aligned places into one :class:`~tomopilot.targeting.map_image.MapImage`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from tomopilot.core.events import Progress
from tomopilot.instrument import Image, LowDoseArea, Microscope
from tomopilot.instrument.presets import PresetManager
from tomopilot.targeting.errors import TargetingError
from tomopilot.targeting.map_image import MapImage

MIN_EDGE_CORRELATION = 0.5  # normalised correlation of a usable overlap
MIN_PEAK_SHARPNESS = 2e-3  # drop of the correlation one pixel off the peak
PRIOR_WEIGHT = 0.05
TASK = "atlas"


@dataclass
class Atlas:
    """The pieces of a montage and where they go.

    Attributes
    ----------
    pieces
        Piece images (N, ny, nx), in acquisition order.
    indices
        (i, j) lattice index of each piece (column, row), (N, 2).
    piece_coords_px
        Nominal lower-left (x, y) of each piece in the montage, pixels (N, 2) integers; y counts
        rows of the stored arrays (row 0 first), as IMOD's piece coordinates do.
    aligned_coords_px
        The same after edge alignment.
    stage_um
        Stage (x, y) each piece was taken at (N, 2).
    centre_um
        Specimen (x, y) of the montage centre (stage frame).
    matrix
        Specimen µm → montage pixel 2×2 matrix (the preset's camera matrix).
    preset
        Name of the preset the tiles were taken with.
    images
        The exposures (their conditions, for the mdoc).
    edges
        Per measured edge: (a, b, dx, dy): piece b's content sits (dx, dy) pixels from where
        the nominal places put it relative to a (NaN: that component could not be measured).
    """

    pieces: NDArray[np.float32]
    indices: NDArray[np.int64]
    piece_coords_px: NDArray[np.int64]
    aligned_coords_px: NDArray[np.int64]
    stage_um: NDArray[np.float64]
    centre_um: tuple[float, float]
    matrix: NDArray[np.float64]
    preset: str
    images: list[Image] = field(default_factory=list)
    edges: list[tuple[int, int, float, float]] = field(default_factory=list)

    @property
    def piece_shape(self) -> tuple[int, int]:
        """(rows, columns) of one piece."""
        return int(self.pieces.shape[1]), int(self.pieces.shape[2])

    @property
    def size_px(self) -> tuple[int, int]:
        """(width, height) of the whole montage at the nominal piece places."""
        ny, nx = self.piece_shape
        return (
            int(self.piece_coords_px[:, 0].max()) + nx,
            int(self.piece_coords_px[:, 1].max()) + ny,
        )

    @property
    def pixel_um(self) -> float:
        """Montage pixel size (µm)."""
        return float(1.0 / math.sqrt(abs(np.linalg.det(self.matrix))))

    def stitched(self, *, aligned: bool = True) -> MapImage:
        """One image of the whole montage (overlaps averaged), as a map."""
        coords = self.aligned_coords_px if aligned else self.piece_coords_px
        ny, nx = self.piece_shape
        lo = coords.min(axis=0)
        coords = coords - lo
        width = int(coords[:, 0].max()) + nx
        height = int(coords[:, 1].max()) + ny
        total = np.zeros((height, width))
        weight = np.zeros((height, width))
        for piece, (x0, y0) in zip(self.pieces, coords, strict=True):
            total[y0 : y0 + ny, x0 : x0 + nx] += piece
            weight[y0 : y0 + ny, x0 : x0 + nx] += 1
        fill = float(np.mean(total[weight > 0])) if (weight > 0).any() else 0.0
        canvas = np.where(weight > 0, total / np.maximum(weight, 1), fill).astype(np.float32)
        # The nominal montage centre sits at size/2 of the nominal frame; shift by lo.
        full_w, full_h = self.size_px
        centre_px = np.array([full_w / 2 - lo[0], full_h / 2 - lo[1]])
        offset = centre_px - np.array([width / 2, height / 2])
        centre = np.asarray(self.centre_um) - np.linalg.solve(self.matrix, offset)
        return MapImage(canvas, (float(centre[0]), float(centre[1])), self.matrix.copy())


def tiles_for_extent(
    field_px: tuple[int, int], pixel_um: float, extent_um: float, overlap: float
) -> tuple[int, int]:
    """(columns, rows) of tiles whose montage covers a square of ``extent_um``."""
    out = []
    for n_px in field_px:
        field_um = n_px * pixel_um
        step = field_um * (1.0 - overlap)
        out.append(max(1, math.ceil(max(extent_um - field_um, 0.0) / step - 1e-9) + 1))
    return out[0], out[1]


def serpentine(n_cols: int, n_rows: int) -> list[tuple[int, int]]:
    """Lattice indices (i, j), centred on 0, row by row with alternating direction."""
    order = []
    for row in range(n_rows):
        cols = range(n_cols) if row % 2 == 0 else range(n_cols - 1, -1, -1)
        order += [(col, row) for col in cols]
    return order


def acquire_atlas(
    scope: Microscope,
    presets: PresetManager,
    *,
    centre_um: tuple[float, float] = (0.0, 0.0),
    extent_um: float | None = None,
    tiles: tuple[int, int] | None = None,
    overlap: float = 0.12,
    preset: str = "Grid",
) -> Atlas:
    """Take a montage of ``tiles`` (columns, rows), or of enough tiles to cover ``extent_um``.

    Emits :class:`~tomopilot.core.events.Progress` (task ``"atlas"``) on the microscope's bus
    after each tile. The stage is left at the montage centre.
    """
    if not 0.0 <= overlap < 0.5:
        raise TargetingError(f"a montage overlap must lie in [0, 0.5), not {overlap:g}")
    area: LowDoseArea = presets.apply(preset)
    conditions = scope.optics.preset(area)
    width, height = conditions.camera_area_px or scope.camera.size_px
    nx, ny = width // conditions.binning, height // conditions.binning
    matrix = scope.camera.specimen_to_camera_matrix(area)
    pixel_um = float(1.0 / math.sqrt(abs(np.linalg.det(matrix))))
    if tiles is None:
        if extent_um is None:
            raise TargetingError("give the atlas's tiles or the extent it must cover")
        tiles = tiles_for_extent((nx, ny), pixel_um, extent_um, overlap)
    n_cols, n_rows = tiles
    if n_cols < 1 or n_rows < 1:
        raise TargetingError(f"an atlas needs at least one tile, not {n_cols}×{n_rows}")
    step = np.array([round(nx * (1 - overlap)), round(ny * (1 - overlap))])
    inverse = np.linalg.inv(matrix)
    order = serpentine(n_cols, n_rows)
    pieces, stage, images, coords = [], [], [], []
    total = len(order)
    for done, (i, j) in enumerate(order, start=1):
        offset_px = (np.array([i, j]) - (np.array([n_cols, n_rows]) - 1) / 2) * step
        d = inverse @ offset_px
        x, y = centre_um[0] + float(d[0]), centre_um[1] + float(d[1])
        scope.stage.move_to(x_um=x, y_um=y)
        image = scope.camera.acquire(area)
        pieces.append(np.asarray(image.data, np.float32))
        stage.append((x, y))
        images.append(image)
        coords.append((i * step[0], j * step[1]))
        scope.events.emit(
            Progress(
                time_s=scope.clock.now_s(),
                task=TASK,
                done=done,
                total=total,
                detail=f"tile {done}/{total} at ({x:.0f}, {y:.0f}) µm",
            )
        )
    scope.stage.move_to(x_um=centre_um[0], y_um=centre_um[1])
    nominal = np.asarray(coords, np.int64)
    atlas = Atlas(
        pieces=np.stack(pieces),
        indices=np.asarray(order, np.int64),
        piece_coords_px=nominal,
        aligned_coords_px=nominal.copy(),
        stage_um=np.asarray(stage, np.float64),
        centre_um=(float(centre_um[0]), float(centre_um[1])),
        matrix=np.asarray(matrix, np.float64),
        preset=preset,
        images=images,
    )
    align_pieces(atlas)
    return atlas


def _ncc_shift(
    strip_a: NDArray[np.float32], strip_b: NDArray[np.float32], reach_px: int
) -> tuple[float, float, float, float, float]:
    """(sx, sy, peak, sharpness x, sharpness y): content of ``strip_a`` at p appears in
    ``strip_b`` at p + s.

    Normalised cross-correlation over the common part for every integer shift within
    ``reach_px``, refined by a parabola through the best and its neighbours; the sharpness
    along an axis is how much the correlation drops one pixel off the peak.
    """
    a = np.asarray(strip_a, np.float64)
    b = np.asarray(strip_b, np.float64)
    ny, nx = a.shape
    size = 2 * reach_px + 1
    scores = np.full((size, size), -1.0)
    for iy, sy in enumerate(range(-reach_px, reach_px + 1)):
        for ix, sx in enumerate(range(-reach_px, reach_px + 1)):
            ya, yb = max(0, -sy), max(0, sy)
            xa, xb = max(0, -sx), max(0, sx)
            h, w = ny - abs(sy), nx - abs(sx)
            if h < 4 or w < 4:
                continue
            pa = a[ya : ya + h, xa : xa + w]
            pb = b[yb : yb + h, xb : xb + w]
            pa = pa - pa.mean()
            pb = pb - pb.mean()
            denom = math.sqrt(float(np.sum(pa * pa) * np.sum(pb * pb)))
            scores[iy, ix] = float(np.sum(pa * pb)) / denom if denom > 0 else -1.0
    best = np.unravel_index(int(np.argmax(scores)), scores.shape)
    iy, ix = int(best[0]), int(best[1])

    def vertex(m: float, c: float, p: float) -> float:
        d = m - 2 * c + p
        return 0.0 if d >= 0 else float(np.clip(0.5 * (m - p) / d, -0.5, 0.5))

    fy = vertex(*scores[iy - 1 : iy + 2, ix]) if 0 < iy < size - 1 else 0.0
    fx = vertex(*scores[iy, ix - 1 : ix + 2]) if 0 < ix < size - 1 else 0.0

    def sharp(m: float, c: float, p: float) -> float:
        return max(0.0, c - 0.5 * (m + p))

    cy = sharp(*scores[iy - 1 : iy + 2, ix]) if 0 < iy < size - 1 else 0.0
    cx = sharp(*scores[iy, ix - 1 : ix + 2]) if 0 < ix < size - 1 else 0.0
    return ix - reach_px + fx, iy - reach_px + fy, float(scores[iy, ix]), cx, cy


def _edge_shift(
    a: NDArray[np.float32], b: NDArray[np.float32], along: int, overlap_px: int
) -> tuple[float, float, bool, bool] | None:
    """(dx, dy, x measured, y measured): b's content relative to its nominal place next to a.

    A component is measured when the correlation peak is sharp along it and inside the
    search; across a narrow strip whose content runs along it (a bar parallel to the edge)
    the peak is flat and that component is left to the other edges.
    """
    if overlap_px < 8:
        return None
    if along == 0:  # b is to the right of a
        strip_a, strip_b = a[:, -overlap_px:], b[:, :overlap_px]
    else:  # b is below a (later rows)
        strip_a, strip_b = a[-overlap_px:, :], b[:overlap_px, :]
    # The search reaches half the overlap: a stage that misses by ~10 µm (an autoloader's
    # periodic error plus backlash) moves a piece ~7 px at 1.5 µm pixels, past a quarter of
    # a 12 % overlap of 256 px; the grid's period (a square, ~55 px) stays beyond it.
    reach = max(2, overlap_px // 2)
    sx, sy, peak, cx, cy = _ncc_shift(strip_a, strip_b, reach)
    good = peak >= MIN_EDGE_CORRELATION
    x_ok = good and cx >= MIN_PEAK_SHARPNESS and abs(sx) < reach - 0.5
    y_ok = good and cy >= MIN_PEAK_SHARPNESS and abs(sy) < reach - 0.5
    # Content at p in a's strip appears at p + s in b's: b sits −s from its nominal place.
    return -sx, -sy, x_ok, y_ok


def align_pieces(atlas: Atlas) -> None:
    """Measure every edge and set ``aligned_coords_px`` by least squares.

    Each measured component of an edge asks piece b's correction minus piece a's to equal the
    measurement; a weak prior keeps every piece near its nominal place (so a piece no edge
    constrains stays there) and the first piece is held.
    """
    n = len(atlas.pieces)
    place = {(int(i), int(j)): k for k, (i, j) in enumerate(atlas.indices)}
    ny, nx = atlas.piece_shape
    equations: list[list[tuple[NDArray[np.float64], float]]] = [[], []]
    atlas.edges = []
    for (i, j), a in place.items():
        for along, (di, dj) in enumerate(((1, 0), (0, 1))):
            b = place.get((i + di, j + dj))
            if b is None:
                continue
            gap = atlas.piece_coords_px[b] - atlas.piece_coords_px[a]
            overlap_px = int(nx - gap[0]) if along == 0 else int(ny - gap[1])
            measured = _edge_shift(atlas.pieces[a], atlas.pieces[b], along, overlap_px)
            if measured is None:
                continue
            dx, dy, x_ok, y_ok = measured
            atlas.edges.append((a, b, dx if x_ok else math.nan, dy if y_ok else math.nan))
            for axis, (value, ok) in enumerate(((dx, x_ok), (dy, y_ok))):
                if ok:
                    row = np.zeros(n)
                    row[b], row[a] = 1.0, -1.0
                    equations[axis].append((row, value))
    correction = np.zeros((n, 2))
    for axis in (0, 1):
        if not equations[axis]:
            continue
        rows = [r for r, _ in equations[axis]] + list(np.eye(n) * PRIOR_WEIGHT)
        values = [v for _, v in equations[axis]] + [0.0] * n
        rows.append(np.eye(n)[0] * 10.0)
        values.append(0.0)
        solution, *_ = np.linalg.lstsq(np.vstack(rows), np.asarray(values), rcond=None)
        correction[:, axis] = solution
    atlas.aligned_coords_px = atlas.piece_coords_px + np.round(correction).astype(np.int64)
