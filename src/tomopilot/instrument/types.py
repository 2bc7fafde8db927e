"""Value types shared by every microscope backend: positions, low-dose areas, images."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from tomopilot.core.config import ConfigModel


class LowDoseArea(StrEnum):
    """The low-dose areas of SerialEM, each a preset of magnification, exposure and dose."""

    SEARCH = "Search"
    VIEW = "View"
    FOCUS = "Focus"
    TRIAL = "Trial"
    RECORD = "Record"
    PREVIEW = "Preview"


class AreaPreset(ConfigModel):
    """Imaging conditions of one low-dose area.

    ``unbinned_pixel_size_a`` is the pixel size on the specimen at this magnification for one
    unbinned camera pixel; the image pixel size is that times ``binning``. The dose rate is in
    electrons per unbinned pixel per second at the detector with nothing in the beam, as
    SerialEM reports it.
    """

    magnification: int = Field(gt=0)
    unbinned_pixel_size_a: float = Field(gt=0)
    binning: int = Field(default=1, ge=1, le=16)
    defocus_offset_um: float = 0.0
    exposure_s: float = Field(gt=0, le=60)
    dose_rate_e_px_s: float = Field(ge=0)
    camera_area_px: tuple[int, int] | None = Field(
        default=None,
        description="(width, height) of a centred sub-area in unbinned pixels; None = full",
    )
    frame_time_s: float = Field(default=0.1, gt=0)
    offset_along_axis_um: float = Field(
        default=0.0,
        description="shift of this area from Record along the tilt axis (Focus/Trial in LD)",
    )
    beam_diameter_um: float = Field(default=1.5, gt=0)
    spot_size: int = Field(default=7, ge=1, le=11)

    @property
    def pixel_size_a(self) -> float:
        """Image pixel size on the specimen (Å), binning included."""
        return self.unbinned_pixel_size_a * self.binning

    @property
    def dose_e_a2(self) -> float:
        """Dose per exposure in e⁻/Å² with nothing in the beam."""
        return self.dose_rate_e_px_s * self.exposure_s / self.unbinned_pixel_size_a**2

    @property
    def n_frames(self) -> int:
        """Frames in a movie of one exposure."""
        return max(1, round(self.exposure_s / self.frame_time_s))

    @model_validator(mode="after")
    def _check_area(self) -> AreaPreset:
        if self.camera_area_px is not None:
            w, h = self.camera_area_px
            if w <= 0 or h <= 0:
                raise ValueError("camera_area_px must be positive")
            if w % self.binning or h % self.binning:
                raise ValueError("camera_area_px must be divisible by the binning")
        return self


@dataclass(frozen=True)
class StagePosition:
    """A stage reading: x, y, z in µm and the tilt (alpha) in degrees."""

    x_um: float
    y_um: float
    z_um: float
    tilt_deg: float


@dataclass(frozen=True)
class StageLimits:
    """Travel of the stage: ±xy, ±z (µm) and ±tilt (degrees)."""

    xy_um: float
    z_um: float
    tilt_deg: float


@dataclass(frozen=True)
class DewarStatus:
    """State of the autofill dewars."""

    filling: bool
    seconds_until_next_fill: float
    seconds_left_in_fill: float


@dataclass(frozen=True)
class ScopeState:
    """The microscope and camera state of one exposure, as SerialEM reads it back.

    What a backend reports; the mdoc section and the Record's CTF fit take their values from
    here (a 200 kV microscope writes 200 kV). ``None`` = the backend does not know it.

    Attributes
    ----------
    voltage_kv, cs_mm
        Accelerating voltage (kV) and spherical aberration (mm).
    spot_size, intensity, mag_index
        Spot size, illumination (C2) value as SerialEM reports it, magnification index.
    camera_index, operating_mode, using_cds, divided_by_2, rotation_and_flip
        SerialEM's camera number, read mode (0 linear, 1 counting, 2 super-resolution),
        correlated double sampling, whether counts were halved to fit 16 bits, and the
        rotation/flip operation applied to the image (0 = none).
    slit_width_ev, energy_loss_ev
        Energy-filter slit width and loss (0, 0 = slit out or no filter).
    uncropped_size_px
        SerialEM's ``UncroppedSize`` (negative when the image is not cropped, as it writes).
    """

    voltage_kv: float
    cs_mm: float | None = None
    spot_size: int | None = None
    intensity: float | None = None
    mag_index: int | None = None
    camera_index: int | None = None
    operating_mode: int | None = None
    using_cds: bool | None = None
    divided_by_2: bool | None = None
    rotation_and_flip: int | None = None
    slit_width_ev: float | None = None
    energy_loss_ev: float = 0.0
    uncropped_size_px: tuple[int, int] | None = None


@dataclass
class Image:
    """One exposure as the camera delivered it, with the conditions a mdoc would record.

    ``data`` is in counts (float32), shape (height, width). ``defocus_um`` is the objective
    focus readout including the area's defocus offset, as SerialEM writes it to the mdoc.
    ``exposure_id`` is the backend's identifier of this exposure (the twin's ground truth is
    keyed by it).
    """

    data: NDArray[np.float32]
    area: LowDoseArea
    pixel_size_a: float
    binning: int
    magnification: int
    exposure_s: float
    dose_e_a2: float
    defocus_um: float
    stage: StagePosition
    image_shift_um: tuple[float, float]
    time_s: float
    datetime: datetime
    exposure_id: int
    counts_per_electron: float = 1.0
    extra: dict[str, float] = field(default_factory=dict)
    state: ScopeState | None = None

    @property
    def tilt_deg(self) -> float:
        """Stage tilt reported when the image was taken."""
        return self.stage.tilt_deg

    @property
    def mean_counts(self) -> float:
        """Mean counts per pixel."""
        return float(np.mean(self.data, dtype=np.float64))

    @property
    def mean_counts_per_s(self) -> float:
        """Mean counts per unbinned pixel per second (SerialEM ``ReportMeanCounts buf 1``)."""
        return self.mean_counts / (self.binning**2 * self.exposure_s)


@dataclass
class Movie:
    """A frame stack of one exposure: ``frames`` has shape (n, height, width), in counts.

    When the instrument saved the frames itself and is still writing them (SerialEM's early
    return), ``frames`` is empty in height and width, shape (n, 0, 0): only ``source_path``
    holds them.
    """

    frames: NDArray[np.float32]
    frame_dose_e_a2: float
    frame_time_s: float
    image: Image
    source_path: Path | None = None
    """The file the instrument already saved these frames in (SerialEM's frame saving), so
    they need not be written again; None when the frames exist only in memory (the twin)."""

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return int(self.frames.shape[0])
