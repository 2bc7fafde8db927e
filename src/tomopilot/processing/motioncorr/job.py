"""The motion-correction job: plan one task per tilt movie, run them, write RELION's STAR files.

A job folder gets, as RELION 5's MotionCorr job writes them: the per-movie outputs (see
:mod:`~tomopilot.processing.motioncorr.movie_task`), ``tilt_series/<TS>.star`` (the input rows
plus ``rlnCtfPowerSpectrum``, ``rlnMicrographNameEven/Odd``, ``rlnMicrographName``,
``rlnMicrographMetadata`` and ``rlnAccumMotionTotal/Early/Late``, sorted by pre-exposure),
``corrected_tilt_series.star`` (the global table with ``rlnTomoTiltSeriesPixelSize``), the
oriented gain ``gain.mrc``, ``log.txt``, ``note.txt`` and an exit sentinel.

Movies whose outputs exist are skipped, so a rerun finishes an interrupted job and retries the
movies that failed. A movie that fails is logged with its error and left out of the STAR
files; the job then ends with ``RELION_JOB_EXIT_FAILURE`` after every other movie is done.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from tomopilot.core.errors import ConfigError
from tomopilot.core.events import EventBus, Message
from tomopilot.imaging.blas_threads import single_threaded_blas
from tomopilot.io.frames import frame_format, frame_stack_info
from tomopilot.io.gain import read_gain
from tomopilot.io.star import MOTIONCORR_LABELS, TiltSeries, TiltSeriesSet
from tomopilot.processing.executor import (
    Executor,
    SerialExecutor,
    TaskOutcome,
    ThreadExecutor,
    available_cores,
    threads_per_task,
)
from tomopilot.processing.job_tasks import end_status, run_job_tasks
from tomopilot.processing.motioncorr.movie_task import (
    MovieResult,
    MovieTask,
    output_root,
    read_movie_shifts,
    remember_gain,
    run_movie_task,
    share_gain,
    unshare_gain,
    write_image_mrc,
)
from tomopilot.processing.motioncorr.options import MotionCorrOptions
from tomopilot.processing.relion_job import (
    JobStatus,
    RelionJob,
    write_global_star,
    write_tilt_series_star,
)

TASK_NAME = "motioncorr"
EARLY_DOSE_E_A2 = 4.0


@dataclass
class MotionCorrSummary:
    """How a motion-correction run went."""

    job_dir: Path
    n_movies: int
    n_processed: int = 0
    n_skipped: int = 0
    n_missing: int = 0
    failures: list[MovieResult] = field(default_factory=list)
    status: JobStatus | None = None
    plan: list[str] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        """Movies that failed in this run."""
        return len(self.failures)


def accumulated_motion(
    shifts_px: list[tuple[float, float]],
    pre_exposure_e_a2: float,
    dose_per_frame_e_a2: float | None,
) -> tuple[float, float, float]:
    """RELION's rlnAccumMotionTotal/Early/Late: summed frame-to-frame motion in pixels.

    "Early" covers the frames while the accumulated dose is at most 4 e⁻/Å²; with the dose per
    frame unknown RELION's tomography convention (1 e⁻/Å² per frame) is used.
    """
    if len(shifts_px) < 2:
        return 0.0, 0.0, 0.0
    steps = np.linalg.norm(np.diff(np.asarray(shifts_px), axis=0), axis=1)
    dose = dose_per_frame_e_a2 or 1.0
    n_early = max(0, math.floor((EARLY_DOSE_E_A2 - pre_exposure_e_a2) / dose + 1e-9))
    early = float(steps[: max(0, n_early - 1)].sum())
    total = float(steps.sum())
    return total, early, total - early


def _tilt_doses(ts: TiltSeries, options: MotionCorrOptions) -> dict[str, float | None]:
    """Dose of every tilt: the option, else the source's record, else pre-exposure increments."""
    names = [str(n) for n in ts.tilts[_movie_column(ts)]]
    if options.dose_per_tilt_e_a2 is not None:
        return dict.fromkeys(names, options.dose_per_tilt_e_a2)
    if ts.doses_e_a2:
        return {n: ts.doses_e_a2.get(n) for n in names}
    if not options.dose_weighting or "rlnMicrographPreExposure" not in ts.tilts:
        return dict.fromkeys(names, None)
    pre = ts.tilts["rlnMicrographPreExposure"].astype(float).to_numpy()
    steps = np.diff(np.sort(pre))
    steps = steps[steps > 0]
    dose = float(np.median(steps)) if steps.size else None
    return dict.fromkeys(names, dose)


