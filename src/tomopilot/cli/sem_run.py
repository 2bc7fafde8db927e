"""``tomopilot sem-run``: run a SerialEM Python script unchanged against the digital twin.

``import serialem`` in the script finds the twin-backed module. Everything the script writes goes
to the run folder (its working directory), with the twin's command log and the module's side
record, so that ``tomopilot report <folder>`` can show the ground truth of every image the script
took. A script that fails ends the run with the script's own traceback; the files it wrote so far
stay as they are.
"""

from __future__ import annotations

import math
import operator
import os
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, SupportsIndex

import typer
import yaml
from rich import box
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from tomopilot.cli.common import console, err_console, user_errors
from tomopilot.core.clock import Clock
from tomopilot.core.config import load_config, write_resolved_config
from tomopilot.core.errors import ConfigError
from tomopilot.instrument.events import ExposureTaken
from tomopilot.instrument.twin import TwinConfig, TwinMicroscope
from tomopilot.instrument.twin_serialem import (
    SEMexited,
    coverage,
    finish,
    installed,
    make_module,
)
from tomopilot.instrument.twin_serialem.acquire_at_items import acquire_at_items as run_at_items
from tomopilot.instrument.twin_serialem.navigator import Navigator
from tomopilot.instrument.twin_serialem.truth_report import (
    COMMAND_LOG_FILE,
    TWIN_CONFIG_FILE,
    ScriptTruth,
    assess_script_run,
    read_run_summary,
    write_run_summary,
)

MODULE_DIR = Path(__file__).resolve().parents[1]
UNSETTLED_WARN_NM = 0.5  # settling motion during an exposure worth telling the script author


def load_twin_config(path: Path) -> TwinConfig:
    """A twin configuration, or the twin of an acquisition configuration (``microscope.twin``)."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", path=path) from None
    if isinstance(raw, dict) and "microscope" in raw and "twin" in (raw["microscope"] or {}):
        from tomopilot.acquisition.plan.run_config import load_acquire_config

        return load_acquire_config(path).microscope.twin
    return load_config(path, TwinConfig)


def load_answers(path: Path | None) -> dict[str, object]:
    """Dialog answers: a mapping of prompt text (or part of it) to the answer."""
    if path is None:
        return {}
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", path=path) from None
    if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
        raise ConfigError("answers must be a mapping of prompt text to answer", path=path)
    return dict(raw)


def script_traceback(exc: BaseException, script: Path) -> str:
    """The traceback of an exception with only the frames outside tomopilot (the script's)."""
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if frame.filename == str(script)
        or not (
            Path(frame.filename).resolve().is_relative_to(MODULE_DIR) or frame.filename == __file__
        )
    ]
    text = "Traceback (most recent call last):\n" + "".join(traceback.format_list(frames))
    return text + "".join(traceback.format_exception_only(type(exc), exc))


@contextmanager
def _script_environment(script: Path, run_dir: Path, clock: Clock) -> Iterator[None]:
    """The script's working directory, argv and import path; its ``time.sleep`` waits on the
    microscope's clock (other threads keep the real one)."""
    old_cwd, old_argv, old_path = Path.cwd(), sys.argv[:], sys.path[:]
    real_sleep = time.sleep
    main = threading.get_ident()

    def sleep(seconds: float | SupportsIndex) -> None:
        if threading.get_ident() == main:
            clock.sleep(seconds if isinstance(seconds, float) else float(operator.index(seconds)))
        else:
            real_sleep(seconds)

    os.chdir(run_dir)
    sys.argv = [str(script)]
    sys.path.insert(0, str(script.parent))
    time.sleep = sleep
    try:
        yield
    finally:
        time.sleep = real_sleep
        os.chdir(old_cwd)
        sys.argv, sys.path[:] = old_argv, old_path


