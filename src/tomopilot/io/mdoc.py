"""SerialEM / Tomography 5 mdoc files (read through :mod:`mdocfile`) and tilt-series import.

:func:`read_mdoc` returns mdocfile's table (one row per ``[ZValue]`` section) with mdocfile's
log chatter silenced. :func:`tilt_series_from_mdoc` turns one tilt-series mdoc into the table
RELION 5's import writes (``tilt_series/<TS>.star``), in acquisition order.

Pre-exposure (the dose each tilt received before it) is taken from, in order of preference:
an explicit dose per tilt (``d · 0, d · 1, ...`` in acquisition order); the mdoc's
``PriorRecordDose``; the running sum of ``ExposureDose`` over the *previous* tilts. RELION 5
includes the current tilt in that sum (3dem/relion#1188); we do not.

Examples
--------
>>> from pathlib import Path
>>> tilt_series_name(Path("mdoc/TS_01.mrc.mdoc"))
'TS_01'
"""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePath, PureWindowsPath
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from tomopilot.io.errors import FormatError, MissingFieldError
from tomopilot.io.mdoc_sections import (
    MdocDocument,
    MdocSectionBlock,
    file_name,
    integer,
    number,
    read_mdoc_sections,
)

_log = logging.getLogger(__name__)

_AXIS_PATTERNS = (
    re.compile(r"tilt\s*axis\s*angle\s*=\s*([-+]?\d+(?:\.\d*)?)", re.I),
    re.compile(r"TiltAxisAngle\s*=\s*([-+]?\d+(?:\.\d*)?)"),
)
_DATETIME_FORMATS = ("%d-%b-%y %H:%M:%S", "%d-%b-%Y %H:%M:%S")


@contextmanager
def _quiet_mdocfile() -> Any:
    """Route mdocfile's warnings (key renames, unknown keys) to our debug log."""
    logger = logging.getLogger("mdocfile")
    previous_level, previous_propagate = logger.level, logger.propagate
    handler = logging.NullHandler()
    logger.addHandler(handler)
    logger.setLevel(logging.ERROR)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
        logger.propagate = previous_propagate


def read_mdoc(path: Path | str) -> pd.DataFrame:
    """Read an mdoc file into mdocfile's table, one row per section.

    Raises
    ------
    FormatError
        If the file is missing or mdocfile cannot parse it.
    """
    import mdocfile

    path = Path(path)
    if not path.is_file():
        raise FormatError("mdoc file not found", path=path)
    try:
        with _quiet_mdocfile():
            table = mdocfile.read(path)
    except Exception as exc:
        raise FormatError(f"cannot parse mdoc file: {exc}", path=path) from exc
    if not isinstance(table, pd.DataFrame) or table.empty:
        raise FormatError("mdoc file has no [ZValue] sections", path=path)
    return table


