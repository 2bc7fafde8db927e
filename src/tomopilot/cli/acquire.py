"""``tomopilot acquire`` and ``tomopilot report``: run a plan on the twin, and judge it."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tomopilot.acquisition.control import EngineControl
from tomopilot.acquisition.engine import AcquisitionEngine
from tomopilot.acquisition.events import (
    BranchAborted,
    ExposureLost,
    ExposureRecorded,
    RunFinished,
    RunStateChanged,
    SetupStep,
    TargetSkipped,
)
from tomopilot.acquisition.output.side_files import detach_run_log
from tomopilot.acquisition.plan.estimate import Timing, estimate_duration
from tomopilot.acquisition.plan.run_config import ResolvedRun, load_acquire_config, resolve_run
from tomopilot.acquisition.plan.sequential_estimate import session_estimate
from tomopilot.acquisition.plan.target_defocus import defocus_per_target
from tomopilot.acquisition.quality import RunQuality, assess_run_dir
from tomopilot.acquisition.run import attach_outputs, close_microscope, start_run
from tomopilot.acquisition.session import (
    assess_session,
    run_configured_session,
    sequential_plans,
)
from tomopilot.acquisition.setup.measure_geo import geo_points_for
from tomopilot.acquisition.strategies import STRATEGIES
from tomopilot.acquisition.strategies.fused_focus import planned_checks
from tomopilot.acquisition.strategies.fused_track import SHOT_DOSE_FRACTION
from tomopilot.acquisition.time_ledger import ACTIVITIES, efficiency
from tomopilot.acquisition.time_levers import levers_for
from tomopilot.archive.live import record_run
from tomopilot.archive.prediction_history import archive_history
from tomopilot.archive.recorder import PENDING_FILE, Recorder
from tomopilot.cli.common import console, err_console, user_errors
from tomopilot.cli.serve import HostOption, PortOption, warn_if_exposed
from tomopilot.core.events import EventBus, Message
from tomopilot.geometry.tilt_predictor import SeriesRecord
from tomopilot.instrument.twin_serialem.truth_report import is_script_run
from tomopilot.instrument.types import LowDoseArea
from tomopilot.store import Store, open_store
from tomopilot.web.monitor_process import MonitorProcess
from tomopilot.web.server import DEFAULT_HOST, DEFAULT_PORT


def _dry_run(config_path: Path, strategy: str | None) -> None:
    config = load_acquire_config(config_path)
    resolved = resolve_run(config)  # feasibility warnings are logged, and shown by the CLI
    settings = resolved.settings
    n_targets = sum(not t.skip for t in resolved.targets)
    levels = defocus_per_target(
        settings, len(resolved.targets), {i for i, t in enumerate(resolved.targets) if t.skip}
    )
    table = Table(
        title=(
            f"{config.output.root}: {len(resolved.targets)} targets, "
            f"strategy {strategy or config.strategy}"
        )
    )
    for column in ("target", "SSX (µm)", "SSY (µm)", "defocus (µm)", "skip"):
        table.add_column(column, justify="right")
    for number, (target, level) in enumerate(zip(resolved.targets, levels, strict=True), start=1):
        table.add_row(
            str(number),
            f"{target.ss_x_um:.3f}",
            f"{target.ss_y_um:.3f}",
            "-" if level is None else f"{level:.2f}",
            "yes" if target.skip else "",
        )
    console.print(table)
    steps = resolved.scheme.steps()
    order = ", ".join(f"{s.tilt_deg:g}" for s in steps[:15]) + (", …" if len(steps) > 15 else "")
    console.print(f"tilt order ({len(steps)} tilts, {settings.tilt_scheme}): {order}")
    for name, value in resolved.overrides.items():
        console.print(
            f"override from {resolved.override_sources.get(name, 'targets file')}: {name} = {value}"
        )
    record_s = config.microscope.twin.presets.get(LowDoseArea.RECORD).exposure_s
    # sequential's tracking Views (Leginon's tracking preset): one before every Record (the
    # default), or (auto) one at each target's start tilt, more only where Records cannot track
    tracking = config.sequential.track_with_view
    sequential = (strategy or config.strategy) == "sequential"
    views_per_target = 0 if not sequential or tracking is False else 1
    if sequential and tracking is True:
        views_per_target = len(steps)
    estimate = estimate_duration(
        settings,
        resolved.scheme,
        n_targets,
        Timing.from_twin(config.microscope.twin),
        n_geo_points=len(geo_points_for(settings, resolved.geo_points_um)),
        levers=levers_for(strategy or config.strategy, settings),
        shots_per_tilt=int((strategy or config.strategy) == "fused" and settings.track_spot),
        shot_s=SHOT_DOSE_FRACTION * record_s,
        approach=resolved.area_stage_um != (0.0, 0.0),  # the twin's stage starts at 0, 0
        frames=config.save_frames,
        realign=bool(resolved.targets and resolved.targets[0].view_file),
        # fused's wide View of target 1; sequential's View before the backlash release of
        # each target (a second one only where the start Preview cannot be registered)
        start_views=(
            n_targets
            if sequential and config.sequential.backlash_release
            else int((strategy or config.strategy) == "fused")
        ),
        focus_checks=(
            planned_checks(resolved.scheme.steps())
            if (strategy or config.strategy) == "fused" and settings.focus_check
            else 0
        ),
        tracking_views=views_per_target * n_targets,
    )
    if sequential:  # an area per target, with Leginon's steps around every series
        estimate = session_estimate(config, resolved, levers_for("sequential", settings))
    if views_per_target:
        which = (
            "one before every Record"
            if tracking is True
            else f"each target's start tilt; up to {(len(steps) - 1) * n_targets} more where "
            "Records find no tracking peak"
        )
        console.print(
            f"tracking Views: {views_per_target * n_targets}, "
            f"{estimate.tracking_views_s:.1f} s ({which})"
        )
    if (strategy or config.strategy) == "pace":
        console.print(
            "not in the estimate: each time target 1's Record loses it, a View finds it and, "
            f"if it missed by over a quarter field, a retake: up to {estimate.per_loss_s:.1f} s"
        )
    console.print(
        f"estimated microscope time: {estimate.total_s / 60:.1f} min "
        f"(set-up {estimate.setup_s / 60:.1f}, tilting {estimate.tilting_s / 60:.1f}, "
        f"exposures {estimate.exposures_s / 60:.1f}); "
        f"{estimate.minutes_per_tilt_series:.1f} min per tilt series"
    )


def _start_monitor(
    now_s: Callable[[], float],
    bus: EventBus,
    control: EngineControl,
    store: Store,
    host: str,
    port: int,
) -> MonitorProcess:
    def notify(action: str, detail: dict[str, Any]) -> None:
        if action == "skipped":
            bus.emit(
                TargetSkipped(
                    time_s=now_s(), target=int(detail["target"]), reason="from the web monitor"
                )
            )
        else:
            bus.emit(RunStateChanged(time_s=now_s(), state=action))

    monitor = MonitorProcess(store.url, control, host=host, port=port, notify=notify).start()
    warn_if_exposed(host)
    console.print(
        f"web monitor: {monitor.url}/  control token: [bold]{monitor.token}[/] "
        "(send as 'Authorization: Bearer TOKEN')"
    )
    return monitor


def _archive_seed(
    engine: AcquisitionEngine, resolved: ResolvedRun, store: Store | None
) -> list[SeriesRecord]:
    """Earlier series of the archive for a sequential session's predictor (none without one);
    the run's own series (archived before a kill) are not earlier series."""
    settings = resolved.config.sequential
    if store is None or not settings.seed_from_archive:
        return []
    record = engine.scope.optics.preset(LowDoseArea.RECORD)
    return archive_history(
        store,
        pixel_size_a=record.pixel_size_a,
        max_series=settings.max_series,
        exclude_run_dir=Path(engine.plan.run_dir),
    )


