"""RELION 5 tomography STAR files, read and written through :mod:`starfile`.

A RELION 5 *tilt-series set* is a global table (block ``data_global``: one row per tilt series,
with ``rlnTomoName``, ``rlnTomoTiltSeriesStarFile`` and the optics) and one per-tilt-series file
(block ``data_<rlnTomoName>``: one row per tilt image). Paths inside them are relative to the
RELION project directory. RELION 4's per-tilt-series files (block ``data_tilt_images`` with
``rlnTomoTiltMovieFile``) are read too and presented with RELION 5's labels.

Files are written with ``# version 50001`` before each block (as RELION 5 writes them) and no
time stamp, so the same content always gives the same bytes.

Examples
--------
>>> import pandas as pd
>>> text = star_text({"TS_01": pd.DataFrame({"rlnTomoNominalStageTiltAngle": [0.0, 3.0]})})
>>> text.splitlines()[0]
'# version 50001'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tomopilot.core.files import atomic_write_text
from tomopilot.io.errors import FormatError, MissingFieldError

RELION_VERSION_LINE = "# version 50001"

GLOBAL_REQUIRED = ("rlnTomoName", "rlnTomoTiltSeriesStarFile")
OPTICS_LABELS = (
    "rlnVoltage",
    "rlnSphericalAberration",
    "rlnAmplitudeContrast",
    "rlnMicrographOriginalPixelSize",
)
TILT_IMPORT_LABELS = (
    "rlnMicrographMovieName",
    "rlnTomoTiltMovieFrameCount",
    "rlnTomoNominalStageTiltAngle",
    "rlnTomoNominalTiltAxisAngle",
    "rlnMicrographPreExposure",
    "rlnTomoNominalDefocus",
)
MOTIONCORR_LABELS = (
    "rlnCtfPowerSpectrum",
    "rlnMicrographNameEven",
    "rlnMicrographNameOdd",
    "rlnMicrographName",
    "rlnMicrographMetadata",
    "rlnAccumMotionTotal",
    "rlnAccumMotionEarly",
    "rlnAccumMotionLate",
)
CTF_LABELS = (
    "rlnCtfImage",
    "rlnDefocusU",
    "rlnDefocusV",
    "rlnCtfAstigmatism",
    "rlnDefocusAngle",
    "rlnCtfFigureOfMerit",
    "rlnCtfMaxResolution",
)
_RELION4_RENAMES = {"rlnTomoTiltMovieFile": "rlnMicrographMovieName"}


@dataclass
class TiltSeries:
    """One tilt series: its row of the global table and its per-tilt table.

    Attributes
    ----------
    name
        ``rlnTomoName``.
    globals
        The global-table row (optics, hand, ``rlnTomoTiltSeriesStarFile``, ...).
    tilts
        The per-tilt table, one row per tilt image.
    doses_e_a2
        Dose of each tilt by movie name, when the source recorded it (mdoc ``ExposureDose``);
        RELION's STAR files carry only pre-exposures.
    """

    name: str
    globals: dict[str, Any]
    tilts: pd.DataFrame
    doses_e_a2: dict[str, float] = field(default_factory=dict)

    @property
    def pixel_size_a(self) -> float:
        """Movie pixel size (``rlnMicrographOriginalPixelSize``)."""
        return float(self.globals["rlnMicrographOriginalPixelSize"])


@dataclass
class TiltSeriesSet:
    """All tilt series of a RELION 5 tilt-series STAR file."""

    series: list[TiltSeries] = field(default_factory=list)

    def names(self) -> list[str]:
        """The ``rlnTomoName`` of every tilt series, in file order."""
        return [ts.name for ts in self.series]

    def select(self, names: list[str] | None) -> TiltSeriesSet:
        """The tilt series named in ``names`` (all when ``names`` is None or empty)."""
        if not names:
            return self
        unknown = sorted(set(names) - set(self.names()))
        if unknown:
            raise KeyError(f"no tilt series named {', '.join(unknown)}")
        return TiltSeriesSet([ts for ts in self.series if ts.name in names])


_RESERVED = ("_", "data_", "loop_", "save_", "global_", "stop_", "#", "$", "'", '"')


def _check_values(block_name: str, block: pd.DataFrame | dict[str, Any]) -> None:
    """Refuse strings a STAR reader would take for syntax (labels, block names, comments)."""
    items = (
        ((label, value) for label in block.columns for value in block[label])
        if isinstance(block, pd.DataFrame)
        else block.items()
    )
    for label, value in items:
        if isinstance(value, str) and (
            value == ""
            or value.lower().startswith(_RESERVED)
            or '"' in value
            or (label in _FILE_NAME_LABELS and _reads_as_number(value))
        ):
            raise FormatError(
                f"the value {value!r} cannot be written to a STAR file unambiguously",
                field=f"{block_name}.{label}",
            )


def _reads_as_number(value: str) -> bool:
    """True for a name such as ``nan`` or ``inf`` that readers would parse as a number."""
    try:
        float(value)
    except ValueError:
        return False
    return True


def star_text(blocks: dict[str, pd.DataFrame | dict[str, Any]]) -> str:
    """Render STAR blocks (name → table or key-value dict) as RELION 5 text."""
    import starfile

    cleaned: dict[str, Any] = {}
    for name, block in blocks.items():
        cleaned[name] = block.reset_index(drop=True) if isinstance(block, pd.DataFrame) else block
        _check_values(name, block)
    raw = starfile.to_string(cleaned, float_format="%.6f", sep="\t")
    lines: list[str] = []
    for line in raw.splitlines():
        if line.startswith("# Created by the starfile"):
            continue
        if line.startswith("data_"):
            lines.append(RELION_VERSION_LINE)
            lines.append("")
        lines.append(line)
    while lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines).rstrip("\n") + "\n\n"


def write_star(path: Path | str, blocks: dict[str, pd.DataFrame | dict[str, Any]]) -> Path:
    """Write STAR blocks atomically (temporary file + rename)."""
    return atomic_write_text(path, star_text(blocks))


def read_star(path: Path | str) -> dict[str, Any]:
    """Read every block of a STAR file (name → DataFrame or dict), naming the file on error."""
    import starfile

    path = Path(path)
    if not path.is_file():
        raise FormatError("STAR file not found", path=path)
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as exc:
        raise FormatError(f"cannot parse STAR file: {exc}", path=path) from exc
    if not blocks:
        raise FormatError("no data block in STAR file", path=path)
    return dict(blocks)


_FILE_NAME_LABELS = ("rlnMicrographMovieName", "rlnMicrographName")


def read_tilt_series_star(path: Path | str, name: str | None = None) -> pd.DataFrame:
    """Read a per-tilt-series STAR file (RELION 5 ``data_<name>`` or RELION 4 ``tilt_images``).

    Returns the table with RELION 5 labels; ``rlnMicrographMovieName`` or ``rlnMicrographName``
    must be present.
    """
    path = Path(path)
    blocks = read_star(path)
    tables = {k: v for k, v in blocks.items() if isinstance(v, pd.DataFrame)}
    if not tables:
        raise FormatError("no table (loop_) in per-tilt-series STAR file", path=path)
    if name is not None and name in tables:
        table = tables[name]
    elif "tilt_images" in tables:
        table = tables["tilt_images"]
    else:
        table = next(iter(tables.values()))
    table = table.rename(columns=_RELION4_RENAMES).copy()
    if "rlnMicrographMovieName" not in table and "rlnMicrographName" not in table:
        raise MissingFieldError(
            "a tilt-series table needs rlnMicrographMovieName or rlnMicrographName",
            path=path,
            field="rlnMicrographMovieName",
        )
    for label in _FILE_NAME_LABELS:
        if label in table:
            names = table[label]
            # starfile (pandas) turns a bare token such as "nan" or "inf" into a number.
            if names.isna().any() or not all(isinstance(v, str) for v in names):
                row = int(next(i for i, v in enumerate(names) if not isinstance(v, str)))
                raise FormatError(
                    f"row {row + 1} of {label} is not a file name ({names.iloc[row]!r} parses "
                    "as a number); rename the file",
                    path=path,
                    field=label,
                )
    return table


def _project_dir_for(path: Path, relative: str, project_dir: Path | None) -> Path:
    candidates = [project_dir] if project_dir is not None else []
    candidates += [Path.cwd(), *path.resolve().parents]
    for base in candidates:
        if base is not None and (base / relative).is_file():
            return base
    raise FormatError(
        f"per-tilt-series STAR file {relative!r} not found relative to the project directory "
        "(run from the RELION project directory or pass the project directory)",
        path=path,
        field="rlnTomoTiltSeriesStarFile",
    )


def read_tilt_series_set(
    path: Path | str, *, project_dir: Path | str | None = None
) -> tuple[TiltSeriesSet, Path]:
    """Read a RELION 5 ``tilt_series.star`` (or ``corrected_tilt_series.star``) and its tables.

    Parameters
    ----------
    path
        The global STAR file.
    project_dir
        The RELION project directory the paths inside are relative to; by default the current
        directory, else the first parent folder of ``path`` where they resolve.

    Returns
    -------
    (TiltSeriesSet, Path)
        The tilt series and the project directory the paths resolved against.
    """
    path = Path(path)
    blocks = read_star(path)
    table = blocks.get("global")
    if not isinstance(table, pd.DataFrame):
        first = next(iter(blocks.values()))
        table = pd.DataFrame([first]) if isinstance(first, dict) else first
    assert isinstance(table, pd.DataFrame)
    for label in GLOBAL_REQUIRED:
        if label not in table:
            raise MissingFieldError("required label missing", path=path, field=label)
    if table.empty:
        raise FormatError("the tilt-series table is empty", path=path)
    base = Path(project_dir) if project_dir is not None else None
    resolved = _project_dir_for(path, str(table["rlnTomoTiltSeriesStarFile"].iloc[0]), base)
    series: list[TiltSeries] = []
    for row in table.to_dict(orient="records"):
        name = str(row["rlnTomoName"])
        ts_path = resolved / str(row["rlnTomoTiltSeriesStarFile"])
        tilts = read_tilt_series_star(ts_path, name)
        series.append(
            TiltSeries(name=name, globals={str(k): v for k, v in row.items()}, tilts=tilts)
        )
    return TiltSeriesSet(series), resolved


def tilt_series_set_table(tilt_series: TiltSeriesSet) -> pd.DataFrame:
    """The global table of a tilt-series set."""
    return pd.DataFrame([dict(ts.globals, rlnTomoName=ts.name) for ts in tilt_series.series])


def read_star_text(text: str) -> dict[str, Any]:
    """Parse STAR text held in memory (every block, as :func:`read_star` returns them)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.star"
        path.write_text(text)
        return read_star(path)
