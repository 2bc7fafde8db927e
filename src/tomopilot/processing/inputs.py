"""Inputs of the preprocessing jobs: a RELION 5 tilt-series STAR file, or mdoc files + frames.

A STAR input is read as RELION wrote it (paths relative to the project directory). mdoc input
(a file, a folder of ``*.mdoc`` or a glob pattern) is imported the way RELION 5's *Import
tomograms* job does it, with optics that mdoc files do not record given as options.

Examples
--------
>>> optics = ImportOptics(voltage_kv=300.0, pixel_size_a=1.35)
>>> optics.cs_mm, optics.amplitude_contrast, optics.hand
(2.7, 0.1, -1)
"""

from __future__ import annotations

import glob
import logging
from dataclasses import dataclass
from pathlib import Path

from tomopilot.core.errors import ConfigError
from tomopilot.io.mdoc import tilt_series_from_mdoc
from tomopilot.io.mdoc_sections import read_mdoc_sections
from tomopilot.io.star import TiltSeries, TiltSeriesSet, read_tilt_series_set

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImportOptics:
    """Optics and geometry that mdoc files do not (reliably) record.

    Attributes
    ----------
    voltage_kv
        High tension; None takes the mdoc's ``Voltage`` (else 300).
    pixel_size_a
        Movie pixel size; None takes ``PixelSpacing / Binning`` from the mdoc.
    cs_mm, amplitude_contrast
        Spherical aberration and amplitude contrast.
    hand
        ``rlnTomoHand``: −1 (as in RELION's tutorial data) or +1.
    tilt_axis_deg
        Nominal tilt-axis angle; None takes the mdoc's title line.
    dose_per_tilt_e_a2
        Dose per tilt; None takes the mdoc's doses.
    optics_group
        ``rlnOpticsGroupName`` for every tilt series; None names each after itself.
    """

    voltage_kv: float | None = None
    pixel_size_a: float | None = None
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.1
    hand: int = -1
    tilt_axis_deg: float | None = None
    dose_per_tilt_e_a2: float | None = None
    optics_group: str | None = None


def _mdoc_paths(source: str) -> list[Path]:
    path = Path(source)
    if path.is_dir():
        return sorted(path.glob("*.mdoc"))
    if path.is_file():
        return [path]
    return sorted(Path(p) for p in glob.glob(source))


def load_tilt_series(
    source: str | Path,
    *,
    project_dir: Path | None = None,
    frames_dir: Path | None = None,
    optics: ImportOptics | None = None,
) -> tuple[TiltSeriesSet, Path]:
    """Read the tilt series to process and the project directory their paths are relative to.

    Parameters
    ----------
    source
        A ``tilt_series.star`` (RELION 5 import or a previous job's output), or mdoc file(s):
        a file, a folder or a glob pattern.
    project_dir
        Project directory (default: the current directory).
    frames_dir
        mdoc input: where the movies are (default ``<mdoc folder>/frames``).
    optics
        mdoc input: optics and dose options.
    """
    text = str(source)
    project = Path(project_dir) if project_dir is not None else Path.cwd()
    if text.endswith(".star"):
        return read_tilt_series_set(text, project_dir=project_dir)
    paths = _mdoc_paths(text)
    if not paths:
        raise ConfigError(f"no tilt-series STAR file or mdoc file matches {text!r}", field="input")
    optics = optics or ImportOptics()
    if len(paths) > 1:
        # SerialEM writes a frame-stack mdoc beside each movie; in a folder or a pattern they
        # sit beside the tilt-series mdocs and are not tilt series themselves.
        kinds = {path: read_mdoc_sections(path).kind for path in paths}
        series_paths = [p for p in paths if kinds[p] != "frame stack"]
        if series_paths:
            skipped = len(paths) - len(series_paths)
            if skipped:
                _log.info("%s: skipped %d frame-stack mdoc(s) (one per movie)", text, skipped)
            paths = series_paths
    series: list[TiltSeries] = []
    for path in paths:
        imported = tilt_series_from_mdoc(
            path,
            frames_dir=frames_dir,
            dose_per_tilt_e_a2=optics.dose_per_tilt_e_a2,
            tilt_axis_deg=optics.tilt_axis_deg,
            relative_to=project,
        )
        pixel = optics.pixel_size_a or imported.pixel_size_a
        if pixel is None:
            raise ConfigError(
                f"{path}: the mdoc records no pixel size; give the movie pixel size",
                field="pixel_size_a",
            )
        voltage = optics.voltage_kv or imported.voltage_kv or 300.0
        globals_row = {
            "rlnTomoName": imported.name,
            "rlnTomoTiltSeriesStarFile": "",
            "rlnVoltage": float(voltage),
            "rlnSphericalAberration": float(optics.cs_mm),
            "rlnAmplitudeContrast": float(optics.amplitude_contrast),
            "rlnMicrographOriginalPixelSize": float(pixel),
            "rlnTomoHand": float(optics.hand),
            "rlnOpticsGroupName": optics.optics_group or imported.name,
        }
        series.append(TiltSeries(imported.name, globals_row, imported.tilts, imported.doses_e_a2))
    names = [ts.name for ts in series]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"several mdoc files give the tilt-series name(s) {duplicates}")
    return TiltSeriesSet(series), project