def _movie_column(ts: TiltSeries) -> str:
    if "rlnMicrographMovieName" not in ts.tilts:
        raise ConfigError(
            f"tilt series {ts.name} has no rlnMicrographMovieName: its images are already "
            "motion-corrected",
            field="rlnMicrographMovieName",
        )
    return "rlnMicrographMovieName"


def plan_tasks(
    tilt_series: TiltSeriesSet, job: RelionJob, options: MotionCorrOptions, gain_path: Path | None
) -> list[MovieTask]:
    """One task per tilt movie of every tilt series."""
    tasks: list[MovieTask] = []
    for ts in tilt_series.series:
        column = _movie_column(ts)
        doses = _tilt_doses(ts, options)
        pre = ts.tilts.get("rlnMicrographPreExposure", pd.Series(np.zeros(len(ts.tilts))))
        for index, (name, pre_exposure) in enumerate(zip(ts.tilts[column], pre, strict=True)):
            movie = str(name)
            tasks.append(
                MovieTask(
                    movie_path=job.absolute(movie),
                    movie_name=movie,
                    root=output_root(job.directory, movie).resolve(),
                    options=options,
                    pixel_size_a=ts.pixel_size_a,
                    voltage_kv=float(ts.globals.get("rlnVoltage", 300.0)),
                    pre_exposure_e_a2=float(pre_exposure),
                    dose_per_tilt_e_a2=doses.get(movie),
                    gain_path=gain_path,
                    tilt_series=ts.name,
                    index=index,
                )
            )
    return tasks


@dataclass
class PreparedGain:
    """The job's oriented gain: where it is saved and, for movies run in this process, the
    token of the copy held in memory. The file may still be being written (see :meth:`wait`)."""

    path: Path | None = None
    token: str | None = None
    _writer: threading.Thread | None = None
    _error: list[BaseException] = field(default_factory=list)

    def wait(self) -> None:
        """Wait until ``gain.mrc`` is written, and let the copy in memory go; raises what
        writing it raised."""
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        if self.token is not None:
            unshare_gain(self.token)
            self.token = None
        if self._error:
            raise self._error.pop()


def prepare_gain(
    options: MotionCorrOptions, job: RelionJob, any_eer: bool, *, in_process: bool = False
) -> PreparedGain:
    """Orient the gain reference once for the whole job and save it as ``<job>/gain.mrc``.

    With ``in_process`` (the movies run in this process and take the gain from memory) the
    file is written on a thread of its own while the movies run: call
    :meth:`PreparedGain.wait` before the job ends.
    """
    if options.gain_path is None:
        return PreparedGain()
    gain = read_gain(
        options.gain_path,
        rotation=options.gain_rotation,
        flip=options.gain_flip,
        for_eer=any_eer,
    )
    gain = np.ascontiguousarray(gain, np.float32)
    target = (job.directory / "gain.mrc").resolve()

    def write() -> None:
        with ThreadPoolExecutor(available_cores()) as pool:  # statistics and rows on the cores
            write_image_mrc(target, gain, None, pool=pool)

    if not in_process:
        write()
        remember_gain(target, gain)  # movies run in this process need not read it back
        return PreparedGain(target)
    prepared = PreparedGain(target, share_gain(gain))

    def write_reporting() -> None:
        try:
            write()
        except BaseException as exc:  # raised again by wait()
            prepared._error.append(exc)

    prepared._writer = threading.Thread(target=write_reporting, name="gain.mrc", daemon=True)
    prepared._writer.start()
    return prepared


