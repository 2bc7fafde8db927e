"""The CTF-estimation job: one task per tilt, RELION 5's CtfFind outputs.

Input is a motion-correction job's ``corrected_tilt_series.star``. The job folder gets the
diagnostics ``<...>_PS.ctf``, ``tilt_series/<TS>.star`` (the input rows plus ``rlnCtfImage``,
``rlnDefocusU``, ``rlnDefocusV``, ``rlnCtfAstigmatism``, ``rlnDefocusAngle``,
``rlnCtfFigureOfMerit`` and ``rlnCtfMaxResolution``, defoci in Å with underfocus positive as
RELION writes them), ``tilt_series_ctf.star``, ``log.txt``, ``note.txt`` and a sentinel. Tilts
already fitted (their diagnostic exists and the tilt-series STAR lists them) are not refitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tomopilot.core.errors import ConfigError
from tomopilot.core.events import EventBus, Message
from tomopilot.imaging.ctf import CtfOptics
from tomopilot.io.star import CTF_LABELS, TiltSeriesSet, read_star
from tomopilot.processing.ctf.options import CtfOptions
from tomopilot.processing.ctf.tilt_task import CtfResult, CtfTask, ctf_root, run_ctf_task
from tomopilot.processing.executor import Executor, TaskOutcome
from tomopilot.processing.job_tasks import end_status, run_job_tasks
from tomopilot.processing.relion_job import (
    JobStatus,
    RelionJob,
    write_global_star,
    write_tilt_series_star,
)

TASK_NAME = "ctf"


@dataclass
class CtfSummary:
    """How a CTF run went."""

    job_dir: Path
    n_tilts: int
    n_processed: int = 0
    n_skipped: int = 0
    n_missing: int = 0
    failures: list[CtfResult] = field(default_factory=list)
    status: JobStatus | None = None
    results: dict[tuple[str, int], CtfResult] = field(default_factory=dict)


def _path(name: object, job: RelionJob) -> Path | None:
    if name is None or (isinstance(name, float) and np.isnan(name)):
        return None
    return job.absolute(str(name).split(":")[0])


def plan_ctf_tasks(
    tilt_series: TiltSeriesSet, job: RelionJob, options: CtfOptions
) -> list[CtfTask]:
    """One task per tilt image of every tilt series."""
    tasks: list[CtfTask] = []
    for ts in tilt_series.series:
        if "rlnMicrographName" not in ts.tilts:
            raise ConfigError(
                f"tilt series {ts.name} has no rlnMicrographName: run motion correction first",
                field="rlnMicrographName",
            )
        optics = CtfOptics(
            voltage_kv=float(ts.globals.get("rlnVoltage", 300.0)),
            cs_mm=float(ts.globals.get("rlnSphericalAberration", 2.7)),
            amplitude_contrast=float(ts.globals.get("rlnAmplitudeContrast", 0.1)),
        )
        pixel = float(ts.globals.get("rlnTomoTiltSeriesPixelSize", ts.pixel_size_a))
        for index, row in enumerate(ts.tilts.to_dict(orient="records")):
            image = str(row["rlnMicrographName"])
            spectrum = None if options.source == "images" else row.get("rlnCtfPowerSpectrum")
            nominal = row.get("rlnTomoNominalDefocus")
            tasks.append(
                CtfTask(
                    tilt_series=ts.name,
                    index=index,
                    image_path=_path(image, job),
                    spectrum_path=_path(spectrum, job),
                    root=ctf_root(job.directory, image).resolve(),
                    options=options,
                    optics=optics,
                    pixel_size_a=pixel,
                    tilt_deg=float(row.get("rlnTomoNominalStageTiltAngle", 0.0)),
                    nominal_defocus_um=None if nominal is None else float(nominal),
                    pre_exposure_e_a2=float(row.get("rlnMicrographPreExposure", 0.0)),
                )
            )
    return tasks


def _previous_results(job: RelionJob, tasks: list[CtfTask]) -> dict[tuple[str, int], CtfResult]:
    """Fits recorded by an earlier run of this job, for tilts whose diagnostic exists."""
    found: dict[tuple[str, int], CtfResult] = {}
    by_series: dict[str, list[CtfTask]] = {}
    for task in tasks:
        by_series.setdefault(task.tilt_series, []).append(task)
    for name, series_tasks in by_series.items():
        path = job.directory / "tilt_series" / f"{name}.star"
        if not path.is_file():
            continue
        table = next((t for t in read_star(path).values() if isinstance(t, pd.DataFrame)), None)
        if table is None or "rlnCtfImage" not in table:
            continue
        rows = {
            str(v).split(":")[0]: r
            for r, v in zip(table.to_dict(orient="records"), table["rlnCtfImage"], strict=True)
        }
        for task in series_tasks:
            row = rows.get(job.relative(task.diagnostic_path))
            if row is None or not task.diagnostic_path.is_file():
                continue
            found[(name, task.index)] = CtfResult(
                name,
                task.index,
                ok=True,
                defocus_u_um=-float(row["rlnDefocusU"]) * 1e-4,
                defocus_v_um=-float(row["rlnDefocusV"]) * 1e-4,
                angle_deg=float(row["rlnDefocusAngle"]),
                score=float(row["rlnCtfFigureOfMerit"]),
                resolution_a=float(row["rlnCtfMaxResolution"]),
            )
    return found


def write_ctf_star_files(
    tilt_series: TiltSeriesSet,
    job: RelionJob,
    tasks: list[CtfTask],
    results: dict[tuple[str, int], CtfResult],
) -> Path | None:
    """``tilt_series/<TS>.star`` with the CTF labels and the global ``tilt_series_ctf.star``."""
    rows = []
    for ts in tilt_series.series:
        series_tasks = [t for t in tasks if t.tilt_series == ts.name]
        kept, values = [], []
        for task in series_tasks:
            result = results.get((ts.name, task.index))
            if result is None or not result.ok:
                continue
            kept.append(task.index)
            values.append(
                {
                    "rlnCtfImage": f"{job.relative(task.diagnostic_path)}:mrc",
                    "rlnDefocusU": -1e4 * result.defocus_u_um,
                    "rlnDefocusV": -1e4 * result.defocus_v_um,
                    "rlnCtfAstigmatism": 1e4 * abs(result.defocus_u_um - result.defocus_v_um),
                    "rlnDefocusAngle": result.angle_deg,
                    "rlnCtfFigureOfMerit": result.score,
                    "rlnCtfMaxResolution": result.resolution_a,
                }
            )
        if not kept:
            continue
        table = ts.tilts.iloc[kept].reset_index(drop=True).copy()
        added = pd.DataFrame(values)
        for label in CTF_LABELS:
            table[label] = added[label].to_numpy()
        rows.append(write_tilt_series_star(job, ts, table))
    return write_global_star(job, "tilt_series_ctf.star", rows)


def run_ctf(
    tilt_series: TiltSeriesSet,
    job: RelionJob,
    options: CtfOptions,
    *,
    executor: Executor | None = None,
    bus: EventBus | None = None,
    only: list[str] | None = None,
    dry_run: bool = False,
    argv: list[str] | None = None,
) -> CtfSummary:
    """Run (or, with ``dry_run``, describe) a CTF-estimation job; see the module docstring."""
    bus = bus or EventBus()
    selected = tilt_series.select(only)
    tasks = plan_ctf_tasks(selected, job, options)
    summary = CtfSummary(job.directory, len(tasks))
    previous = _previous_results(job, tasks) if job.directory.is_dir() else {}
    todo = [t for t in tasks if (t.tilt_series, t.index) not in previous]
    summary.n_skipped = len(tasks) - len(todo)
    if dry_run:
        bus.emit(Message(text=f"job folder: {job.directory}"))
        bus.emit(Message(text=f"{len(tasks)} tilts, {summary.n_skipped} already fitted"))
        missing = [t for t in todo if t.image_path is None or not t.image_path.is_file()]
        for task in missing:
            bus.emit(Message(level="error", text=f"missing image: {task.image_path}"))
        summary.n_missing = len(missing)
        line = f"would fit {len(todo) - len(missing)} tilts"
        if missing:
            line += f"; {len(missing)} input image(s) missing: the job cannot run as it is"
        bus.emit(Message(level="error" if missing else "info", text=line))
        return summary
    job.begin(argv or ["tomopilot", "preprocess", "ctf"])
    results = dict(previous)
    job.log(f"{len(tasks)} tilts, {summary.n_skipped} already fitted, {len(todo)} to fit")

    def on_result(task: CtfTask, outcome: TaskOutcome[CtfResult]) -> str:
        result = outcome.value or CtfResult(
            task.tilt_series, task.index, ok=False, error=outcome.error
        )
        results[(task.tilt_series, task.index)] = result
        name = f"{task.tilt_series} tilt {task.index}"
        if result.ok:
            job.log(f"{name}: defocus {result.defocus_u_um:.3f}/{result.defocus_v_um:.3f} µm")
        else:
            job.log(f"FAILED {name}: {result.error}")
            bus.emit(Message(level="error", text=f"{name}: {result.error}"))
        return name

    outcomes = run_job_tasks(
        job,
        run_ctf_task,
        todo,
        on_result=on_result,
        task_name=TASK_NAME,
        n_done=summary.n_skipped,
        n_total=len(tasks),
        executor=executor,
        bus=bus,
    )
    summary.n_processed = sum(1 for o in outcomes if o.value is not None and o.value.ok)
    summary.failures = [r for r in results.values() if not r.ok]
    summary.results = results
    write_ctf_star_files(selected, job, tasks, results)
    summary.status = end_status(job, outcomes, failed=bool(summary.failures))
    job.finish(summary.status)
    return summary
