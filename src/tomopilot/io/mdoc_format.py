"""The SerialEM ``.mdoc`` layout: typed sections, value formatting, header and title lines.

:class:`MdocSection` holds what SerialEM writes for one Record image of a tilt series, with
our names and units; :meth:`MdocSection.items` renders it as SerialEM's ``key = value`` pairs
in SerialEM's order, with C ``%g`` formatting (6 significant digits), optional keys left out
when unknown, then PACEtomo's extended keys (``SpecimenShift``, ``EucentricOffset``,
``CtfFind``, ``Ctfplotter``) and any further ``AddToAutodoc``-style keys at full precision.
:class:`MdocHeader` renders the global keys and the title lines.

Examples
--------
>>> MdocSection(tilt_angle_deg=0.000999877, stage_position_um=(20.79361, 155.2874)).items()
[('TiltAngle', '0.000999877'), ('StagePosition', '20.7936 155.287')]
>>> format_g(-0.0), format_g(1e-5), format_g(300.0)
('-0', '1e-05', '300')
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast

from tomopilot import __version__

MdocValue = str | int | float | bool | Sequence[float]
Newline = Literal["\n", "\r\n"]

VERSION = f"tomopilot {__version__} (SerialEM-compatible mdoc)"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_TIME_STAMP_EPOCH = datetime(2020, 1, 1)

# (attribute, SerialEM key, kind) in the order SerialEM writes them (MdocDefines.h, as seen in
# SerialEM 4.1 files), then PACEtomo's extended keys. Kinds: g = C %g float, i = integer,
# s = text, dt = DateTime, fd = FrameDosesAndNumber pairs, f = full-precision float; a
# trailing * means several space-separated values.
_KEYS: tuple[tuple[str, str, str], ...] = (
    ("min_max_mean", "MinMaxMean", "g*"),
    ("tilt_angle_deg", "TiltAngle", "g"),
    ("stage_position_um", "StagePosition", "g*"),
    ("stage_z_um", "StageZ", "g"),
    ("magnification", "Magnification", "i"),
    ("intensity", "Intensity", "g"),
    ("exposure_dose_e_a2", "ExposureDose", "g"),
    ("dose_rate_e_px_s", "DoseRate", "g"),
    ("pixel_spacing_a", "PixelSpacing", "g"),
    ("spot_size", "SpotSize", "i"),
    ("probe_mode", "ProbeMode", "i"),
    ("defocus_um", "Defocus", "g"),
    ("image_shift_um", "ImageShift", "g*"),
    ("rotation_angle_deg", "RotationAngle", "g"),
    ("exposure_time_s", "ExposureTime", "g"),
    ("binning", "Binning", "g"),
    ("camera_index", "CameraIndex", "i"),
    ("divided_by_2", "DividedBy2", "i"),
    ("operating_mode", "OperatingMode", "i"),
    ("using_cds", "UsingCDS", "i"),
    ("mag_index", "MagIndex", "i"),
    ("low_dose_con_set", "LowDoseConSet", "i"),
    ("counts_per_electron", "CountsPerElectron", "g"),
    ("target_defocus_um", "TargetDefocus", "g"),
    ("prior_record_dose_e_a2", "PriorRecordDose", "g"),
    ("sub_frame_path", "SubFramePath", "s"),
    ("num_sub_frames", "NumSubFrames", "i"),
    ("frame_doses_and_number", "FrameDosesAndNumber", "fd"),
    ("date_time", "DateTime", "dt"),
    ("navigator_label", "NavigatorLabel", "s"),
    ("filter_slit_and_loss_ev", "FilterSlitAndLoss", "g*"),
    ("uncropped_size", "UncroppedSize", "i*"),
    ("rotation_and_flip", "RotationAndFlip", "i"),
    ("time_stamp_s", "TimeStamp", "i"),
    ("specimen_shift_um", "SpecimenShift", "f*"),
    ("eucentric_offset_um", "EucentricOffset", "f"),
    ("ctf_find_um", "CtfFind", "f"),
    ("ctfplotter_um", "Ctfplotter", "f"),
)
STANDARD_KEYS = frozenset(key for _, key, _ in _KEYS)
_BY_KEY = {key: (attribute, kind) for attribute, key, kind in _KEYS}


def format_g(value: float) -> str:
    """Format like C's ``%g``: 6 significant digits, exponent only when needed."""
    value = float(value)
    return "NaN" if math.isnan(value) else f"{value:g}"


