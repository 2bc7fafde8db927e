"""The twin's ground truth: what really happened at every exposure, and the time it took.

For each exposure the twin records where the specimen was (the stage pose), where the beam was
and how large, the true defocus at the image centre and its gradient, the dose, and for movies
the true frame motion. From these records a report can answer, for any specimen point, where it
was relative to the beam centre in each exposure (tracking error) and how much dose it received,
including dose from neighbours' beams (an ellipse stretched by 1/cos θ across the tilt axis on
the specimen). Only reports read this: acquisition algorithms never see it.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tomopilot.core.files import atomic_write_text
from tomopilot.instrument.twin.motion import MotionModel
from tomopilot.instrument.twin.pose import StagePose


@dataclass
class ExposureTruth:
    """What is true about one exposure (every length in µm unless named otherwise)."""

    exposure_id: int
    area: str
    time_s: float
    duration_s: float
    dose_e_a2: float
    beam_centre_lab_um: tuple[float, float]
    beam_radius_um: float
    field_shape: tuple[int, int]
    pixel_size_a: float
    rotation_deg: float
    pose: StagePose
    stage_reported: tuple[float, float, float, float]
    image_shift_true_um: tuple[float, float]
    focus_um: float
    defocus_um: float
    defocus_gradient_um_per_px: tuple[float, float]
    specimen_centre_um: tuple[float, float, float]
    transmission_centre: float
    path_centre_nm: float
    rendered: bool = True
    dark: bool = False
    motion: MotionModel | None = None
    #: the mean part of the image shifts not yet arrived during the exposure (lab µm; the beam
    #: centre above already has it) and how far the beam moved meanwhile (nm): a beam on
    #: before the image shift had settled (``image_shift_settling``)
    is_lag_um: tuple[float, float] = (0.0, 0.0)
    is_blur_nm: float = 0.0

    @property
    def tilt_deg(self) -> float:
        """The true stage tilt during the exposure."""
        return self.pose.tilt_deg

    @property
    def frame_shifts_px(self) -> NDArray[np.float64]:
        """True global displacement (n, 2) of each movie frame (x, y) in pixels."""
        if self.motion is None:
            raise ValueError(f"exposure {self.exposure_id} is not a movie")
        return self.motion.frame_shifts_px

    def displacement_px(
        self, frame: int, x_px: NDArray[np.floating], y_px: NDArray[np.floating]
    ) -> NDArray[np.float64]:
        """True total displacement (..., 2) of movie content at image positions."""
        if self.motion is None:
            raise ValueError(f"exposure {self.exposure_id} is not a movie")
        return self.motion.displacement_px(frame, x_px, y_px)

    def defocus_at_px(
        self, x_px: NDArray[np.floating], y_px: NDArray[np.floating]
    ) -> NDArray[np.float64]:
        """True defocus (µm) at image positions (pixel centres at i + ½), linearised."""
        ny, nx = self.field_shape
        gx, gy = self.defocus_gradient_um_per_px
        x = np.asarray(x_px, np.float64) - nx / 2
        y = np.asarray(y_px, np.float64) - ny / 2
        return np.asarray(self.defocus_um + gx * x + gy * y)

    def offset_nm(self, specimen_point_um: tuple[float, float, float]) -> tuple[float, float]:
        """Where a specimen point was relative to the beam centre, in lab nm (x along the axis)."""
        lab = self.pose.to_lab(np.asarray(specimen_point_um, np.float64))
        return (
            float((lab[0] - self.beam_centre_lab_um[0]) * 1e3),
            float((lab[1] - self.beam_centre_lab_um[1]) * 1e3),
        )

    def dose_fraction(self, specimen_points_um: NDArray[np.floating]) -> float:
        """Fraction of the given specimen points that lay inside this exposure's beam."""
        lab = self.pose.to_lab(np.asarray(specimen_points_um, np.float64))
        d2 = (lab[..., 0] - self.beam_centre_lab_um[0]) ** 2 + (
            lab[..., 1] - self.beam_centre_lab_um[1]
        ) ** 2
        return float(np.mean(d2 <= self.beam_radius_um**2))

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form."""
        out: dict[str, object] = {
            "exposure_id": self.exposure_id,
            "area": self.area,
            "time_s": self.time_s,
            "duration_s": self.duration_s,
            "dose_e_a2": self.dose_e_a2,
            "beam_centre_lab_um": list(self.beam_centre_lab_um),
            "beam_radius_um": self.beam_radius_um,
            "field_shape": list(self.field_shape),
            "pixel_size_a": self.pixel_size_a,
            "rotation_deg": self.rotation_deg,
            "pose": self.pose.to_dict(),
            "true_tilt_deg": self.tilt_deg,
            "stage_reported": list(self.stage_reported),
            "image_shift_true_um": list(self.image_shift_true_um),
            "focus_um": self.focus_um,
            "defocus_um": self.defocus_um,
            "defocus_gradient_um_per_px": list(self.defocus_gradient_um_per_px),
            "specimen_centre_um": list(self.specimen_centre_um),
            "transmission_centre": self.transmission_centre,
            "path_centre_nm": self.path_centre_nm,
            "rendered": self.rendered,
            "dark": self.dark,
            "is_lag_um": list(self.is_lag_um),
            "is_blur_nm": self.is_blur_nm,
        }
        if self.motion is not None:
            out["motion"] = self.motion.to_dict()
        return out


@dataclass
class DoseReceived:
    """Dose at a specimen area, split into what was aimed at it and what spilled over."""

    total_e_a2: float = 0.0
    intended_e_a2: float = 0.0
    unintended_e_a2: float = 0.0
    by_area: dict[str, float] = field(default_factory=dict)


class GroundTruth:
    """The log of exposures and time that the twin keeps while it runs."""

    def __init__(self) -> None:
        self.exposures: list[ExposureTruth] = []
        self.time_by_activity_s: dict[str, float] = defaultdict(float)
        self.events: list[dict[str, object]] = []

    def record(self, truth: ExposureTruth) -> None:
        """Append an exposure record."""
        self.exposures.append(truth)

    def exposure(self, exposure_id: int) -> ExposureTruth:
        """The record of one exposure."""
        for truth in reversed(self.exposures):
            if truth.exposure_id == exposure_id:
                return truth
        raise KeyError(f"no exposure {exposure_id} in the ground truth")

    def spend(self, activity: str, seconds: float) -> None:
        """Book ``seconds`` of microscope time to an activity."""
        self.time_by_activity_s[activity] += seconds

    def note(self, time_s: float, kind: str, **detail: object) -> None:
        """Record a notable event (fault, jump, refill)."""
        self.events.append({"time_s": time_s, "kind": kind, **detail})

    def dose_received(
        self,
        specimen_point_um: tuple[float, float, float],
        half_size_um: float,
        *,
        samples: int = 7,
    ) -> DoseReceived:
        """Dose on a square specimen area (side 2·half_size) around a point.

        Each exposure contributes its dose times the fraction of the area inside its beam.
        An exposure counts as intended for the area when the area's centre lay within the
        exposure's image field (half the shorter field side from the beam centre).
        """
        offsets = np.linspace(-half_size_um, half_size_um, samples)
        gx, gy = np.meshgrid(offsets, offsets)
        centre = np.asarray(specimen_point_um, np.float64)
        pts = np.stack(
            [centre[0] + gx.ravel(), centre[1] + gy.ravel(), np.full(gx.size, centre[2])], 1
        )
        result = DoseReceived()
        for truth in self.exposures:
            fraction = truth.dose_fraction(pts)
            if fraction <= 0:
                continue
            dose = truth.dose_e_a2 * fraction
            dx, dy = truth.offset_nm((float(centre[0]), float(centre[1]), float(centre[2])))
            half_field_um = min(truth.field_shape) * truth.pixel_size_a * 1e-4 / 2
            intended = math.hypot(dx, dy) * 1e-3 <= half_field_um
            result.total_e_a2 += dose
            if intended:
                result.intended_e_a2 += dose
            else:
                result.unintended_e_a2 += dose
            result.by_area[truth.area] = result.by_area.get(truth.area, 0.0) + dose
        return result

    def to_dict(self) -> dict[str, object]:
        """Everything, JSON-friendly."""
        return {
            "exposures": [t.to_dict() for t in self.exposures],
            "time_by_activity_s": dict(self.time_by_activity_s),
            "events": self.events,
        }

    def write_json(self, path: Path | str) -> Path:
        """Write the whole ground truth as JSON (atomically)."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1))
