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

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tomopilot.core.files import atomic_write_text
from tomopilot.core.input_files import decode_text, input_boundary, read_input_bytes
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


MAX_STAR_BYTES = 2 * 1024**3
"""STAR files larger than this (2 GiB) are refused before reading."""


_QUOTED_TOKEN = re.compile(r"'[^']*'|\"[^\"]*\"|\S+")


def check_star_text(text: str, path: Path | None = None) -> None:
    """Check the loop rows of STAR text before any table is built.

    Every row of a ``loop_`` must hold exactly as many fields as the loop has labels; a row
    of 100,000 fields is refused here, at its line, before pandas allocates for it.

    Raises
    ------
    FormatError
        Naming the file, line and the number of fields found and expected.
    """
    n_labels: int | None = None
    in_header = False
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("data_"):
            n_labels, in_header = None, False
            continue
        if line.startswith("loop_"):
            n_labels, in_header = 0, True
            continue
        if line.startswith("_"):
            if in_header and n_labels is not None:
                n_labels += 1
            continue
        if in_header and n_labels == 0:
            raise FormatError("a row in a loop_ before any _label", path=path, line=number)
        in_header = False
        if not n_labels:
            continue
        if "'" in line or '"' in line:  # quoted values may hold spaces
            n_fields = len(_QUOTED_TOKEN.findall(line))
        else:
            n_fields = line.count(" ") + line.count("\t") + 1
            if n_fields > n_labels:  # cheap upper bound first, exact count only when needed
                n_fields = len(line.split())
        if n_fields != n_labels:
            raise FormatError(
                f"a row of {n_fields} fields in a loop of {n_labels} labels",
                path=path,
                line=number,
            )


def read_star(path: Path | str) -> dict[str, Any]:
    """Read every block of a STAR file (name → DataFrame or dict), naming the file on error.

    Text that is not UTF-8 (a latin-1 ``µ`` in a comment or a file name) is read as latin-1;
    rows are checked against their loop's labels before parsing (:func:`check_star_text`).
    starfile keeps a line cache (:mod:`linecache`) that it clears only after a successful
    parse, so it is cleared here before and after every read: a file fixed after a failed
    read is read afresh.
    """
    path = Path(path)
    raw = read_input_bytes(path, what="STAR", error=FormatError, max_bytes=MAX_STAR_BYTES)
    try:
        raw.decode("utf-8")
        utf8 = True
    except UnicodeDecodeError:
        utf8 = False
    text = decode_text(raw)
    check_star_text(text, path)
    if "data_" not in text:
        raise FormatError("no data block (data_...) in STAR file", path=path)
    return _parse_star(path if utf8 else None, text, path)


def _parse_star(source: Path | None, text: str, path: Path) -> dict[str, Any]:
    """Parse with starfile, from ``source`` or (None) from a UTF-8 copy of ``text``."""
    import linecache
    import tempfile

    import starfile

    linecache.clearcache()
    try:
        with input_boundary(path, what="STAR", error=FormatError), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if source is not None:
                blocks = starfile.read(source, always_dict=True)
            else:
                with tempfile.TemporaryDirectory() as folder:
                    copy = Path(folder) / "utf8.star"
                    copy.write_text(text, encoding="utf-8")
                    blocks = starfile.read(copy, always_dict=True)
    finally:
        linecache.clearcache()
    if not blocks:
        raise FormatError("no data block in STAR file", path=path)
    for name, block in blocks.items():
        if isinstance(block, pd.DataFrame) and block.columns.duplicated().any():
            label = block.columns[block.columns.duplicated()][0]
            raise FormatError(f"the label {label} appears twice in data_{name}", path=path)
    return dict(blocks)


_FILE_NAME_LABELS = ("rlnMicrographMovieName", "rlnMicrographName")


def read_tilt_series_star(path: Path | str, name: str | None = None) -> pd.DataFrame:
    """Read a per-tilt-series STAR file (RELION 5 ``data_<name>`` or RELION 4 ``tilt_images``).

    Returns the table with RELION 5 labels; ``rlnMicrographMovieName`` or ``rlnMicrographName``
    must be present.
    """
    path = Path(path)
    with input_boundary(path, what="per-tilt-series STAR", error=FormatError):
        return _read_tilt_series_star(path, name)


def _read_tilt_series_star(path: Path, name: str | None) -> pd.DataFrame:
    blocks = read_star(path)
    tables = {k: v for k, v in blocks.items() if isinstance(v, pd.DataFrame)}
    if not tables:
        raise FormatError("no table (loop_) in per-tilt-series STAR file", path=path)
    table = _tilt_table(tables, name, path)
    if "rlnTomoTiltMovieFile" in table and "rlnMicrographMovieName" in table:
        # Both RELION 4's and RELION 5's movie labels: RELION 5 reads rlnMicrographMovieName.
        table = table.drop(columns="rlnTomoTiltMovieFile")
    table = table.rename(columns=_RELION4_RENAMES).copy()
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


