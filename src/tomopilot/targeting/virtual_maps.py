"""Virtual maps: reference images cut from a View-magnification montage (pacetomo.md §6).

Instead of exposing every target to take its Preview map, PACEtomo's targetsFromMontage crops a
camera-sized field around each target from a montage and resizes it to the Record (or
Preview) and View pixel sizes. Here the crop is a resampling: every pixel of the virtual
image is placed on the specimen through the target area's specimen-to-camera matrix (so the
camera's rotation is respected) and read from the montage, after a Gaussian anti-alias filter
when the virtual pixel is coarser than the montage's. Outside the montage the mean is used.
:func:`acquire_montage` makes a simple montage by image shift, for the twin and for tests.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from tomopilot.instrument import LowDoseArea, Microscope
from tomopilot.targeting.map_image import MapImage

Point = tuple[float, float]


@dataclass(frozen=True)
class VirtualMap:
    """A reference image for one target at one area's pixel size."""

    data: NDArray[np.float32]
    centre_um: Point
    matrix: NDArray[np.float64]
    pixel_size_a: float
    area: LowDoseArea

    def as_map(self) -> MapImage:
        """The virtual map as a :class:`MapImage` (for realignment)."""
        return MapImage(self.data, self.centre_um, self.matrix)


def virtual_map(
    montage: MapImage,
    point_um: Point,
    *,
    shape: tuple[int, int],
    matrix: NDArray[np.float64],
    area: LowDoseArea,
) -> VirtualMap:
    """Cut the field of ``shape`` pixels (matrix ``matrix``) around ``point_um`` from a montage."""
    ny, nx = shape
    pixel_um = 1.0 / math.sqrt(abs(np.linalg.det(matrix)))
    ratio = pixel_um / montage.pixel_um
    source = montage.data.astype(np.float64)
    if ratio > 1.0:
        source = ndimage.gaussian_filter(source, sigma=0.5 * math.sqrt(ratio**2 - 1.0))
    rows, cols = np.mgrid[0:ny, 0:nx].astype(np.float64)
    offsets = np.stack([cols.ravel() + 0.5 - nx / 2, rows.ravel() + 0.5 - ny / 2], axis=1)
    points = offsets @ np.linalg.inv(matrix).T + np.asarray(point_um)
    px = montage.to_pixels(points)
    fill = float(np.mean(montage.data))
    values = ndimage.map_coordinates(
        source, [px[:, 1] - 0.5, px[:, 0] - 0.5], order=1, mode="constant", cval=fill
    )
    return VirtualMap(
        values.reshape(ny, nx).astype(np.float32),
        (float(point_um[0]), float(point_um[1])),
        np.asarray(matrix, np.float64),
        pixel_um * 1e4,
        area,
    )


def virtual_maps_for_scope(
    scope: Microscope,
    montage: MapImage,
    points_um: Sequence[Point],
    *,
    areas: Sequence[LowDoseArea] = (LowDoseArea.PREVIEW, LowDoseArea.VIEW),
) -> list[dict[LowDoseArea, VirtualMap]]:
    """Virtual maps of every point at each area's pixel size and camera field."""
    out = []
    for point in points_um:
        maps = {}
        for area in areas:
            preset = scope.optics.preset(area)
            width, height = preset.camera_area_px or scope.camera.size_px
            shape = (height // preset.binning, width // preset.binning)
            matrix = scope.camera.specimen_to_camera_matrix(area)
            maps[area] = virtual_map(montage, point, shape=shape, matrix=matrix, area=area)
        out.append(maps)
    return out


def write_map_mrc(path: Path | str, vmap: VirtualMap, *, overwrite: bool = False) -> Path:
    """Write a virtual map as MRC (mode 2, voxel size = pixel size), atomically."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(vmap.data.astype(np.float32))
            mrc.voxel_size = vmap.pixel_size_a
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def acquire_montage(
    scope: Microscope, area: LowDoseArea, *, tiles: tuple[int, int] = (3, 3), overlap: float = 0.1
) -> MapImage:
    """A montage of ``tiles`` (columns, rows) images by image shift around the current position.

    Tiles are placed at their nominal positions (no edge alignment) and averaged where they
    overlap; the image shift is restored afterwards.
    """
    matrix = scope.camera.specimen_to_camera_matrix(area)
    inverse = np.linalg.inv(matrix)
    preset = scope.optics.preset(area)
    width, height = preset.camera_area_px or scope.camera.size_px
    h, w = height // preset.binning, width // preset.binning
    n_cols, n_rows = tiles
    step_px = np.array([w, h]) * (1.0 - overlap)
    canvas_shape = (
        math.ceil(h + (n_rows - 1) * step_px[1]),
        math.ceil(w + (n_cols - 1) * step_px[0]),
    )
    total = np.zeros(canvas_shape)
    weight = np.zeros(canvas_shape)
    base_x, base_y = scope.optics.image_shift_um()
    stage = scope.stage.position()
    try:
        for j in range(n_rows):
            for i in range(n_cols):
                offset = np.array([i - (n_cols - 1) / 2, j - (n_rows - 1) / 2]) * step_px
                shift = inverse @ offset
                scope.optics.set_image_shift_um(base_x + shift[0], base_y + shift[1])
                data = scope.camera.acquire(area).data
                x0 = round(canvas_shape[1] / 2 + offset[0] - w / 2)
                y0 = round(canvas_shape[0] / 2 + offset[1] - h / 2)
                total[y0 : y0 + h, x0 : x0 + w] += data
                weight[y0 : y0 + h, x0 : x0 + w] += 1
    finally:
        scope.optics.set_image_shift_um(base_x, base_y)
    canvas = np.where(weight > 0, total / np.maximum(weight, 1), np.mean(total[weight > 0]))
    centre = (stage.x_um + base_x, stage.y_um + base_y)
    return MapImage(canvas.astype(np.float32), centre, matrix)