def tilt_series_name(path: Path) -> str:
    """The tilt-series name RELION derives from an mdoc file name (``TS_01.mrc.mdoc`` → TS_01)."""
    name = path.name
    for suffix in (".mdoc", ".mrc", ".st", ".mrcs"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def tilt_axis_from_titles(titles: list[str]) -> float | None:
    """The tilt-axis angle written in the mdoc title lines, if any."""
    for title in titles:
        for pattern in _AXIS_PATTERNS:
            match = pattern.search(title)
            if match:
                return float(match.group(1))
    return None


def parse_mdoc_datetime(text: str) -> datetime | None:
    """Parse SerialEM's ``30-Nov-15  15:21:38`` or ``24-Mar-2023 12:13:13``."""
    cleaned = " ".join(str(text).split())
    for fmt in _DATETIME_FORMATS:
        try:
            return datetime.strptime(cleaned, fmt)
        except ValueError:
            continue
    return None


@dataclass
class MdocImport:
    """One tilt series imported from an mdoc file.

    Attributes
    ----------
    name
        Tilt-series name (``rlnTomoName``).
    tilts
        RELION 5 import table (``rlnMicrographMovieName`` ... ``rlnTomoNominalDefocus``), plus
        ``rlnTomoTiltMovieIndex`` (chronological), in acquisition order.
    pixel_size_a
        ``PixelSpacing / Binning`` of the first section: the unbinned camera pixel.
    voltage_kv
        ``Voltage`` from the header, if recorded.
    notes
        Warnings for the user (no dose found, missing tilt axis, ...).
    doses_e_a2
        Dose of each tilt (by movie name) when known.
    """

    name: str
    tilts: pd.DataFrame
    pixel_size_a: float | None
    voltage_kv: float | None
    notes: list[str] = field(default_factory=list)
    doses_e_a2: dict[str, float] = field(default_factory=dict)


def _movie_path(raw: str, frames_dir: Path | None, mdoc_dir: Path) -> Path:
    pure: PurePath = PureWindowsPath(raw) if "\\" in raw or ":" in raw else PurePath(raw)
    name = pure.name
    if frames_dir is not None:
        return frames_dir / name
    for candidate in (mdoc_dir / "frames" / name, mdoc_dir / name):
        try:
            if candidate.exists():
                return candidate
        except (OSError, ValueError):
            break
    return mdoc_dir / "frames" / name


def _refuse_kind(doc: MdocDocument, path: Path) -> None:
    """Refuse an mdoc that is not a tilt series, saying what it is."""
    kind = doc.kind
    if kind == "tilt series":
        return
    if kind == "frame stack":
        frame = doc.frame_sets[0]
        movie = frame.get("SubFramePath")
        tilt = frame.get("TiltAngle")
        what = f" of the movie {movie.text!r}" if movie is not None else ""
        at = f" at tilt {tilt.text}°" if tilt is not None else ""
        raise FormatError(
            f"this is a SerialEM frame-stack mdoc: its [FrameSet] section describes one movie"
            f"{what}{at}, not a tilt series. Import the tilt series' own mdoc (written beside "
            "its stack as <name>.mrc.mdoc) instead",
            path=path,
            line=frame.line,
        )
    if kind == "frame tilt series":
        raise FormatError(
            f"this is a SerialEM frame tilt series: one [FrameSet] movie recorded in a single "
            f"exposure while the stage tilted through {len(doc.sections)} [ZValue] steps. RELION "
            "imports one movie per tilt, so this cannot be imported as a tilt series",
            path=path,
            line=doc.frame_sets[0].line,
        )
    if kind == "montage":
        raise FormatError(
            "this is a SerialEM montage (map) mdoc, not a tilt series", path=path, line=1
        )
    raise FormatError("the mdoc has no [ZValue] sections", path=path)


def _all_have(doc: MdocDocument, sections: list[MdocSectionBlock], key: str) -> bool:
    return all(key in s and s[key].text for s in sections)


def tilt_series_from_mdoc(
    path: Path | str,
    *,
    frames_dir: Path | str | None = None,
    dose_per_tilt_e_a2: float | None = None,
    tilt_axis_deg: float | None = None,
    relative_to: Path | str | None = None,
) -> MdocImport:
    """Build the RELION 5 per-tilt-series import table from one mdoc file.

    Parameters
    ----------
    path
        The tilt-series mdoc.
    frames_dir
        Folder of the movies; by default ``<mdoc folder>/frames`` or the mdoc folder.
    dose_per_tilt_e_a2
        Dose of each tilt; overrides the doses the mdoc records.
    tilt_axis_deg
        Nominal tilt-axis angle; overrides the one in the mdoc title lines.
    relative_to
        Write movie paths relative to this folder (the project directory) when below it.
    """
    path = Path(path)
    doc = read_mdoc_sections(path)
    _refuse_kind(doc, path)
    sections = doc.sections
    notes: list[str] = []
    for section in sections:
        if "SubFramePath" not in section or not section["SubFramePath"].text:
            raise MissingFieldError(
                f"[ZValue = {section.index}] names no movie",
                path=path,
                line=section.line,
                field="SubFramePath",
            )
        if "TiltAngle" not in section:
            raise MissingFieldError(
                f"[ZValue = {section.index}] has no tilt angle",
                path=path,
                line=section.line,
                field="TiltAngle",
            )
    axis = tilt_axis_deg if tilt_axis_deg is not None else tilt_axis_from_titles(doc.titles)
    if axis is None:
        notes.append(f"{path}: no tilt-axis angle in the title lines; using 0°")
        axis = 0.0
    times = [parse_mdoc_datetime(s["DateTime"].text) if "DateTime" in s else None for s in sections]
    stamps = [t.timestamp() for t in times if t is not None]
    if len(stamps) == len(sections):
        sections = [sections[i] for i in np.argsort(np.array(stamps), kind="stable")]
    n = len(sections)
    tilt_deg = np.array([number(s, "TiltAngle", doc) for s in sections])
    doses: NDArray[np.floating] = np.full(n, np.nan)
    has_exposure = _all_have(doc, sections, "ExposureDose")
    if has_exposure:
        doses = np.array([number(s, "ExposureDose", doc) for s in sections])
    pre: NDArray[np.floating]
    if dose_per_tilt_e_a2 is not None:
        doses = np.full(n, float(dose_per_tilt_e_a2))
        pre = dose_per_tilt_e_a2 * np.arange(n, dtype=float)
    elif any("PriorRecordDose" in s for s in sections):
        pre = np.array([number(s, "PriorRecordDose", doc) for s in sections])
    elif has_exposure and float(doses.sum()) > 0:
        pre = np.concatenate([[0.0], np.cumsum(doses)[:-1]])
    else:
        notes.append(f"{path}: the mdoc records no dose; pre-exposure set to 0 for every tilt")
        pre = np.zeros(n)
    frames = Path(frames_dir) if frames_dir is not None else None
    movies = [_movie_path(file_name(s, "SubFramePath", doc), frames, path.parent) for s in sections]
    base = Path(relative_to).resolve() if relative_to is not None else None
    names = []
    for movie in movies:
        resolved = movie.resolve()
        if base is not None and resolved.is_relative_to(base):
            names.append(str(resolved.relative_to(base)))
        else:
            names.append(str(movie))
    counts = [integer(s, "NumSubFrames", doc) if "NumSubFrames" in s else 0 for s in sections]
    has_defocus = any("TargetDefocus" in s for s in sections)
    tilts = pd.DataFrame(
        {
            "rlnMicrographMovieName": names,
            "rlnTomoTiltMovieFrameCount": np.array(counts, dtype=int),
            "rlnTomoNominalStageTiltAngle": tilt_deg,
            "rlnTomoNominalTiltAxisAngle": np.full(n, float(axis)),
            "rlnMicrographPreExposure": pre,
            "rlnTomoNominalDefocus": (
                np.array([number(s, "TargetDefocus", doc) for s in sections])
                if has_defocus
                else np.full(n, np.nan)
            ),
            "rlnTomoTiltMovieIndex": np.arange(n),
        }
    )
    if not has_defocus:
        tilts = tilts.drop(columns="rlnTomoNominalDefocus")
    pixel = None
    spacing_block = next((s for s in sections if "PixelSpacing" in s), None)
    if spacing_block is not None:
        binning = number(spacing_block, "Binning", doc) if "Binning" in spacing_block else 1.0
        spacing = number(spacing_block, "PixelSpacing", doc)
        if spacing <= 0 or binning <= 0:
            raise FormatError(
                f"PixelSpacing {spacing} and Binning {binning} must be positive",
                path=path,
                line=spacing_block["PixelSpacing"].line,
                field="PixelSpacing",
            )
        pixel = spacing / max(binning, 1.0)
    elif "PixelSpacing" in doc.globals:
        pixel = number(doc.globals, "PixelSpacing", doc)
    voltage = None
    voltage_value = doc.first("Voltage")
    if voltage_value is not None:
        holder = (
            doc.globals
            if doc.globals.get("Voltage") is voltage_value
            else next(s for s in doc.blocks if s.get("Voltage") is voltage_value)
        )
        voltage = number(holder, "Voltage", doc)
    for note in notes:
        _log.warning(note)
    known = {name: float(dose) for name, dose in zip(names, doses, strict=True) if dose > 0}
    return MdocImport(tilt_series_name(path), tilts, pixel, voltage, notes, known)
