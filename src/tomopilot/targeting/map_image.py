"""A map: an image and where its pixels lie on the specimen.

The pixel convention is the camera's: pixel (column i, row j) spans [i, i+1) × [j, j+1), and a
specimen point d µm from the map centre lies at continuous pixel (nx/2, ny/2) + M·d, with M the
specimen-to-camera matrix of the area the map was taken in (binned pixels per µm).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from tomopilot.instrument import Image, LowDoseArea, Microscope


@dataclass
class MapImage:
    """Map data (rows, columns), its centre in specimen µm, and its pixel matrix.

    Attributes
    ----------
    data
        The image, float32.
    centre_um
        Specimen (x, y) at the image centre in the microscope's frame: stage position plus
        image shift (at 0°). With the image shift centred on the tilt axis the field really
        sits the axis offset further along y; that constant is the same for every map,
        target and move in one frame, so it cancels.
    matrix
        Specimen µm → pixel (column, row) 2×2 matrix.
    image
        The exposure the map came from, when it is one (for its conditions).
    """

    data: NDArray[np.float32]
    centre_um: tuple[float, float]
    matrix: NDArray[np.float64]
    image: Image | None = None

    @classmethod
    def from_exposure(cls, scope: Microscope, image: Image) -> MapImage:
        """A map from an exposure, centred at its stage position plus image shift."""
        matrix = scope.camera.specimen_to_camera_matrix(image.area)
        x = image.stage.x_um + image.image_shift_um[0]
        y = image.stage.y_um + image.image_shift_um[1]
        return cls(np.asarray(image.data, np.float32), (x, y), matrix, image)

    @property
    def pixel_um(self) -> float:
        """Pixel size (µm), from the matrix."""
        return float(1.0 / np.sqrt(abs(np.linalg.det(self.matrix))))

    @property
    def area(self) -> LowDoseArea | None:
        """The low-dose area of the exposure, if known."""
        return self.image.area if self.image is not None else None

    def to_pixels(self, points_um: NDArray[np.floating]) -> NDArray[np.float64]:
        """Continuous (column, row) of specimen points (n, 2)."""
        ny, nx = self.data.shape
        d = np.asarray(points_um, np.float64).reshape(-1, 2) - np.asarray(self.centre_um)
        return np.asarray(d @ self.matrix.T + np.array([nx / 2, ny / 2]))

    def to_specimen(self, pixels: NDArray[np.floating]) -> NDArray[np.float64]:
        """Specimen (x, y) of continuous pixel coordinates (n, 2)."""
        ny, nx = self.data.shape
        p = np.asarray(pixels, np.float64).reshape(-1, 2) - np.array([nx / 2, ny / 2])
        return np.asarray(p @ np.linalg.inv(self.matrix).T + np.asarray(self.centre_um))

    def sample(self, points_um: NDArray[np.floating], fill: float = np.nan) -> NDArray[np.float64]:
        """Bilinear values at specimen points; ``fill`` outside the map."""
        px = self.to_pixels(points_um)
        return np.asarray(
            ndimage.map_coordinates(
                self.data.astype(np.float64),
                [px[:, 1] - 0.5, px[:, 0] - 0.5],
                order=1,
                mode="constant",
                cval=fill,
            )
        )