def _describe_plan(tasks: list[MovieTask], done: list[MovieTask], job: RelionJob) -> list[str]:
    lines = [f"job folder: {job.directory}", f"{len(tasks)} movies, {len(done)} already done"]
    missing = [t for t in tasks if not t.movie_path.is_file()]
    for task in missing:
        lines.append(f"missing movie: {task.movie_path}")
    todo = [t for t in tasks if t not in done and t not in missing]
    if todo:
        info = frame_stack_info(todo[0].movie_path)
        lines.append(
            f"first movie: {info.n_frames} {info.fmt.upper()} frames of "
            f"{info.shape[1]}×{info.shape[0]} px ({todo[0].movie_path.name})"
        )
    line = f"would process {len(todo)} movies"
    if missing:
        line += f"; {len(missing)} movie(s) missing: the job cannot run as it is"
    lines.append(line)
    return lines


def write_star_files(
    tilt_series: TiltSeriesSet,
    job: RelionJob,
    options: MotionCorrOptions,
    tasks: list[MovieTask],
    results: dict[tuple[str, int], MovieResult],
) -> Path | None:
    """``tilt_series/<TS>.star`` for every tilt series with corrected tilts, and the global STAR."""
    by_series: dict[str, list[MovieTask]] = {}
    for task in tasks:
        by_series.setdefault(task.tilt_series, []).append(task)
    rows = []
    for ts in tilt_series.series:
        kept, extra = [], []
        for task in by_series.get(ts.name, []):
            result = results.get((ts.name, task.index))
            if result is None or not result.ok:
                continue
            kept.append(task.index)
            files = task.outputs()
            dose = task.dose_per_tilt_e_a2
            n_frames = max(1, len(result.shifts_px))
            motion = accumulated_motion(
                result.shifts_px, task.pre_exposure_e_a2, dose / n_frames if dose else None
            )
            values: dict[str, str | float] = {
                label: job.relative(path) for label, path in files.items()
            }
            values.update(zip(MOTIONCORR_LABELS[-3:], motion, strict=True))
            extra.append(values)
        if not kept:
            continue
        table = ts.tilts.iloc[kept].reset_index(drop=True).copy()
        added = pd.DataFrame(extra)
        labels = [lab for lab in MOTIONCORR_LABELS if lab in added]
        labels += [str(lab) for lab in added.columns if lab not in labels]
        for label in labels:
            table[label] = added[label].to_numpy()
        if "rlnMicrographPreExposure" in table:
            table = table.sort_values("rlnMicrographPreExposure", kind="stable")
        row = write_tilt_series_star(job, ts, table.reset_index(drop=True))
        first = by_series[ts.name][0]
        row["rlnTomoTiltSeriesPixelSize"] = first.pixel_size_a * options.bin_factor
        rows.append(row)
    return write_global_star(job, "corrected_tilt_series.star", rows)


