"""The camera's field of view on the laboratory plane."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class FieldOfView:
    """Which part of the lab plane a camera image shows.

    Pixel (column i, row j) has its centre at camera offset (u, v) = (i + ½ − nx/2,
    j + ½ − ny/2) pixels from the field centre, and ``(u, v) · pixel = R(ρ) · (lab − centre)``
    with ρ = ``rotation_deg``, the angle from the camera's +X axis to the tilt axis (lab x).

    Attributes
    ----------
    centre_um
        Lab (x, y) of the field centre.
    shape
        (rows, columns) of the image.
    pixel_size_a
        Image pixel on the specimen plane (binned).
    rotation_deg
        Camera rotation (mdoc RotationAngle).
    """

    centre_um: tuple[float, float]
    shape: tuple[int, int]
    pixel_size_a: float
    rotation_deg: float

    @property
    def pixel_um(self) -> float:
        """Pixel size in µm."""
        return self.pixel_size_a * 1e-4

    def _rot(self) -> NDArray[np.float64]:
        r = math.radians(self.rotation_deg)
        return np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])

    def lab_from_pixels(
        self, cols: NDArray[np.floating], rows: NDArray[np.floating]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Lab (x, y) µm of continuous pixel coordinates (pixel i spans [i, i+1))."""
        ny, nx = self.shape
        u = (np.asarray(cols, np.float64) - nx / 2) * self.pixel_um
        v = (np.asarray(rows, np.float64) - ny / 2) * self.pixel_um
        rot = self._rot()
        x = rot[0, 0] * u + rot[1, 0] * v + self.centre_um[0]
        y = rot[0, 1] * u + rot[1, 1] * v + self.centre_um[1]
        return x, y

    def pixels_from_lab(
        self, x_um: NDArray[np.floating], y_um: NDArray[np.floating]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Continuous pixel coordinates (column, row) of lab points."""
        ny, nx = self.shape
        dx = np.asarray(x_um, np.float64) - self.centre_um[0]
        dy = np.asarray(y_um, np.float64) - self.centre_um[1]
        rot = self._rot()
        u = (rot[0, 0] * dx + rot[0, 1] * dy) / self.pixel_um
        v = (rot[1, 0] * dx + rot[1, 1] * dy) / self.pixel_um
        return u + nx / 2, v + ny / 2

    def lab_vector_to_pixels(self, dx_um: float, dy_um: float) -> tuple[float, float]:
        """A lab displacement expressed in pixels (column, row)."""
        rot = self._rot()
        return (
            float((rot[0, 0] * dx_um + rot[0, 1] * dy_um) / self.pixel_um),
            float((rot[1, 0] * dx_um + rot[1, 1] * dy_um) / self.pixel_um),
        )

    def padded(self, pad: int) -> FieldOfView:
        """The same field grown by ``pad`` pixels on every side."""
        ny, nx = self.shape
        return FieldOfView(
            self.centre_um, (ny + 2 * pad, nx + 2 * pad), self.pixel_size_a, self.rotation_deg
        )

    def bounds_um(self, margin_um: float = 0.0) -> tuple[float, float, float, float]:
        """Lab-plane bounding box (x0, x1, y0, y1) of the field, grown by ``margin_um``."""
        ny, nx = self.shape
        cols = np.array([0.0, nx, 0.0, nx])
        rows = np.array([0.0, 0.0, ny, ny])
        x, y = self.lab_from_pixels(cols, rows)
        return (
            float(x.min() - margin_um),
            float(x.max() + margin_um),
            float(y.min() - margin_um),
            float(y.max() + margin_um),
        )
