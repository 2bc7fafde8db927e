"""``tomopilot preprocess``: RELION 5-style motion correction and CTF estimation of tilt movies.

Both commands write RELION job folders (``MotionCorr/jobNNN``, ``CtfFind/jobNNN``) in the project
directory, run one task per tilt (on threads of this process by default; ``--scheduler dask``
for a Dask LocalCluster, ``--scheduler tcp://host:8786`` for a running Dask scheduler, or
``--scheduler serial``), skip what a previous run finished,
and honour RELION's ``--pipeline_control`` contract so they can run as External jobs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from tomopilot.cli.common import user_errors
from tomopilot.core.config import validation_error_to_config_error
from tomopilot.core.events import EventBus, Message
from tomopilot.core.events import Progress as ProgressEvent
from tomopilot.io.star import TiltSeriesSet
from tomopilot.processing.ctf import CtfOptions, run_ctf
from tomopilot.processing.executor import (
    DaskExecutor,
    Executor,
    SerialExecutor,
    ThreadExecutor,
)
from tomopilot.processing.inputs import ImportOptics, load_tilt_series
from tomopilot.processing.motioncorr import MotionCorrOptions, run_motioncorr
from tomopilot.processing.relion_job import JobStatus, RelionJob

preprocess_app = typer.Typer(
    name="preprocess",
    help="Motion correction and CTF estimation of tilt-series movies, the RELION 5 way.",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True)
_FINGERPRINT = "tomopilot_job.json"
_MOVIE_BYTES = 3 * 1024**3  # a generous peak per 4K movie task
_PROGRESS_LABELS = {"MotionCorr": "Motion correction", "CtfFind": "CTF estimation"}

Project = Annotated[
    Path, typer.Option("--project", help="RELION project directory (paths are relative to it).")
]
Output = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Job folder (default: reuse a matching job or a new one)."),
]
PipelineControl = Annotated[
    Path | None,
    typer.Option("--pipeline_control", "--pipeline-control", help="RELION job folder (External)."),
]
Only = Annotated[
    list[str] | None, typer.Option("--only", help="Process only this tilt series (repeatable).")
]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Show what would be done; write nothing.")]
Scheduler = Annotated[
    str,
    typer.Option(
        "--scheduler",
        help="'local' (threads of this process, one movie per core; a lone movie gets every "
        "core), 'dask' (a Dask LocalCluster of worker processes), 'serial', or the address of "
        "a running Dask scheduler (tcp://host:8786; see docs/preprocessing.md for Slurm).",
    ),
]
Workers = Annotated[
    int | None, typer.Option("--workers", help="Movies at once ('local') or LocalCluster workers.")
]


@contextmanager
def _executor(scheduler: str, workers: int | None) -> Iterator[Executor]:
    if scheduler == "serial":
        with SerialExecutor() as serial:
            yield serial
        return
    if scheduler == "local":
        with ThreadExecutor(workers, memory_per_task_bytes=_MOVIE_BYTES) as threads:
            yield threads
        return
    address = None if scheduler == "dask" else scheduler
    with DaskExecutor(address, n_workers=workers, memory_per_task_bytes=_MOVIE_BYTES) as dask:
        yield dask


def _job(
    project: Path,
    job_type: str,
    fingerprint: dict[str, Any],
    output: Path | None,
    pipeline_control: Path | None,
    dry_run: bool,
) -> RelionJob:
    """The job folder: the one named, else a previous job with the same inputs, else a new one."""
    folder = pipeline_control or output
    if folder is not None:
        return RelionJob.at(folder, project if pipeline_control is None else None)
    candidates = sorted((project / job_type).glob("job*/" + _FINGERPRINT), reverse=True)
    for path in candidates:
        try:
            if json.loads(path.read_text()) == fingerprint:
                return RelionJob.at(path.parent, project)
        except (OSError, ValueError):
            continue
    if dry_run:
        from tomopilot.processing.relion_job import next_job_number

        folder = project / job_type / f"job{next_job_number(project):03d}"
        return RelionJob(folder, project)
    return RelionJob.create(project, job_type)


def _options(model: type[MotionCorrOptions] | type[CtfOptions], values: dict[str, Any]) -> Any:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise validation_error_to_config_error(exc) from None


def _run_with_progress(label: str, run: Any) -> Any:
    bus = EventBus()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[detail]}"),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(label, total=None, detail="")

        def on_progress(event: ProgressEvent) -> None:
            progress.update(task, completed=event.done, total=event.total, detail=event.detail)

        def on_message(event: Message) -> None:
            style = "red" if event.level == "error" else "dim"
            progress.console.print(f"[{style}]{event.text}[/]")

        bus.subscribe(ProgressEvent, on_progress)
        bus.subscribe(Message, on_message)
        return run(bus)


@dataclass(frozen=True)
class _Placement:
    """Where a job runs and what of it: the options both commands share."""

    output: Path | None
    pipeline_control: Path | None
    only: list[str] | None
    dry_run: bool
    scheduler: str
    workers: int | None


def _run_job(
    run: Callable[..., Any],
    job_type: str,
    source: object,
    tilt_series: TiltSeriesSet,
    project: Path,
    options: MotionCorrOptions | CtfOptions,
    where: _Placement,
) -> tuple[RelionJob, Any]:
    """Find or make the job folder, record the inputs there, and run ``run`` with a progress bar.

    ``run`` is :func:`run_motioncorr` or :func:`run_ctf`; returns the job and its summary.
    """
    dry_run = where.dry_run
    fingerprint = {"input": str(source), "options": options.model_dump(mode="json")}
    job = _job(project, job_type, fingerprint, where.output, where.pipeline_control, dry_run)
    if not dry_run:
        (job.directory / _FINGERPRINT).write_text(json.dumps(fingerprint))
    with _executor("serial" if dry_run else where.scheduler, where.workers) as executor:
        summary = _run_with_progress(
            _PROGRESS_LABELS[job_type],
            lambda bus: run(
                tilt_series,
                job,
                options,
                executor=executor,
                bus=bus,
                only=where.only,
                dry_run=dry_run,
                argv=sys.argv,
            ),
        )
    return job, summary


def _dry_run_exit(n_missing: int, noun: str) -> None:
    """A dry run whose inputs are missing fails (exit status 1), saying so."""
    if n_missing:
        err_console.print(
            f"[bold red]error:[/] {n_missing} input {noun}(s) missing: the job would fail",
            highlight=False,
        )
        raise typer.Exit(1)


def _finish(status: JobStatus | None, failures: int, job: RelionJob, what: str) -> None:
    if status is JobStatus.SUCCESS:
        console.print(f"[green]done[/]: {job.directory}")
        return
    if status is JobStatus.ABORTED:
        err_console.print(f"[yellow]aborted[/]: {job.directory}")
        raise typer.Exit(2)
    err_console.print(
        f"[red]{failures} {what} failed[/] (see {job.log_path}); the others are done. "
        "Run the same command again to retry the failed ones."
    )
    raise typer.Exit(1)


@preprocess_app.command("motioncorr")
def motioncorr(
    source: Annotated[
        str, typer.Argument(help="tilt_series.star (RELION 5 import), or mdoc file(s)/folder/glob.")
    ],
    project: Project = Path("."),
    output: Output = None,
    pipeline_control: PipelineControl = None,
    frames_dir: Annotated[
        Path | None, typer.Option("--frames-dir", help="mdoc input: folder of the movies.")
    ] = None,
    pixel_size_a: Annotated[
        float | None, typer.Option("--pixel-size", help="mdoc input: movie pixel size (Å).")
    ] = None,
    voltage_kv: Annotated[float | None, typer.Option("--voltage", help="mdoc input: kV.")] = None,
    cs_mm: Annotated[float, typer.Option("--cs", help="mdoc input: Cs (mm).")] = 2.7,
    amplitude_contrast: Annotated[float, typer.Option("--q0", help="mdoc input: Q0.")] = 0.1,
    hand: Annotated[int, typer.Option("--hand", help="mdoc input: rlnTomoHand (−1 or 1).")] = -1,
    tilt_axis_deg: Annotated[
        float | None, typer.Option("--tilt-axis", help="mdoc input: nominal tilt axis (°).")
    ] = None,
    dose_per_tilt: Annotated[
        float | None, typer.Option("--dose-per-tilt", help="Dose of each tilt (e/Å²).")
    ] = None,
    eer_fractionation: Annotated[int, typer.Option("--eer-fractionation")] = 32,
    eer_upsampling: Annotated[int, typer.Option("--eer-upsampling", help="1 4K, 2 8K")] = 1,
    float16: Annotated[bool, typer.Option("--float16/--no-float16")] = True,
    even_odd: Annotated[bool, typer.Option("--even-odd/--no-even-odd")] = False,
    power_spectra: Annotated[bool, typer.Option("--power-spectra/--no-power-spectra")] = True,
    ps_every: Annotated[int, typer.Option("--ps-every", help="Frames per spectrum block.")] = 4,
    bfactor: Annotated[float, typer.Option("--bfactor", help="B-factor (pixel²).")] = 150.0,
    patches: Annotated[tuple[int, int], typer.Option("--patches", help="Patches X Y.")] = (1, 1),
    group_frames: Annotated[int, typer.Option("--group-frames")] = 1,
    bin_factor: Annotated[float, typer.Option("--bin", help="Binning (Fourier crop).")] = 1.0,
    gain: Annotated[Path | None, typer.Option("--gain", help="Gain reference.")] = None,
    gain_rot: Annotated[int, typer.Option("--gain-rot", help="0-3 × 90° clockwise.")] = 0,
    gain_flip: Annotated[int, typer.Option("--gain-flip", help="1 up-down, 2 left-right.")] = 0,
    defect_file: Annotated[
        Path | None, typer.Option("--defect-file", help="x y w h text, or a defect map.")
    ] = None,
    hot_pixels: Annotated[bool, typer.Option("--hot-pixels/--no-hot-pixels")] = True,
    dose_weighting: Annotated[bool, typer.Option("--dose-weighting/--no-dose-weighting")] = False,
    save_no_dw: Annotated[bool, typer.Option("--save-no-dw")] = False,
    weighting: Annotated[
        str, typer.Option("--weighting", help="optimal (SSNR) or bfactor (RELION's).")
    ] = "optimal",
    smooth: Annotated[
        bool, typer.Option("--smooth/--no-smooth", help="Smooth trajectories.")
    ] = True,
    only: Only = None,
    dry_run: DryRun = False,
    scheduler: Scheduler = "local",
    workers: Workers = None,
) -> None:
    """Motion-correct tilt movies into a RELION MotionCorr job folder."""
    with user_errors():
        options = _options(
            MotionCorrOptions,
            {
                "eer_fractionation": eer_fractionation,
                "eer_upsampling": eer_upsampling,
                "float16": float16,
                "even_odd": even_odd,
                "power_spectra": power_spectra,
                "ps_every_n_frames": ps_every,
                "bfactor_px2": bfactor,
                "patches": patches,
                "group_frames": group_frames,
                "bin_factor": bin_factor,
                "gain_path": gain.resolve() if gain else None,
                "gain_rotation": gain_rot,
                "gain_flip": gain_flip,
                "defect_path": defect_file.resolve() if defect_file else None,
                "remove_hot_pixels": hot_pixels,
                "dose_weighting": dose_weighting,
                "dose_per_tilt_e_a2": dose_per_tilt,
                "save_no_dw": save_no_dw,
                "weighting": weighting,
                "smooth_trajectory": smooth,
            },
        )
        optics = ImportOptics(
            voltage_kv=voltage_kv,
            pixel_size_a=pixel_size_a,
            cs_mm=cs_mm,
            amplitude_contrast=amplitude_contrast,
            hand=hand,
            tilt_axis_deg=tilt_axis_deg,
            dose_per_tilt_e_a2=dose_per_tilt,
        )
        project = project.resolve()
        tilt_series, project = load_tilt_series(
            source, project_dir=project, frames_dir=frames_dir, optics=optics
        )
        where = _Placement(output, pipeline_control, only, dry_run, scheduler, workers)
        job, summary = _run_job(
            run_motioncorr, "MotionCorr", source, tilt_series, project, options, where
        )
    if dry_run:
        _dry_run_exit(summary.n_missing, "movie")
        return
    console.print(
        f"{summary.n_movies} movies: {summary.n_processed} corrected, "
        f"{summary.n_skipped} already done, {summary.n_failed} failed"
    )
    _finish(summary.status, summary.n_failed, job, "movies")


@preprocess_app.command("ctf")
def ctf(
    source: Annotated[Path, typer.Argument(help="A MotionCorr job's corrected_tilt_series.star.")],
    project: Project = Path("."),
    output: Output = None,
    pipeline_control: PipelineControl = None,
    use: Annotated[str, typer.Option("--use", help="auto, power_spectra or images.")] = "auto",
    tilt_aware: Annotated[
        bool, typer.Option("--tilt-aware/--no-tilt-aware", help="Fit the defocus gradient.")
    ] = False,
    tile_px: Annotated[int, typer.Option("--tile", help="Tile size (px) of image spectra.")] = 512,
    min_res: Annotated[float, typer.Option("--min-res", help="Lowest resolution (Å).")] = 40.0,
    max_res: Annotated[float, typer.Option("--max-res", help="Highest resolution (Å).")] = 5.0,
    defocus_min: Annotated[float, typer.Option("--defocus-min", help="µm underfocus.")] = 0.5,
    defocus_max: Annotated[float, typer.Option("--defocus-max", help="µm underfocus.")] = 8.0,
    search: Annotated[
        float, typer.Option("--search", help="± µm around the nominal defocus (0 = off).")
    ] = 2.0,
    only: Only = None,
    dry_run: DryRun = False,
    scheduler: Scheduler = "local",
    workers: Workers = None,
) -> None:
    """Estimate defocus U/V, astigmatism, fit resolution and figure of merit per tilt."""
    with user_errors():
        options = _options(
            CtfOptions,
            {
                "source": use,
                "tilt_aware": tilt_aware,
                "tile_px": tile_px,
                "min_resolution_a": min_res,
                "max_resolution_a": max_res,
                "defocus_min_um": defocus_min,
                "defocus_max_um": defocus_max,
                "nominal_search_um": search,
            },
        )
        project = project.resolve()
        tilt_series, project = load_tilt_series(source, project_dir=project)
        where = _Placement(output, pipeline_control, only, dry_run, scheduler, workers)
        job, summary = _run_job(run_ctf, "CtfFind", source, tilt_series, project, options, where)
    if dry_run:
        _dry_run_exit(summary.n_missing, "image")
        return
    console.print(
        f"{summary.n_tilts} tilts: {summary.n_processed} fitted, {summary.n_skipped} already "
        f"done, {len(summary.failures)} failed"
    )
    _finish(summary.status, len(summary.failures), job, "tilts")
