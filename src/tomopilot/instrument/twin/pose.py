"""Rigid placement of the specimen in the laboratory frame.

The lab frame has its origin on the optic axis at the eucentric height: x along the tilt axis,
y perpendicular to it in the plane normal to the beam, z along the beam (down the column, so a
point at larger z is less underfocused: defocus = focus + z, as PACEtomo's geometry model
reads it). A stage tilt θ maps (y, z) to (y cos θ − z sin θ, y sin θ + z cos θ). A
specimen point p (µm, specimen frame) sits at ``lab = rotation @ p + translation``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


def rotation_about_x(tilt_deg: float) -> NDArray[np.float64]:
    """The stage-tilt rotation: (y, z) → (y cos θ − z sin θ, y sin θ + z cos θ)."""
    t = np.deg2rad(tilt_deg)
    c, s = np.cos(t), np.sin(t)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


@dataclass(frozen=True)
class StagePose:
    """Where the specimen really is at one instant.

    Attributes
    ----------
    rotation, translation
        ``lab = rotation @ p + translation`` for specimen points p (µm).
    tilt_deg
        The true stage tilt.
    """

    rotation: NDArray[np.float64]
    translation: NDArray[np.float64]
    tilt_deg: float

    def to_lab(self, points_um: NDArray[np.floating]) -> NDArray[np.float64]:
        """Specimen points (..., 3) → lab points (..., 3)."""
        return np.asarray(points_um, dtype=np.float64) @ self.rotation.T + self.translation

    def to_specimen(self, lab_um: NDArray[np.floating]) -> NDArray[np.float64]:
        """Lab points (..., 3) → specimen points (..., 3)."""
        return (np.asarray(lab_um, dtype=np.float64) - self.translation) @ self.rotation

    def ray_parameters(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """For the vertical ray through lab (x, y): p(s) = p0(x, y) + s · direction.

        Returns the 3×3 matrix M with p0 = M @ (x, y, 0) − Rᵀ t and the direction Rᵀ ẑ.
        """
        return self.rotation.T, self.rotation.T[:, 2]

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form."""
        return {
            "rotation": self.rotation.tolist(),
            "translation_um": self.translation.tolist(),
            "tilt_deg": self.tilt_deg,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> StagePose:
        """Inverse of :meth:`to_dict`."""
        return cls(
            rotation=np.asarray(data["rotation"], dtype=np.float64),
            translation=np.asarray(data["translation_um"], dtype=np.float64),
            tilt_deg=float(data["tilt_deg"]),  # type: ignore[arg-type]
        )