def _close_archive(recorder: Recorder | None, store: Store | None, run_dir: Path) -> None:
    if recorder is not None and not recorder.close():
        err_console.print(
            f"[yellow]the archive database stayed unreachable ({recorder.last_error}); the events "
            f"not recorded are kept in {run_dir / PENDING_FILE}: "
            f"`tomopilot archive import {run_dir}` records them later[/]"
        )
    if store is not None:
        store.close()


def quality_table(quality: RunQuality, title: str) -> Table:
    """The ground-truth quality of a run as a table."""
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        caption=(
            "tracking: true distance of each Record from its target; defocus: true − intended; "
            "stray dose: from other targets' beams"
        ),
    )
    for column in (
        "target",
        "images",
        "track\nRMS nm",
        "track\nmax nm",
        "within\n50 nm",
        "defocus\nRMS µm",
        "dose\ne/Å²",
        "stray\ne/Å²",
        "time\nmin/TS",
    ):
        table.add_column(column, justify="right", no_wrap=True)
    for t in quality.targets:
        table.add_row(
            str(t.target),
            str(t.n_exposures),
            f"{t.tracking_rms_nm:.0f}",
            f"{t.tracking_max_nm:.0f}",
            f"{100 * t.within_50nm:.0f}%",
            f"{t.defocus_rms_um:.2f}",
            f"{t.dose_e_a2:.0f}",
            f"{t.unintended_dose_e_a2:.1f}",
            f"{t.minutes:.1f}",
        )
    pooled = quality.pooled()
    table.add_row(
        "all",
        str(quality.n_exposures),
        f"{pooled['tracking_rms_nm']:.0f}",
        f"{pooled['tracking_max_nm']:.0f}",
        f"{100 * pooled['within_50nm']:.0f}%",
        f"{pooled['defocus_rms_um']:.2f}",
        "",
        "",
        f"{pooled['minutes_per_tilt_series']:.1f}",
        style="bold",
    )
    return table