_MOVIE_OR_IMAGE_LABELS = ("rlnMicrographMovieName", "rlnTomoTiltMovieFile", "rlnMicrographName")


def _tilt_table(tables: dict[str, pd.DataFrame], name: str | None, path: Path) -> pd.DataFrame:
    """The per-tilt table: the block named ``name``, else RELION 4's ``tilt_images`` or
    ``micrographs``, else the first block that names movies or images (never ``optics``)."""
    for key in (name, "tilt_images", "micrographs"):
        if key is not None and key in tables:
            return tables[key]
    for key, table in tables.items():
        if key != "optics" and any(label in table for label in _MOVIE_OR_IMAGE_LABELS):
            return table
    found = ", ".join(f"data_{key}" for key in tables)
    raise MissingFieldError(
        f"a tilt-series table needs rlnMicrographMovieName or rlnMicrographName; none of the "
        f"blocks ({found}) has either",
        path=path,
        field="rlnMicrographMovieName",
    )


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
    with input_boundary(path, what="tilt-series STAR", error=FormatError):
        return _read_tilt_series_set(path, project_dir)


def _read_tilt_series_set(path: Path, project_dir: Path | str | None) -> tuple[TiltSeriesSet, Path]:
    blocks = read_star(path)
    table = _global_table(blocks)
    for label in GLOBAL_REQUIRED:
        if label not in table:
            raise MissingFieldError("required label missing", path=path, field=label)
    if table.empty:
        raise FormatError("the tilt-series table is empty", path=path)
    table = apply_optics_groups(table, blocks.get("optics"), path)
    names = [str(name) for name in table["rlnTomoName"]]
    seen: dict[str, int] = {}
    for number, name in enumerate(names, start=1):
        if name in seen:
            raise FormatError(
                f"the tilt series {name!r} is listed twice (rows {seen[name]} and {number})",
                path=path,
                field="rlnTomoName",
            )
        seen[name] = number
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


def _global_table(blocks: dict[str, Any]) -> pd.DataFrame:
    """``data_global``, else the first block that is not ``data_optics``, as a table."""
    block = blocks.get("global")
    if block is None:
        block = next((v for k, v in blocks.items() if k != "optics"), next(iter(blocks.values())))
    return pd.DataFrame([block]) if isinstance(block, dict) else block


def apply_optics_groups(
    table: pd.DataFrame, optics: pd.DataFrame | dict[str, Any] | None, path: Path
) -> pd.DataFrame:
    """Fill each row's optics from its group in a ``data_optics`` block, as RELION does.

    RELION 4 and 5 keep voltage, Cs, amplitude contrast and pixel size per optics group: a row
    names its group by ``rlnOpticsGroup`` (the 1-based number) or ``rlnOpticsGroupName``, and
    the group's values are the ones that count. A table without a group label takes the only
    group there is. Without an optics block, the optics must be in the table itself.

    Raises
    ------
    MissingFieldError
        If a row's group is not in the optics block, or an optics label is in neither.
    """
    table = table.copy()
    if optics is not None:
        groups = pd.DataFrame([optics]) if isinstance(optics, dict) else optics
        keys = [k for k in ("rlnOpticsGroup", "rlnOpticsGroupName") if k in table and k in groups]
        if not keys and len(groups) != 1:
            raise MissingFieldError(
                f"data_optics holds {len(groups)} optics groups but the tilt series name none "
                "(rlnOpticsGroup or rlnOpticsGroupName)",
                path=path,
                field="rlnOpticsGroup",
            )
        if keys:
            key = keys[0]
            lookup: dict[str, int] = {}
            for position, value in enumerate(groups[key].astype(str)):
                lookup.setdefault(value, position)
            wanted = table[key].astype(str).tolist()
            missing = next((i for i, w in enumerate(wanted) if w not in lookup), None)
            if missing is not None:
                raise MissingFieldError(
                    f"optics group {wanted[missing]!r} of row {missing + 1} is not in data_optics",
                    path=path,
                    field=key,
                )
            rows = [lookup[w] for w in wanted]
        else:
            rows = [0] * len(table)
        for label in (*OPTICS_LABELS, "rlnOpticsGroupName"):
            if label in groups:
                values = groups[label].tolist()
                table[label] = [values[row] for row in rows]
        if "rlnMicrographOriginalPixelSize" not in table:
            for alternative in ("rlnMicrographPixelSize", "rlnTomoTiltSeriesPixelSize"):
                if alternative in groups:
                    pixels = groups[alternative].tolist()
                    table["rlnMicrographOriginalPixelSize"] = [pixels[row] for row in rows]
                    break
    for label in OPTICS_LABELS:
        if label not in table:
            raise MissingFieldError(
                "optics label missing from the tilt-series table and its data_optics block",
                path=path,
                field=label,
            )
        try:
            table[label] = table[label].astype(float)
        except (ValueError, TypeError) as exc:
            raise FormatError(f"{label} must be numbers", path=path, field=label) from exc
    return table


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
