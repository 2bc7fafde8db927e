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


def _column(table: pd.DataFrame, key: str) -> pd.Series | None:
    if key not in table:
        return None
    series = table[key]
    return None if series.isna().all() else series


def _movie_path(raw: Any, frames_dir: Path | None, mdoc_dir: Path) -> Path:
    text = str(raw)
    pure: PurePath = PureWindowsPath(text) if "\\" in text or ":" in text else PurePath(text)
    name = pure.name
    if frames_dir is not None:
        return frames_dir / name
    for candidate in (mdoc_dir / "frames" / name, mdoc_dir / name):
        if candidate.exists():
            return candidate
    return mdoc_dir / "frames" / name


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
    table = read_mdoc(path)
    notes: list[str] = []
    if "SubFramePath" not in table or table["SubFramePath"].isna().all():
        raise MissingFieldError(
            "the mdoc names no movie for its tilts", path=path, field="SubFramePath"
        )
    if "TiltAngle" not in table:
        raise MissingFieldError("the mdoc has no tilt angles", path=path, field="TiltAngle")
    titles = table["titles"].iloc[0] if "titles" in table else []
    axis = tilt_axis_deg if tilt_axis_deg is not None else tilt_axis_from_titles(list(titles))
    if axis is None:
        notes.append(f"{path}: no tilt-axis angle in the title lines; using 0°")
        axis = 0.0
    times = [parse_mdoc_datetime(t) for t in table.get("DateTime", pd.Series([None] * len(table)))]
    order = np.arange(len(table))
    if all(t is not None for t in times):
        order = np.argsort(np.array([t.timestamp() for t in times if t is not None]), kind="stable")
    ordered = table.iloc[order].reset_index(drop=True)
    n = len(ordered)
    prior = _column(ordered, "PriorRecordDose")
    exposure = _column(ordered, "ExposureDose")
    doses: NDArray[np.floating] = np.full(n, np.nan)
    if exposure is not None:
        doses = exposure.astype(float).to_numpy()
    pre: NDArray[np.floating]
    if dose_per_tilt_e_a2 is not None:
        doses = np.full(n, float(dose_per_tilt_e_a2))
        pre = dose_per_tilt_e_a2 * np.arange(n, dtype=float)
    elif prior is not None:
        pre = prior.astype(float).to_numpy()
    elif exposure is not None and float(exposure.astype(float).sum()) > 0:
        pre = np.concatenate([[0.0], np.cumsum(doses)[:-1]])
    else:
        notes.append(f"{path}: the mdoc records no dose; pre-exposure set to 0 for every tilt")
        pre = np.zeros(n)
    frames = Path(frames_dir) if frames_dir is not None else None
    movies = [_movie_path(p, frames, path.parent) for p in ordered["SubFramePath"]]
    base = Path(relative_to).resolve() if relative_to is not None else None
    names = []
    for movie in movies:
        resolved = movie.resolve()
        if base is not None and resolved.is_relative_to(base):
            names.append(str(resolved.relative_to(base)))
        else:
            names.append(str(movie))
    counts = _column(ordered, "NumSubFrames")
    defocus = _column(ordered, "TargetDefocus")
    tilts = pd.DataFrame(
        {
            "rlnMicrographMovieName": names,
            "rlnTomoTiltMovieFrameCount": (
                counts.fillna(0).astype(int).to_numpy() if counts is not None else np.zeros(n, int)
            ),
            "rlnTomoNominalStageTiltAngle": ordered["TiltAngle"].astype(float).to_numpy(),
            "rlnTomoNominalTiltAxisAngle": np.full(n, float(axis)),
            "rlnMicrographPreExposure": pre,
            "rlnTomoNominalDefocus": (
                defocus.astype(float).to_numpy() if defocus is not None else np.full(n, np.nan)
            ),
            "rlnTomoTiltMovieIndex": np.arange(n),
        }
    )
    if defocus is None:
        tilts = tilts.drop(columns="rlnTomoNominalDefocus")
    pixel = None
    if "PixelSpacing" in ordered and not ordered["PixelSpacing"].isna().all():
        binning = float(ordered["Binning"].iloc[0]) if "Binning" in ordered else 1.0
        pixel = float(ordered["PixelSpacing"].iloc[0]) / max(binning, 1.0)
    voltage = None
    if "Voltage" in ordered and not ordered["Voltage"].isna().all():
        voltage = float(ordered["Voltage"].dropna().iloc[0])
    for note in notes:
        _log.warning(note)
    known = {name: float(dose) for name, dose in zip(names, doses, strict=True) if dose > 0}
    return MdocImport(tilt_series_name(path), tilts, pixel, voltage, notes, known)