def ledger_table(seconds: dict[str, float], title: str) -> Table:
    """Microscope time by activity, from the engine's own clock, with the efficiency."""
    total = sum(seconds.values())
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        caption=(
            f"efficiency {efficiency(seconds):.2f}: (Record exposure + stage tilting) "
            "over the time used"
        ),
    )
    for column in ("activity", "min", "share"):
        table.add_column(column, justify="right" if column != "activity" else "left")
    order = [a for a in ACTIVITIES if a in seconds] + [a for a in seconds if a not in ACTIVITIES]
    for activity in order:
        value = seconds[activity]
        if value <= 0:
            continue
        table.add_row(
            activity.replace("_", " "), f"{value / 60:.1f}", f"{100 * value / total:.0f}%"
        )
    table.add_row("all", f"{total / 60:.1f}", "100%", style="bold")
    return table


def acquire_command(
    config: Annotated[
        Path, typer.Argument(help="Acquisition configuration (YAML).", exists=True, dir_okay=False)
    ],
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the plan and the estimated time; expose nothing."),
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue a run that stopped (crash or abort).")
    ] = False,
    strategy: Annotated[
        str | None,
        typer.Option("--strategy", help=f"Override the strategy: {', '.join(STRATEGIES)}."),
    ] = None,
    report: Annotated[
        bool, typer.Option(help="Print the ground-truth report at the end (twin).")
    ] = True,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Archive database URL (postgresql://user@host/db) or SQLite file; "
            "default: tomopilot_archive.sqlite in the run folder.",
        ),
    ] = None,
    archive: Annotated[
        bool, typer.Option(help="Record the run in the session archive as it goes.")
    ] = True,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve", help="Run the web monitor beside the acquisition (prints a control token)."
        ),
    ] = False,
    host: HostOption = DEFAULT_HOST,
    port: PortOption = DEFAULT_PORT,
) -> None:
    """Acquire the tilt series of an area (on the digital twin by default)."""
    with user_errors():
        if strategy is not None and strategy not in STRATEGIES:
            raise typer.BadParameter(
                f"choose one of {', '.join(STRATEGIES)}", param_hint="--strategy"
            )
        if dry_run:
            _dry_run(config, strategy)
            return
        settings_config = load_acquire_config(config)
        bus = EventBus()
        control = EngineControl()
        engine, resolved = start_run(
            settings_config, strategy=strategy, events=bus, control=control
        )
        handler = attach_outputs(engine, resolved)
        store: Store | None = None
        recorder: Recorder | None = None
        if archive or serve:
            store = open_store(db if db is not None else engine.plan.run_dir)
            recorder = record_run(engine, resolved, store)
        monitor = (
            _start_monitor(engine.scope.clock.now_s, bus, control, store, host, port)
            if (serve and store is not None)
            else None
        )
        total = resolved.scheme.n_tilts * sum(not t.skip for t in resolved.targets)
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
        )
        start_s = engine.scope.clock.now_s()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            err_console.print(
                "[yellow]stopping after this exposure; continue later with --resume[/]"
            )
            control.abort()

        previous = signal.signal(signal.SIGINT, on_signal)
        try:
            with Progress(*columns, console=console, transient=False) as progress:
                task = progress.add_task("set-up", total=total, eta="")
                bus.subscribe(
                    SetupStep, lambda e: progress.update(task, description=f"set-up: {e.step}")
                )

                def on_exposure(e: ExposureRecorded) -> None:
                    done = progress.tasks[0].completed + 1
                    spent = e.time_s - start_s
                    eta_min = spent / done * max(0, total - done) / 60 if done else 0.0
                    progress.update(
                        task,
                        advance=1,
                        description=(
                            f"{resolved.config.output.root} target {e.target} at {e.tilt_deg:+.0f}°"
                        ),
                        eta=f"ETA {eta_min:.0f} min (microscope)",
                    )

                bus.subscribe(ExposureRecorded, on_exposure)
                bus.subscribe(
                    BranchAborted,
                    lambda e: progress.console.print(
                        f"[yellow]target {e.target}: branch {e.branch} ends at "
                        f"{e.tilt_deg:g}° ({e.reason})[/]"
                    ),
                )
                bus.subscribe(
                    ExposureLost,
                    lambda e: progress.console.print(
                        f"[red]target {e.target} at {e.tilt_deg:g}°: exposure lost ({e.reason})[/]"
                    ),
                )
                bus.subscribe(
                    RunFinished, lambda e: progress.update(task, description=f"run {e.status}")
                )
                bus.subscribe(
                    Message,
                    lambda e: progress.console.print(
                        f"[{'yellow' if e.level == 'warning' else 'dim'}]{e.text}[/]"
                    ),
                )
                if engine.plan.strategy == "sequential":  # one area per target (Leginon)
                    summary = run_configured_session(
                        engine,
                        resolved,
                        events=bus,
                        control=control,
                        resume=resume,
                        seed=_archive_seed(engine, resolved, store),
                    )
                else:
                    summary = engine.run(resume=resume)
        finally:
            signal.signal(signal.SIGINT, previous)
            detach_run_log(handler)
            for restored in close_microscope(engine.scope):
                console.print(f"microscope: {restored}")
            if monitor is not None:
                monitor.stop()
                shown = engine.plan.run_dir if db is None else "URL"
                console.print(
                    f"web monitor stopped; `tomopilot serve --db {shown}` shows the run again"
                )
            _close_archive(recorder, store, engine.plan.run_dir)
        console.print(
            f"{summary.status}: {summary.n_exposures} exposures, {summary.lost} lost, "
            f"{summary.microscope_s / 60:.1f} min of microscope time; "
            f"files in {engine.plan.run_dir}"
        )
        if summary.status == "aborted":
            console.print(f"continue with: tomopilot acquire {config} --resume")
        if summary.time_by_activity_s:
            console.print(ledger_table(summary.time_by_activity_s, "microscope time"))
        micro = settings_config.microscope
        on_twin = micro.backend == "twin" or micro.serialem.module == "twin"
        if (
            report
            and summary.status == "finished"
            and on_twin
            and engine.plan.strategy == "sequential"
        ):
            plans = sequential_plans(resolved, engine.plan)
            quality = assess_session(engine.scope, plans, resolved)
            console.print(quality_table(quality, "ground truth, one area per target"))
        elif report and summary.status == "finished" and on_twin:
            console.print(quality_table(assess_run_dir(engine.plan.run_dir), "ground truth"))


def report_command(
    run_dir: Annotated[
        Path,
        typer.Argument(
            help="The run folder (output.dir of the configuration).", exists=True, file_okay=False
        ),
    ],
    per_image: Annotated[
        bool, typer.Option("--per-image", help="Script runs: one line per image too.")
    ] = False,
) -> None:
    """Judge a twin run against the ground truth: tracking, defocus, dose, time per tilt series.

    A ``tomopilot sem-run`` folder gets the ground truth of every image its script saved.
    """
    with user_errors():
        if is_script_run(run_dir):
            from tomopilot.cli.sem_run import print_script_report

            print_script_report(run_dir, per_image=per_image)
            return
        quality = assess_run_dir(run_dir)
        console.print(quality_table(quality, f"{run_dir}: ground truth"))
        if quality.time_ledger_s:
            console.print(ledger_table(quality.time_ledger_s, "microscope time (engine's clock)"))
        else:
            console.print("[yellow]no time ledger: the run did not finish[/]")


def register(app: typer.Typer) -> None:
    """Add ``acquire`` and ``report`` to the main command."""
    app.command("acquire")(acquire_command)
    app.command("report")(report_command)
