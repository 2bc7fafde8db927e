"""The SMV header of one diffraction frame, with the keys DIALS/dxtbx read.

dxtbx's ADSC reader requires BEAM_CENTER_X, BEAM_CENTER_Y, DISTANCE, WAVELENGTH, PIXEL_SIZE,
OSC_START, OSC_RANGE, SIZE1, SIZE2 and BYTE_ORDER, reads TIME, DATE, GAIN and IMAGE_PEDESTAL,
and picks its Ceta-D electron-diffraction model when BEAMLINE contains ``CETAD``.

Two conventions matter:

- **Beam centre.** dxtbx passes ``(BEAM_CENTER_Y, BEAM_CENTER_X)`` as the (fast, slow) beam
  position in mm (the Mosflm convention). So BEAM_CENTER_X holds the *row* (slow-axis)
  coordinate and BEAM_CENTER_Y the *column* (fast-axis) coordinate, both in mm from the image
  corner. :func:`diffraction_smv_header` takes the beam as ``(x = column, y = row)`` pixels, the
  way an image viewer shows it, and swaps it into place.
- **Wavelength.** It is the relativistic electron wavelength of the voltage, never a default.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tomopilot.core.units import electron_wavelength_a
from tomopilot.io.errors import MissingFieldError
from tomopilot.processing.microed.levels import LEGINON_OFFSET_CAP, SeriesLevels
from tomopilot.processing.microed.metadata import FrameMetadata

__all__ = [
    "DEFAULT_BEAMLINE",
    "SMV_DATE_FORMAT",
    "SmvOptions",
    "check_smv_metadata",
    "diffraction_smv_header",
]

DEFAULT_BEAMLINE = "CETAD_TUI"
"""What Leginon writes for TIA/Ceta data; dxtbx then models a Ceta-D electron detector."""

SMV_DATE_FORMAT = "%a %b %d %H:%M:%S %Y"


@dataclass(frozen=True, kw_only=True)
class SmvOptions:
    """Detector settings of an SMV conversion that the frames do not carry.

    Attributes
    ----------
    beam_x_px, beam_y_px
        The direct beam in pixels from the image corner: ``x`` along the columns (fast axis),
        ``y`` along the rows (slow axis). Default: the image centre.
    gain
        Counts per electron, written as GAIN when given (dxtbx's Ceta-D default is 26).
    beamline
        The BEAMLINE key.
    offset_cap
        The largest LEGINON_OFFSET.
    """

    beam_x_px: float | None = None
    beam_y_px: float | None = None
    gain: float | None = None
    beamline: str = DEFAULT_BEAMLINE
    offset_cap: int = LEGINON_OFFSET_CAP


def _required(value: float | None, field: str, path: Path | None) -> float:
    if value is None:
        raise MissingFieldError(
            "needed for the SMV header, but neither recorded in the frame's metadata nor given",
            path=path,
            field=field,
        )
    return value


def check_smv_metadata(frame: FrameMetadata, *, path: Path | None = None) -> None:
    """Raise :class:`MissingFieldError` unless ``frame`` knows what the SMV header needs."""
    _required(frame.voltage_kv, "voltage_kv", path)
    _required(frame.camera_length_mm, "camera_length_mm", path)
    _required(frame.pixel_size_mm, "pixel_size_mm", path)
    _required(frame.tilt_angle_deg, "tilt_angle_deg", path)
    _required(frame.oscillation_deg, "osc_range_deg", path)


def diffraction_smv_header(
    frame: FrameMetadata,
    *,
    shape: tuple[int, int],
    levels: SeriesLevels,
    options: SmvOptions,
    path: Path | None = None,
    fallback_date: datetime | None = None,
) -> dict[str, str | int | float]:
    """The keys after SMV's layout keys, in the order they are written.

    Parameters
    ----------
    frame
        The frame's metadata; voltage, camera length, pixel size, tilt angle and oscillation
        must be known.
    shape
        The frame's ``(rows, columns)``.
    levels
        The series' offset and pedestal.
    options
        Beam centre, gain, BEAMLINE.
    path
        The frame's source, named in errors.
    fallback_date
        DATE when the frame's acquisition time is unknown.

    Raises
    ------
    MissingFieldError
        If a required value is unknown, naming ``path`` and the field.
    """
    voltage_kv = _required(frame.voltage_kv, "voltage_kv", path)
    distance_mm = _required(frame.camera_length_mm, "camera_length_mm", path)
    pixel_mm = _required(frame.pixel_size_mm, "pixel_size_mm", path)
    osc_start = _required(frame.tilt_angle_deg, "tilt_angle_deg", path)
    osc_range = _required(frame.oscillation_deg, "osc_range_deg", path)
    rows, columns = shape
    beam_x = options.beam_x_px if options.beam_x_px is not None else columns / 2
    beam_y = options.beam_y_px if options.beam_y_px is not None else rows / 2
    exposure_s = frame.exposure_or_derived_s
    binning = frame.binning or 1
    date = frame.acquired or fallback_date
    header: dict[str, str | int | float] = {
        "PIXEL_SIZE": pixel_mm,
        "BIN": f"{binning}x{binning}",
        "BIN_TYPE": "HW",
        "BEAMLINE": options.beamline,
    }
    if date is not None:
        header["DATE"] = date.strftime(SMV_DATE_FORMAT)
    header |= {
        # dxtbx needs TIME; 0 stands for an unknown exposure.
        "TIME": exposure_s if exposure_s is not None else 0.0,
        "DISTANCE": distance_mm,
        "TWOTHETA": 0.0,
        "PHI": osc_start,
        "OSC_START": osc_start,
        "OSC_RANGE": osc_range,
        "WAVELENGTH": electron_wavelength_a(voltage_kv),
        # Mosflm convention read by dxtbx: X is the slow (row) axis, Y the fast (column) axis.
        "BEAM_CENTER_X": beam_y * pixel_mm,
        "BEAM_CENTER_Y": beam_x * pixel_mm,
    }
    if exposure_s is not None:
        header["ACC_TIME"] = round(exposure_s * 1000.0, 6)
    if options.gain is not None:
        header["GAIN"] = options.gain
    header["IMAGE_PEDESTAL"] = float(levels.pedestal)
    header["LEGINON_OFFSET"] = float(levels.offset)
    return header