def format_full(value: float | int | bool) -> str:
    """Format at full precision, as Python prints a float (PACEtomo's extended keys)."""
    if isinstance(value, bool | int):
        return str(int(value))
    return repr(float(value))


def serialem_datetime(when: datetime) -> str:
    """SerialEM's ``DateTime`` since 4.1: ``11-Aug-2023  17:44:56`` (English month)."""
    month = _MONTHS[when.month - 1]
    return f"{when.day:02d}-{month}-{when.year:04d}  {when:%H:%M:%S}"


def parse_serialem_datetime(text: str) -> datetime:
    """Parse ``11-Aug-2023  17:44:56`` or ``30-Nov-15  15:21:38`` (any spacing)."""
    day_month_year, clock = text.split()
    day, month, year = day_month_year.split("-")
    full_year = int(year) + (2000 if len(year) == 2 else 0)
    hour, minute, second = (int(part) for part in clock.split(":"))
    return datetime(full_year, _MONTHS.index(month) + 1, int(day), hour, minute, second)


def serialem_label_datetime(when: datetime) -> str:
    """The date in SerialEM's first MRC label and title: ``11-Aug-23  17:44:49``."""
    month = _MONTHS[when.month - 1]
    return f"{when.day:02d}-{month}-{when.year % 100:02d}  {when:%H:%M:%S}"


def serialem_time_stamp_s(when: datetime) -> int:
    """SerialEM's ``TimeStamp``: seconds elapsed since 2020-01-01 00:00 local time.

    A naive ``when`` is taken in this computer's local time zone; an aware one in its own
    zone. The count is of real seconds, so across a daylight-saving change it differs by an
    hour from the wall-clock difference, as SerialEM's does.
    """
    if when.tzinfo is None:
        return round(time.mktime(when.timetuple()) - time.mktime(_TIME_STAMP_EPOCH.timetuple()))
    epoch = _TIME_STAMP_EPOCH.replace(tzinfo=when.tzinfo)
    return round((when.astimezone(UTC) - epoch.astimezone(UTC)).total_seconds())


def serialem_title(site: str, when: datetime) -> str:
    """The first MRC label / mdoc title: ``SerialEM: <site padded>  dd-Mon-yy  HH:MM:SS``.

    The site is padded (or cut) to 45 characters so the date starts in column 57, as in the
    files SerialEM writes; the label stays within the 80 characters of an MRC label.
    """
    return f"SerialEM: {site[:45]:<45} {serialem_label_datetime(when)}"


def tilt_axis_title(
    tilt_axis_deg: float,
    *,
    binning: float,
    spot_size: int,
    camera_index: int,
    dose_symmetric_step_deg: float | None = None,
) -> str:
    """The second title: ``Tilt axis angle = 94.0, binning = 1  spot = 6  camera = 0``.

    ``tilt_axis_deg`` is IMOD's convention (from the image Y axis). SerialEM 4.x adds
    ``dosym = <step>`` for dose-symmetric series.
    """
    title = (
        f"Tilt axis angle = {tilt_axis_deg:.1f}, binning = {format_g(binning)}  "
        f"spot = {spot_size}  camera = {camera_index}"
    )
    if dose_symmetric_step_deg is not None:
        title += f"  dosym = {dose_symmetric_step_deg:.1f}"
    return title


def _check_text(name: str, text: str) -> None:
    if "\n" in text or "\r" in text:
        raise ValueError(f"mdoc {name} must be a single line: {text!r}")