def truth_table(result: ScriptTruth, title: str) -> Table:
    """The ground truth of a script run, one row per image file."""
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        caption=(
            "track: true distance of the intended point (Navigator item, or the first image's "
            "centre) from the beam centre; defocus: true − target"
        ),
    )
    for column in (
        "file",
        "intended point",
        "images",
        "track\nRMS nm",
        "track\nmax nm",
        "defocus\nRMS µm",
        "dose at point\ne/Å²",
    ):
        table.add_column(column, justify="right", no_wrap=True)
    for one in result.series:
        table.add_row(
            one.file,
            one.intended,
            str(len(one.images)),
            f"{one.tracking_rms_nm:.0f}",
            f"{one.tracking_max_nm:.0f}",
            "-" if math.isnan(one.defocus_rms_um) else f"{one.defocus_rms_um:.2f}",
            f"{one.dose_at_point_e_a2:.1f}",
        )
    return table


def print_script_report(run_dir: Path, *, per_image: bool = False) -> None:
    """Print the ground-truth report of a sem-run folder."""
    result = assess_script_run(run_dir)
    summary = read_run_summary(run_dir)
    if summary is not None:
        console.print(
            f"{Path(str(summary['script'])).name}: {summary['status']} "
            f"({sum(summary['commands'].values())} commands)"
        )
    console.print(truth_table(result, f"{run_dir}: ground truth of the script's images"))
    if per_image:
        for one in result.series:
            table = Table(title=one.file, box=box.SIMPLE_HEAD)
            for column in (
                "z",
                "exposure",
                "area",
                "tilt °",
                "dx nm",
                "dy nm",
                "defocus µm",
                "target µm",
                "dose e/Å²",
            ):
                table.add_column(column, justify="right")
            for image in one.images:
                table.add_row(
                    str(image.section),
                    str(image.exposure_id),
                    image.area,
                    f"{image.tilt_deg:.1f}",
                    f"{image.offset_nm[0]:.0f}",
                    f"{image.offset_nm[1]:.0f}",
                    f"{image.true_defocus_um:.2f}",
                    f"{image.target_defocus_um:.2f}",
                    f"{image.dose_e_a2:.2f}",
                )
            console.print(table)
    unsettled = [i.settling_blur_nm for one in result.series for i in one.images]
    unsettled = [b for b in unsettled if b >= UNSETTLED_WARN_NM]
    if unsettled:
        console.print(
            f"[yellow]{len(unsettled)} saved image(s) taken before an image shift had settled "
            f"(the beam moved up to {max(unsettled):.1f} nm during the exposure): give "
            "SetImageShift / ImageShiftBy... the settling multiplier #D (e.g. 1), or wait, "
            "before the shot[/yellow]"
        )
    doses = ", ".join(f"{area} {dose:.1f}" for area, dose in sorted(result.dose_by_area.items()))
    console.print(
        f"{result.n_exposures} exposures in {result.microscope_s / 60:.1f} min of microscope "
        f"time; dose given per area (e/Å²): {doses}"
    )


