"""What is known about a diffraction series and each of its frames.

:class:`SeriesMetadata` is what a user states about a continuous-rotation series (voltage,
camera length, pixel size, start angle, oscillation per frame or rotation speed and exposure).
:class:`FrameMetadata` is what one frame carries through the conversion: it is written into the
frame's MRC labels by ``tia2mrc`` and read back by ``mrc2smv``, which fills the SMV header from
it. Frame ``i`` (0-based) of a series starts at ``start_angle_deg + i * osc_range_deg``.

Examples
--------
>>> series = SeriesMetadata(voltage_kv=200, start_angle_deg=-30, osc_range_deg=0.5, exposure_s=0.5)
>>> series.frame(2).tilt_angle_deg, series.frame(2).rotation_speed_deg_s
(-29.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tomopilot.io.errors import FormatError

__all__ = ["FrameMetadata", "SeriesMetadata"]

_TOKEN_FIELDS = {
    "tilt_deg": "tilt_angle_deg",
    "speed_deg_s": "rotation_speed_deg_s",
    "osc_deg": "osc_range_deg",
    "exposure_s": "exposure_s",
    "voltage_kv": "voltage_kv",
    "camera_length_mm": "camera_length_mm",
    "pixel_size_mm": "pixel_size_mm",
    "binning": "binning",
    "acquired": "acquired",
}


def _consistent(osc: float | None, speed: float | None, exposure: float | None) -> None:
    if osc is None or speed is None or exposure is None:
        return
    if not math.isclose(osc, speed * exposure, rel_tol=1e-6, abs_tol=1e-9):
        raise ValueError(
            f"osc_range_deg={osc} disagrees with rotation_speed_deg_s × exposure_s = "
            f"{speed} × {exposure} = {speed * exposure}"
        )


def _oscillation(osc: float | None, speed: float | None, exposure: float | None) -> float | None:
    """The rotation during a frame: given, or speed × exposure, or unknown."""
    if osc is not None:
        return osc
    if speed is not None and exposure is not None:
        return speed * exposure
    return None


class FrameMetadata(BaseModel):
    """What is known about one frame; ``None`` means unknown.

    Attributes
    ----------
    tilt_angle_deg
        Goniometer angle at the start of the frame (the SMV OSC_START).
    rotation_speed_deg_s
        Goniometer speed during the frame.
    osc_range_deg
        Rotation during the frame; negative for a decreasing angle.
    exposure_s
        Integration time of the frame.
    voltage_kv, camera_length_mm, pixel_size_mm
        Accelerating voltage, effective camera length, and the size of the image's pixels on
        the detector (camera pixel × binning).
    binning
        Camera binning, recorded as ``BIN=NxN``.
    acquired
        When the frame was recorded.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    tilt_angle_deg: float | None = None
    rotation_speed_deg_s: float | None = None
    osc_range_deg: float | None = None
    exposure_s: float | None = Field(default=None, gt=0)
    voltage_kv: float | None = Field(default=None, gt=0)
    camera_length_mm: float | None = Field(default=None, gt=0)
    pixel_size_mm: float | None = Field(default=None, gt=0)
    binning: int | None = Field(default=None, ge=1)
    acquired: datetime | None = None

    @property
    def oscillation_deg(self) -> float | None:
        """The rotation during the frame: given, or speed × exposure, or unknown."""
        return _oscillation(self.osc_range_deg, self.rotation_speed_deg_s, self.exposure_s)

    @property
    def exposure_or_derived_s(self) -> float | None:
        """The exposure: given, or oscillation / speed, or unknown."""
        if self.exposure_s is not None:
            return self.exposure_s
        if self.osc_range_deg is not None and self.rotation_speed_deg_s:
            return abs(self.osc_range_deg / self.rotation_speed_deg_s)
        return None

    def updated(self, other: FrameMetadata) -> FrameMetadata:
        """A copy in which every value that ``other`` knows replaces this one's."""
        known = {k: v for k, v in other.model_dump().items() if v is not None}
        return self.model_copy(update=known)

    def to_tokens(self) -> dict[str, str]:
        """The known values as ``short_key -> text`` pairs without spaces (for MRC labels)."""
        tokens: dict[str, str] = {}
        for short, name in _TOKEN_FIELDS.items():
            value = getattr(self, name)
            if value is None:
                continue
            tokens[short] = value.isoformat() if isinstance(value, datetime) else repr(value)
        return tokens

    @classmethod
    def from_tokens(
        cls, tokens: Mapping[str, str], *, path: Path | str | None = None
    ) -> FrameMetadata:
        """Rebuild from :meth:`to_tokens` output; unknown keys are ignored.

        Raises
        ------
        FormatError
            Naming ``path`` and the field, if a value cannot be read.
        """
        values = {_TOKEN_FIELDS[k]: v for k, v in tokens.items() if k in _TOKEN_FIELDS}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise FormatError(
                f"unreadable recorded value: {first['msg']}", path=path, field=field
            ) from None


class SeriesMetadata(BaseModel):
    """What the user states about a continuous-rotation series; every field is optional.

    The oscillation per frame is ``osc_range_deg``, or ``rotation_speed_deg_s × exposure_s``;
    when all three are given they must agree.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    voltage_kv: float | None = Field(default=None, gt=0)
    camera_length_mm: float | None = Field(default=None, gt=0)
    pixel_size_mm: float | None = Field(default=None, gt=0)
    binning: int | None = Field(default=None, ge=1)
    start_angle_deg: float | None = None
    osc_range_deg: float | None = None
    rotation_speed_deg_s: float | None = None
    exposure_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check_rotation(self) -> Self:
        if self.osc_range_deg == 0:
            raise ValueError("osc_range_deg must not be zero in a rotation series")
        _consistent(self.osc_range_deg, self.rotation_speed_deg_s, self.exposure_s)
        return self

    @property
    def oscillation_deg(self) -> float | None:
        """Rotation per frame: given, or speed × exposure, or unknown."""
        return _oscillation(self.osc_range_deg, self.rotation_speed_deg_s, self.exposure_s)

    def frame(self, index: int, *, acquired: datetime | None = None) -> FrameMetadata:
        """The metadata of frame ``index`` (0-based) of the series.

        Its tilt angle is ``start_angle_deg + index × oscillation`` when both are known.
        """
        oscillation = self.oscillation_deg
        speed = self.rotation_speed_deg_s
        if speed is None and oscillation is not None and self.exposure_s is not None:
            speed = oscillation / self.exposure_s
        tilt = None
        if self.start_angle_deg is not None and oscillation is not None:
            tilt = self.start_angle_deg + index * oscillation
        return FrameMetadata(
            tilt_angle_deg=tilt,
            rotation_speed_deg_s=speed,
            osc_range_deg=oscillation,
            exposure_s=self.exposure_s,
            voltage_kv=self.voltage_kv,
            camera_length_mm=self.camera_length_mm,
            pixel_size_mm=self.pixel_size_mm,
            binning=self.binning,
            acquired=acquired,
        )