@dataclass(frozen=True, kw_only=True)
class MdocSection:
    """One ``[ZValue = N]`` section: what SerialEM records for a tilt-series Record image.

    Every field but the tilt angle is optional and left out of the file when ``None``. The
    ZValue itself is the section's place in the stack, given by the writer.

    Attributes
    ----------
    tilt_angle_deg
        Stage tilt (``TiltAngle``).
    stage_position_um, stage_z_um
        Stage x, y and z (``StagePosition``, ``StageZ``).
    magnification, mag_index, spot_size, probe_mode, intensity
        Optics: nominal magnification, its index, spot size, probe mode (1 micro, 0 nano),
        illumination (C2) value.
    exposure_dose_e_a2, prior_record_dose_e_a2
        Dose of this exposure and dose received before it (``PriorRecordDose``).
    dose_rate_e_px_s
        Electrons per unbinned camera pixel per second.
    pixel_spacing_a, binning
        Pixel size of the saved image and camera binning (0.5 = super-resolution).
    defocus_um, target_defocus_um
        Focus readout and the defocus aimed at (negative = underfocus).
    image_shift_um
        Image-shift readout (SerialEM's IS units, about µm on Thermo Fisher scopes).
    rotation_angle_deg
        Angle from the image X axis to the tilt axis.
    exposure_time_s, camera_index, divided_by_2, operating_mode, using_cds
        Camera settings.
    low_dose_con_set
        Low-dose area (4 = Record).
    counts_per_electron
        Camera counts per electron.
    sub_frame_path, num_sub_frames, frame_doses_and_number
        Movie file (relative to the mdoc folder), its frame count and (dose, count) pairs.
    date_time
        When the image was taken (local time).
    navigator_label, filter_slit_and_loss_ev, uncropped_size, rotation_and_flip, time_stamp_s
        Further SerialEM keys.
    min_max_mean
        Statistics of the stored image; filled by the tilt-series writer when ``None``.
    specimen_shift_um, eucentric_offset_um, ctf_find_um, ctfplotter_um
        PACEtomo's extended keys (full precision).
    extra
        Further ``AddToAutodoc`` keys, written last in the given order at full precision.
    """

    tilt_angle_deg: float
    min_max_mean: tuple[float, float, float] | None = None
    stage_position_um: tuple[float, float] | None = None
    stage_z_um: float | None = None
    magnification: int | None = None
    intensity: float | None = None
    exposure_dose_e_a2: float | None = None
    dose_rate_e_px_s: float | None = None
    pixel_spacing_a: float | None = None
    spot_size: int | None = None
    probe_mode: int | None = None
    defocus_um: float | None = None
    image_shift_um: tuple[float, float] | None = None
    rotation_angle_deg: float | None = None
    exposure_time_s: float | None = None
    binning: float | None = None
    camera_index: int | None = None
    divided_by_2: bool | None = None
    operating_mode: int | None = None
    using_cds: bool | None = None
    mag_index: int | None = None
    low_dose_con_set: int | None = None
    counts_per_electron: float | None = None
    target_defocus_um: float | None = None
    prior_record_dose_e_a2: float | None = None
    sub_frame_path: str | None = None
    num_sub_frames: int | None = None
    frame_doses_and_number: tuple[tuple[float, int], ...] | None = None
    date_time: datetime | None = None
    navigator_label: str | None = None
    filter_slit_and_loss_ev: tuple[float, float] | None = None
    uncropped_size: tuple[int, int] | None = None
    rotation_and_flip: int | None = None
    time_stamp_s: int | None = None
    specimen_shift_um: tuple[float, float] | None = None
    eucentric_offset_um: float | None = None
    ctf_find_um: float | None = None
    ctfplotter_um: float | None = None
    extra: Mapping[str, MdocValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("sub_frame_path", "navigator_label"):
            text = getattr(self, name)
            if text is not None:
                _check_text(name, text)
        for key, value in self.extra.items():
            if not _KEY.match(key) or key in STANDARD_KEYS or key == "ZValue":
                raise ValueError(f"{key!r} cannot be an extra mdoc key")
            if isinstance(value, str):
                _check_text(key, value)

    @classmethod
    def from_items(cls, items: Mapping[str, str]) -> MdocSection:
        """Parse a section's ``key: value text`` pairs (as :func:`parse_mdoc` returns them).

        Keys this class does not model are kept, as text, in :attr:`extra`.

        Raises
        ------
        ValueError
            If ``TiltAngle`` is missing or a value does not parse.
        """
        values: dict[str, Any] = {}
        extra: dict[str, MdocValue] = {}
        for key, text in items.items():
            if key not in _BY_KEY:
                extra[key] = text
                continue
            attribute, kind = _BY_KEY[key]
            try:
                values[attribute] = _parse(text, kind)
            except (ValueError, IndexError) as exc:
                raise ValueError(f"mdoc key {key}: cannot parse {text!r}") from exc
        if "tilt_angle_deg" not in values:
            raise ValueError("an mdoc section needs a TiltAngle")
        for attribute in ("divided_by_2", "using_cds"):
            if attribute in values:
                values[attribute] = bool(values[attribute])
        return cls(**values, extra=extra)

    def items(self) -> list[tuple[str, str]]:
        """The section's ``(key, value text)`` pairs in SerialEM's order."""
        pairs: list[tuple[str, str]] = []
        for attribute, key, kind in _KEYS:
            value = getattr(self, attribute)
            if value is not None:
                pairs.append((key, _format(value, kind)))
        for key, value in self.extra.items():
            pairs.append((key, _format_extra(value)))
        return pairs

    def to_text(self, z_value: int, newline: Newline = "\n") -> str:
        """The section as written: header line, ``key = value`` lines, one blank line."""
        lines = [f"[ZValue = {z_value}]"] + [f"{k} = {v}" for k, v in self.items()]
        return newline.join(lines) + newline + newline


def _format(value: object, kind: str) -> str:
    if isinstance(value, datetime):
        return serialem_datetime(value)
    if isinstance(value, str):
        return value
    if kind == "fd":
        pairs = cast(Sequence[tuple[float, int]], value)
        return "  ".join(f"{format_g(dose)} {int(count)}" for dose, count in pairs)
    if isinstance(value, tuple):
        return " ".join(_format(item, kind.rstrip("*")) for item in value)
    number = cast(float, value)
    if kind.startswith("i"):
        return str(int(number))
    return format_full(number) if kind.startswith("f") else format_g(number)


def _parse(text: str, kind: str) -> object:
    if kind == "s":
        return text
    if kind == "dt":
        return parse_serialem_datetime(text)
    parts = text.split()
    if kind == "fd":
        return tuple((float(parts[i]), int(parts[i + 1])) for i in range(0, len(parts), 2))
    if kind.endswith("*"):
        return tuple(_parse(part, kind[:-1]) for part in parts)
    return int(text) if kind == "i" else float(text)


def _format_extra(value: MdocValue) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return format_full(value)
    return " ".join(format_full(v) for v in value)


@dataclass(frozen=True, kw_only=True)
class MdocHeader:
    """Global keys and title lines of a tilt-series mdoc.

    Attributes
    ----------
    pixel_spacing_a
        Pixel size of the saved images (Å).
    image_file
        Base name of the stack (``L1_ts_001.mrc``).
    image_size_xy
        (width, height) of the stack's sections in pixels.
    data_mode
        MRC mode of the stack (1 int16, 2 float32, 6 uint16).
    voltage_kv
        Accelerating voltage.
    version
        The writing program; honestly ours.
    titles
        Title lines without the ``[T = ...]`` brackets: :func:`serialem_title` and
        :func:`tilt_axis_title`, mirroring the stack's MRC labels.
    """

    pixel_spacing_a: float
    image_file: str
    image_size_xy: tuple[int, int]
    data_mode: int
    voltage_kv: float | None = None
    version: str = VERSION
    titles: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name, text in (("version", self.version), ("image_file", self.image_file)):
            _check_text(name, text)
            if "=" in text:
                raise ValueError(f"mdoc {name} cannot contain '=': {text!r}")
        for title in self.titles:
            _check_text("title", title)

    def items(self) -> list[tuple[str, str]]:
        """The global ``(key, value text)`` pairs in SerialEM's order."""
        pairs = [("PixelSpacing", format_g(self.pixel_spacing_a))]
        if self.voltage_kv is not None:
            pairs.append(("Voltage", format_g(self.voltage_kv)))
        pairs += [
            ("Version", self.version),
            ("ImageFile", self.image_file),
            ("ImageSize", f"{self.image_size_xy[0]} {self.image_size_xy[1]}"),
            ("DataMode", str(self.data_mode)),
        ]
        return pairs

    def to_text(self, newline: Newline = "\n") -> str:
        """Global keys, then each title after a blank line, ending with a blank line."""
        blocks = [newline.join(f"{k} = {v}" for k, v in self.items())]
        blocks += [f"[T = {title}]" for title in self.titles]
        return (newline + newline).join(blocks) + newline + newline
