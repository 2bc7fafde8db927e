"""Series conversions: TIA raw → MRC, MRC → SMV, and both in one go.

Each conversion is all-or-nothing (see :mod:`~tomopilot.processing.microed.staging`): every
TIA header and file size is checked before the first frame is converted, the SMV offset and
pedestal are computed from every frame before the first SMV is written, and outputs appear in
the output folder only when the whole series has converted. A JSON summary of the run is
written beside the outputs. Progress is reported as
:class:`~tomopilot.processing.microed.report.SeriesProgress` events to ``on_event``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tomopilot.core.events import Event
from tomopilot.core.units import electron_wavelength_a
from tomopilot.io.errors import FormatError
from tomopilot.io.smv import write_smv
from tomopilot.io.tia import read_tia, read_tia_header
from tomopilot.io.tia_ser import is_ser, read_ser_frame, read_ser_header
from tomopilot.processing.microed.errors import ConversionError
from tomopilot.processing.microed.levels import SeriesLevels, series_levels, to_uint16
from tomopilot.processing.microed.metadata import FrameMetadata, SeriesMetadata
from tomopilot.processing.microed.mrc import read_diffraction_mrc, write_diffraction_mrc
from tomopilot.processing.microed.report import ConversionReport, FrameReport, SeriesProgress
from tomopilot.processing.microed.smv_header import (
    SmvOptions,
    check_smv_metadata,
    diffraction_smv_header,
)
from tomopilot.processing.microed.staging import StagedOutputs

__all__ = ["convert_tia_series", "mrc_to_smv", "tia_to_mrc"]

EventHandler = Callable[[Event], None]


@dataclass(frozen=True)
class _TiaFrame:
    """One frame of the series: a raw ``.bin`` file, or frame ``index`` of a ``.ser`` file."""

    path: Path
    index: int | None
    stem: str


def _tia_frames(paths: list[Path]) -> list[_TiaFrame]:
    """The frames of the inputs in series order; a ``.ser`` file gives each of its frames
    (named ``<stem>_0001`` ...), told apart from ``.bin`` files by its first bytes."""
    frames: list[_TiaFrame] = []
    for path in paths:
        with path.open("rb") as handle:
            head = handle.read(4)
        if not is_ser(head):
            frames.append(_TiaFrame(path, None, path.stem))
            continue
        header = read_ser_header(path)
        frames += [_TiaFrame(path, i, f"{path.stem}_{i + 1:04d}") for i in range(header.n_frames)]
    return frames


def _read_tia_frame(frame: _TiaFrame) -> NDArray[Any]:
    if frame.index is None:
        return read_tia(frame.path)
    return read_ser_frame(frame.path, frame.index)


def _inputs(paths: Sequence[Path | str]) -> list[Path]:
    if not paths:
        raise ConversionError("no input files were given")
    resolved = [Path(p) for p in paths]
    for path in resolved:
        if path.is_dir():
            raise ConversionError(f"{path}: is a directory, not a TIA or MRC file")
        if not path.is_file():
            raise ConversionError(f"{path}: no such file")
    return resolved


def _emit(on_event: EventHandler | None, step: str, done: int, total: int, path: Path) -> None:
    if on_event is not None:
        on_event(SeriesProgress(step=step, done=done, total=total, path=str(path)))


def _statistics(data: NDArray[Any], path: Path) -> tuple[float, float, float]:
    values = data.astype(np.float64, copy=False)
    minimum, maximum = float(values.min()), float(values.max())
    if not (math.isfinite(minimum) and math.isfinite(maximum)):
        raise FormatError("the frame holds NaN or infinite values", path=path)
    return minimum, maximum, float(values.mean())


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)


def _stage_tia(
    frames: list[_TiaFrame],
    stage: StagedOutputs,
    metadata: SeriesMetadata,
    on_event: EventHandler | None,
) -> list[FrameReport]:
    """Convert TIA frames to MRC in the staging folder; every header is checked first."""
    total = len(frames)
    for done, item in enumerate(frames, start=1):
        if item.index is None:
            read_tia_header(item.path)
        _emit(on_event, "check", done, total, item.path)
    reports = []
    for index, item in enumerate(frames):
        path = item.path
        data = _read_tia_frame(item)
        minimum, maximum, mean = _statistics(data, path)
        name = f"{item.stem}.mrc"
        frame = metadata.frame(index, acquired=_mtime(path))
        mode = write_diffraction_mrc(stage.path(name), data, metadata=frame, source=path)
        reports.append(
            FrameReport(
                index=index,
                source=path,
                mrc=stage.out_dir / name,
                source_dtype=data.dtype.name,
                mrc_mode=mode,
                minimum=minimum,
                maximum=maximum,
                mean=mean,
                osc_start_deg=frame.tilt_angle_deg,
                osc_range_deg=frame.oscillation_deg,
            )
        )
        _emit(on_event, "tia2mrc", index + 1, total, path)
    return reports


def _stage_smv(
    mrc_files: list[Path],
    reports: list[FrameReport],
    stage: StagedOutputs,
    metadata: SeriesMetadata | None,
    options: SmvOptions,
    on_event: EventHandler | None,
) -> tuple[list[FrameReport], SeriesLevels, float]:
    """Convert MRC frames to SMV in the staging folder: scan minima, then shift and write.

    Returns the frame reports, the series levels and the wavelength of the first frame.
    """
    total = len(mrc_files)
    frames: list[FrameMetadata] = []
    minima: list[float] = []
    shape: tuple[int, ...] | None = None
    for index, (path, report) in enumerate(zip(mrc_files, reports, strict=True)):
        mrc = read_diffraction_mrc(path)
        if shape is None:
            shape = mrc.data.shape
        elif mrc.data.shape != shape:
            raise FormatError(
                f"frame shape {mrc.data.shape} differs from the series' {shape}", path=report.source
            )
        minimum, maximum, mean = _statistics(mrc.data, report.source)
        frame = mrc.metadata
        if metadata is not None:
            frame = frame.updated(metadata.frame(index))
            start, recorded = metadata.start_angle_deg, frame.oscillation_deg
            if start is not None and metadata.oscillation_deg is None and recorded is not None:
                # a new start angle with the oscillation recorded in the file
                frame = frame.model_copy(update={"tilt_angle_deg": start + index * recorded})
        if frame.acquired is None:
            frame = frame.model_copy(update={"acquired": _mtime(path)})
        check_smv_metadata(frame, path=report.source)
        frames.append(frame)
        minima.append(minimum)
        reports[index] = replace(
            report,
            source_dtype=report.source_dtype or (mrc.source_dtype or mrc.data.dtype).name,
            mrc_mode=mrc.mode,
            minimum=minimum,
            maximum=maximum,
            mean=mean,
            osc_start_deg=frame.tilt_angle_deg,
            osc_range_deg=frame.oscillation_deg,
        )
        _emit(on_event, "scan", index + 1, total, path)
    levels = series_levels(minima, cap=options.offset_cap)
    for index, (path, report, frame) in enumerate(zip(mrc_files, reports, frames, strict=True)):
        data = read_diffraction_mrc(path).data
        converted = to_uint16(data, levels.offset)
        header = diffraction_smv_header(
            frame,
            shape=(data.shape[0], data.shape[1]),
            levels=levels,
            options=options,
            path=report.source,
        )
        name = f"{path.stem}.img"  # the MRC frame's name: one per frame of a .ser too
        write_smv(stage.path(name), converted.data, header)
        reports[index] = replace(
            report,
            smv=stage.out_dir / name,
            clipped_low=converted.clipped_low,
            clipped_high=converted.clipped_high,
        )
        _emit(on_event, "mrc2smv", index + 1, total, path)
    voltage_kv = frames[0].voltage_kv
    assert voltage_kv is not None  # guaranteed by check_smv_metadata
    return reports, levels, electron_wavelength_a(voltage_kv)


def _finish(
    stage: StagedOutputs,
    report: ConversionReport,
    summary_name: str | None,
    dry_run: bool,
) -> ConversionReport:
    """Write the summary into the staging folder and, unless a dry run, commit everything."""
    summary = None
    if summary_name is not None:
        summary = stage.out_dir / summary_name
        text = json.dumps(report.to_dict(), indent=2, allow_nan=False)
        stage.path(summary_name).write_text(text + "\n", encoding="utf-8")
    written: list[Path] = [] if dry_run else stage.commit()
    return replace(report, written=tuple(written), summary=None if dry_run else summary)


def _smv_series(
    step: str,
    stage: StagedOutputs,
    mrc_files: list[Path],
    reports: list[FrameReport],
    *,
    metadata: SeriesMetadata | None,
    options: SmvOptions,
    on_event: EventHandler | None,
    summary_name: str | None,
    dry_run: bool,
) -> ConversionReport:
    """Stage the SMV frames of ``mrc2smv`` or ``convert``, then finish as :func:`_finish` does."""
    reports, levels, wavelength_a = _stage_smv(
        mrc_files, reports, stage, metadata, options, on_event
    )
    report = ConversionReport(
        step=step,
        out_dir=stage.out_dir,
        frames=tuple(reports),
        levels=levels,
        wavelength_a=wavelength_a,
        dry_run=dry_run,
    )
    return _finish(stage, report, summary_name, dry_run)


def _names(
    paths: Sequence[Path | _TiaFrame], suffixes: Sequence[str], summary_name: str | None
) -> list[str]:
    names = [f"{p.stem}{suffix}" for suffix in suffixes for p in paths]
    return names + ([summary_name] if summary_name else [])


def tia_to_mrc(
    tia_paths: Sequence[Path | str],
    out_dir: Path | str,
    *,
    metadata: SeriesMetadata | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    summary_name: str | None = "tia2mrc_summary.json",
    on_event: EventHandler | None = None,
) -> ConversionReport:
    """Convert a series of TIA raw files, in series order, to ``out_dir/<stem>.mrc``.

    Parameters
    ----------
    tia_paths
        The ``.bin`` files in series order (frame 0 first).
    out_dir
        The output folder.
    metadata
        The series metadata to record in each frame's MRC labels.
    overwrite
        Replace existing outputs instead of refusing.
    dry_run
        Convert and report, but discard the outputs.
    summary_name
        File name of the JSON summary in ``out_dir``, or ``None`` for none.
    on_event
        Receives a :class:`SeriesProgress` event per file and step.

    Raises
    ------
    FormatError
        Naming the file, for a truncated, inconsistent or unknown-type TIA file or a value MRC
        cannot hold exactly; no output of the series is left behind.
    ConversionError
        For missing inputs or outputs that exist (unless ``overwrite``).
    """
    frames = _tia_frames(_inputs(tia_paths))
    with StagedOutputs(
        out_dir, _names(frames, [".mrc"], summary_name), overwrite=overwrite
    ) as stage:
        reports = _stage_tia(frames, stage, metadata or SeriesMetadata(), on_event)
        report = ConversionReport(
            step="tia2mrc", out_dir=stage.out_dir, frames=tuple(reports), dry_run=dry_run
        )
        return _finish(stage, report, summary_name, dry_run)


def mrc_to_smv(
    mrc_paths: Sequence[Path | str],
    out_dir: Path | str,
    *,
    metadata: SeriesMetadata | None = None,
    options: SmvOptions | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    summary_name: str | None = "mrc2smv_summary.json",
    on_event: EventHandler | None = None,
) -> ConversionReport:
    """Convert a series of single-frame MRC files to SMV ``out_dir/<stem>.img`` for DIALS.

    The frame metadata recorded by :func:`tia_to_mrc` are used; values in ``metadata`` replace
    them (frame ``i`` starts at ``start_angle_deg + i × osc_range_deg``). The offset and
    pedestal follow Leginon's rules (:mod:`~tomopilot.processing.microed.levels`).

    Raises
    ------
    FormatError
        Naming the file, for an unreadable MRC, a shape that differs within the series, or
        metadata the SMV header needs and nobody gave; nothing is written then.
    ConversionError
        For missing inputs or outputs that exist (unless ``overwrite``).
    """
    paths = _inputs(mrc_paths)
    options = options or SmvOptions()
    names = _names(paths, [".img"], summary_name)
    with StagedOutputs(out_dir, names, overwrite=overwrite) as stage:
        reports = [FrameReport(index=i, source=p) for i, p in enumerate(paths)]
        return _smv_series(
            "mrc2smv",
            stage,
            paths,
            reports,
            metadata=metadata,
            options=options,
            on_event=on_event,
            summary_name=summary_name,
            dry_run=dry_run,
        )


def convert_tia_series(
    tia_paths: Sequence[Path | str],
    out_dir: Path | str,
    *,
    metadata: SeriesMetadata | None = None,
    options: SmvOptions | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    summary_name: str | None = "convert_summary.json",
    on_event: EventHandler | None = None,
) -> ConversionReport:
    """TIA raw → MRC → SMV for a whole series: ``out_dir/<stem>.mrc`` and ``<stem>.img``.

    The SMV frames are made from the MRC files just written, so the MRC is exactly what DIALS
    gets. See :func:`tia_to_mrc` and :func:`mrc_to_smv` for the parameters and errors.
    """
    frames = _tia_frames(_inputs(tia_paths))
    options = options or SmvOptions()
    metadata = metadata or SeriesMetadata()
    names = _names(frames, [".mrc", ".img"], summary_name)
    with StagedOutputs(out_dir, names, overwrite=overwrite) as stage:
        reports = _stage_tia(frames, stage, metadata, on_event)
        staged = [stage.path(f"{f.stem}.mrc") for f in frames]
        return _smv_series(
            "convert",
            stage,
            staged,
            reports,
            metadata=None,
            options=options,
            on_event=on_event,
            summary_name=summary_name,
            dry_run=dry_run,
        )