@single_threaded_blas()  # the movies share out the cores themselves
def run_motioncorr(
    tilt_series: TiltSeriesSet,
    job: RelionJob,
    options: MotionCorrOptions,
    *,
    executor: Executor | None = None,
    bus: EventBus | None = None,
    only: list[str] | None = None,
    dry_run: bool = False,
    argv: list[str] | None = None,
) -> MotionCorrSummary:
    """Run (or, with ``dry_run``, describe) a motion-correction job.

    Parameters
    ----------
    tilt_series
        The tilt series to correct (paths relative to ``job.project_dir``).
    job
        The job folder.
    options
        The job's options.
    executor
        Where the movies run (default: serially in this process).
    bus
        Receives :class:`~tomopilot.core.events.Progress` per movie and
        :class:`~tomopilot.core.events.Message` for failures.
    only
        Names of the tilt series to process (``--only``); the others are left out.
    dry_run
        Only plan: report what would be done, write nothing.
    """
    bus = bus or EventBus()
    selected = tilt_series.select(only)
    provisional = plan_tasks(selected, job, options, None)
    done = [t for t in provisional if t.is_done()]
    summary = MotionCorrSummary(job.directory, len(provisional))
    if dry_run:
        summary.plan = _describe_plan(provisional, done, job)
        summary.n_skipped = len(done)
        summary.n_missing = sum(1 for t in provisional if not t.movie_path.is_file())
        for line in summary.plan:
            bus.emit(Message(text=line))
        return summary
    job.begin(argv or ["tomopilot", "preprocess", "motioncorr"])
    in_process = executor is None or isinstance(executor, SerialExecutor | ThreadExecutor)
    try:
        any_eer = any(frame_format(t.movie_path) == "eer" for t in provisional)
        gain = prepare_gain(options, job, any_eer, in_process=in_process)
    except Exception as exc:
        _fail(job, bus, summary, exc)
        raise
    try:
        tasks, results, outcomes = _run_tasks(selected, job, options, gain, summary, executor, bus)
    finally:
        try:
            gain.wait()
        except Exception as exc:
            _fail(job, bus, summary, exc)
            raise
    write_star_files(selected, job, options, tasks, results)
    summary.status = end_status(job, outcomes, failed=bool(summary.failures))
    if summary.status is JobStatus.FAILURE:
        job.log(f"{len(summary.failures)} of {len(tasks)} movies failed; rerun to retry them")
    job.finish(summary.status)
    return summary


def _fail(job: RelionJob, bus: EventBus, summary: MotionCorrSummary, exc: Exception) -> None:
    job.log(f"ERROR: {exc}")
    bus.emit(Message(level="error", text=str(exc)))
    job.finish(JobStatus.FAILURE)
    summary.status = JobStatus.FAILURE


def _run_tasks(
    selected: TiltSeriesSet,
    job: RelionJob,
    options: MotionCorrOptions,
    gain: PreparedGain,
    summary: MotionCorrSummary,
    executor: Executor | None,
    bus: EventBus,
) -> tuple[list[MovieTask], dict[tuple[str, int], MovieResult], list[TaskOutcome[MovieResult]]]:
    """Run the movies not yet done: the tasks, every movie's result and this run's outcomes
    (the summary gets the counts and failures)."""
    tasks = plan_tasks(selected, job, options, gain.path)
    todo = [t for t in tasks if not t.is_done()]
    threads = threads_per_task(executor, len(todo))
    todo = [replace(t, threads=threads, gain_token=gain.token) for t in todo]
    results: dict[tuple[str, int], MovieResult] = {}
    for task in tasks:
        if task.is_done():
            results[(task.tilt_series, task.index)] = MovieResult(
                task.tilt_series,
                task.index,
                task.movie_name,
                ok=True,
                skipped=True,
                shifts_px=read_movie_shifts(task.outputs()["rlnMicrographMetadata"]),
            )
    summary.n_skipped = len(tasks) - len(todo)
    job.log(f"{len(tasks)} movies, {summary.n_skipped} already done, {len(todo)} to process")

    def on_result(task: MovieTask, outcome: TaskOutcome[MovieResult]) -> str:
        result = outcome.value or MovieResult(
            task.tilt_series, task.index, task.movie_name, ok=False, error=outcome.error
        )
        if not result.ok and result.error and str(task.movie_path) not in result.error:
            result.error = f"{task.movie_path}: {result.error}"
        results[(task.tilt_series, task.index)] = result
        if result.ok:
            job.log(f"done {task.movie_name} in {result.seconds:.1f} s")
        else:
            job.log(f"FAILED {task.movie_name}: {result.error}")
            bus.emit(Message(level="error", text=f"{task.movie_name}: {result.error}"))
        return task.movie_name

    outcomes = run_job_tasks(
        job,
        run_movie_task,
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
    return tasks, results, outcomes