def sem_run_command(
    script: Annotated[
        Path, typer.Argument(help="The SerialEM Python script.", exists=True, dir_okay=False)
    ],
    config: Annotated[
        Path,
        typer.Option("--config", help="Twin configuration (YAML).", exists=True, dir_okay=False),
    ],
    answers: Annotated[
        Path | None,
        typer.Option(
            "--answers",
            help="Answers to the script's dialogs (YAML: prompt: answer).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Run folder (default: semrun_<script name>)."),
    ] = None,
    nav: Annotated[
        Path | None,
        typer.Option(
            "--nav",
            help="A Navigator file to open first (saved into the run folder).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    acquire_at_items: Annotated[
        bool,
        typer.Option(
            "--acquire-at-items",
            help="Run the script once at every Navigator item marked Acquire (needs --nav).",
        ),
    ] = False,
    report: Annotated[bool, typer.Option(help="Print the ground-truth report at the end.")] = True,
) -> None:
    """Run a SerialEM Python script unchanged against the twin (`import serialem` is the twin)."""
    if acquire_at_items and nav is None:
        raise typer.BadParameter("needs a Navigator file (--nav)", param_hint="--acquire-at-items")
    with user_errors():
        navigator = Navigator()
        if nav is not None:
            navigator.load(nav.resolve())  # map files are found where the .nav says
        twin_config = load_twin_config(config)
        replies = load_answers(answers)
        run_dir = (out or Path(f"semrun_{script.stem}")).resolve()
        if (run_dir / TWIN_CONFIG_FILE).exists() or (run_dir / COMMAND_LOG_FILE).exists():
            raise FileExistsError(f"{run_dir} already holds a script run; choose another --out")
        run_dir.mkdir(parents=True, exist_ok=True)
        write_resolved_config(twin_config, run_dir / TWIN_CONFIG_FILE)
        shutil.copyfile(script, run_dir / f"script_{script.name}")
        scope = TwinMicroscope(twin_config, command_log=run_dir / COMMAND_LOG_FILE)
        source = script.read_text()
        code = compile(source, str(script.resolve()), "exec")
    status = "finished"
    failure: BaseException | None = None
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(f"{script.name}: starting", total=None)
        counts = {"exposures": 0}

        def on_log(line: str) -> None:
            progress.console.print(Text(line, style="dim"))

        def on_exposure(event: ExposureTaken) -> None:
            counts["exposures"] += 1
            progress.update(
                task,
                description=(
                    f"{script.name}: {counts['exposures']} exposures, last {event.area}, "
                    f"{scope.clock.now_s() / 60:.1f} min of microscope time"
                ),
            )

        scope.events.subscribe(ExposureTaken, on_exposure)
        module = make_module(
            scope,
            directory=run_dir,
            answers=replies,
            on_log=on_log,
            record_dir=run_dir,
            properties={
                "Voltage": twin_config.optics.voltage_kv,
                "Cs": twin_config.optics.cs_mm,
                "AmplitudeContrast": twin_config.optics.amplitude_contrast,
            },
        )
        if nav is not None:
            navigator.path = run_dir / nav.name  # SaveNavigator writes the run folder's copy
            module.session.extensions["navigator"] = navigator

        def run_once() -> None:
            namespace: dict[str, Any] = {"__name__": "__main__", "__file__": str(script.resolve())}
            exec(code, namespace)

        try:
            with installed(module), _script_environment(script.resolve(), run_dir, scope.clock):
                if acquire_at_items:
                    done = run_at_items(module, run_once)
                    status = f"finished at {len(done.acquired)} items" + (
                        f", {len(done.failed)} failed" if done.failed else ""
                    )
                else:
                    run_once()
        except SEMexited as exc:
            status = f"ended by {exc}"
        except KeyboardInterrupt:
            status = "stopped (Ctrl-C)"
        except BaseException as exc:  # the script's own failure: show its traceback, not ours
            if isinstance(exc, SystemExit) and exc.code in (0, None):
                status = "finished (sys.exit)"
            else:
                failure = exc
                status = "failed"
        finally:
            finish(module)
        progress.update(task, description=f"{script.name}: {status}")
    session = module.session
    used = sorted(session.command_count)
    console.print(
        f"{status}: {sum(session.command_count.values())} commands ({len(used)} different), "
        f"{counts['exposures']} exposures, {scope.clock.now_s() / 60:.1f} min of microscope "
        f"time; files in {run_dir} ({coverage()})"
    )
    for asked in session.answers.asked:
        source_text = "answers file" if asked["key"] is not None else "default"
        console.print(
            f"dialog {asked['dialog']}: {asked['prompt']!r} -> {asked['answer']!r} ({source_text})"
        )
    for key in session.answers.unused():
        err_console.print(f"[yellow]warning:[/] no dialog asked for the answer {key!r}")
    write_run_summary(
        run_dir,
        {
            "script": str(script.resolve()),
            "status": status,
            "commands": dict(sorted(session.command_count.items())),
            "exposures": counts["exposures"],
            "microscope_s": scope.clock.now_s(),
            "dialogs": session.answers.asked,
            "unused_answers": session.answers.unused(),
            "traceback": None if failure is None else script_traceback(failure, script.resolve()),
        },
    )
    if failure is not None:
        err_console.print()
        err_console.print(
            script_traceback(failure, script.resolve()),
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        err_console.print(f"[red]the script failed; the files it wrote are in {run_dir}[/]")
    if report:
        with user_errors():
            print_script_report(run_dir)
    if failure is not None or status.startswith("stopped"):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``sem-run`` to the main command."""
    app.command("sem-run")(sem_run_command)
