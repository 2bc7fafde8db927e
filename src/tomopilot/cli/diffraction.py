"""``tomopilot diffraction``: microED series from TIA raw to MRC and to SMV for DIALS."""

from __future__ import annotations

import glob
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from tomopilot.core.config import validation_error_to_config_error
from tomopilot.core.errors import TomopilotError
from tomopilot.core.events import Event
from tomopilot.instrument.twin.diffraction import (
    DiffractionSeriesSpec,
    simulate_diffraction_series,
    write_tia_series,
)
from tomopilot.processing.microed import (
    DEFAULT_BEAMLINE,
    LEGINON_OFFSET_CAP,
    ConversionReport,
    SeriesMetadata,
    SeriesProgress,
    SmvOptions,
    convert_tia_series,
    mrc_to_smv,
    tia_to_mrc,
)

diffraction_app = typer.Typer(
    name="diffraction",
    help=(
        "MicroED diffraction series: TIA raw (.bin) or TIA series (.ser) → lossless MRC → SMV "
        "that DIALS reads."
    ),
    no_args_is_help=True,
)

console = Console()
err_console = Console(stderr=True)

_STEP_LABELS = {
    "check": "Checking TIA headers",
    "tia2mrc": "TIA → MRC",
    "scan": "Scanning frame minima",
    "mrc2smv": "MRC → SMV",
}
_OPTION_FIELDS = ("beam_x_px", "beam_y_px", "gain", "beamline", "offset_cap")
_FLAGS = {
    "voltage_kv": "--voltage-kv",
    "camera_length_mm": "--camera-length-mm",
    "pixel_size_mm": "--pixel-size-mm",
    "tilt_angle_deg": "--start-angle-deg",
    "start_angle_deg": "--start-angle-deg",
    "osc_range_deg": "--osc-range-deg",
    "rotation_speed_deg_s": "--rotation-speed-deg-s",
    "exposure_s": "--exposure-s",
}

Files = Annotated[
    list[str],
    typer.Argument(
        help="Input files in series order (a .ser series gives all its frames); quoted glob "
        "patterns ('run/*.bin') are expanded and sorted numerically.",
        show_default=False,
    ),
]
Out = Annotated[Path, typer.Option("--out", "-o", help="Output folder.", file_okay=False)]
Voltage = Annotated[float | None, typer.Option("--voltage-kv", help="High tension (kV).")]
CameraLength = Annotated[
    float | None, typer.Option("--camera-length-mm", help="Effective camera length (mm).")
]
PixelSize = Annotated[
    float | None,
    typer.Option("--pixel-size-mm", help="Size of the image's pixels: camera pixel × binning."),
]
OscRange = Annotated[
    float | None, typer.Option("--osc-range-deg", help="Rotation per frame (°), signed.")
]
StartAngle = Annotated[
    float | None, typer.Option("--start-angle-deg", help="Goniometer angle at frame 0 (°).")
]
Speed = Annotated[
    float | None, typer.Option("--rotation-speed-deg-s", help="Rotation speed (°/s).")
]
Exposure = Annotated[float | None, typer.Option("--exposure-s", help="Exposure per frame (s).")]
Binning = Annotated[int | None, typer.Option("--binning", help="Camera binning (BIN=NxN).")]
BeamX = Annotated[
    float | None,
    typer.Option("--beam-x-px", help="Direct beam column (fast axis), pixels; default centre."),
]
BeamY = Annotated[
    float | None,
    typer.Option("--beam-y-px", help="Direct beam row (slow axis), pixels; default centre."),
]
Gain = Annotated[
    float | None, typer.Option("--gain", help="Counts per electron (GAIN); omitted if unset.")
]
Beamline = Annotated[str, typer.Option("--beamline", help="BEAMLINE key (CETAD → Ceta-D).")]
OffsetCap = Annotated[int, typer.Option("--offset-cap", help="Largest LEGINON_OFFSET.", min=0)]
Force = Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Convert and report, but write nothing.")]
Summary = Annotated[
    bool, typer.Option("--summary/--no-summary", help="Write a JSON summary beside outputs.")
]


def metadata_for(spec: DiffractionSeriesSpec) -> SeriesMetadata:
    """What a user would state for a series the twin made with ``spec``."""
    return SeriesMetadata(
        voltage_kv=spec.voltage_kv,
        camera_length_mm=spec.camera_length_mm,
        pixel_size_mm=spec.pixel_size_mm,
        binning=spec.binning,
        start_angle_deg=spec.start_angle_deg,
        osc_range_deg=spec.osc_range_deg,
        exposure_s=spec.exposure_s,
    )


def options_for(spec: DiffractionSeriesSpec) -> SmvOptions:
    """The beam centre and gain of a series the twin made with ``spec``."""
    beam_x, beam_y = spec.beam_center
    return SmvOptions(beam_x_px=beam_x, beam_y_px=beam_y, gain=spec.gain_counts_per_electron)


def _natural_key(text: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def expand_inputs(patterns: list[str]) -> list[Path]:
    """Expand glob patterns (sorted numerically); keep plain paths in the order given."""
    paths: list[Path] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern), key=_natural_key)
            if not matches:
                raise typer.BadParameter(f"no file matches {pattern!r}")
            paths.extend(Path(m) for m in matches)
        else:
            paths.append(Path(pattern))
    return paths


@contextmanager
def _reporting() -> Iterator[Callable[[Event], None]]:
    """A rich progress bar fed by the pipeline's events; errors become a message and exit 1."""
    columns = (TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn())
    tasks: dict[str, TaskID] = {}
    try:
        with Progress(*columns, console=console, transient=False) as progress:

            def on_event(event: Event) -> None:
                if not isinstance(event, SeriesProgress):
                    return
                if event.step not in tasks:
                    label = _STEP_LABELS.get(event.step, event.step)
                    tasks[event.step] = progress.add_task(label, total=event.total)
                progress.update(tasks[event.step], completed=event.done)

            yield on_event
    except (TomopilotError, OSError) as exc:
        field = getattr(exc, "field", None)
        hint = f" (give {_FLAGS[field]})" if field in _FLAGS else ""
        err_console.print(f"[bold red]error:[/] {exc}{hint}", highlight=False)
        raise typer.Exit(1) from None


def _print_report(report: ConversionReport) -> None:
    kinds = sorted({f"{f.source_dtype} → MRC mode {f.mrc_mode}" for f in report.frames})
    table = Table(
        title=f"{report.step}: {len(report.frames)} frames ({', '.join(kinds)})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
    )
    table.add_column("#", justify="right")
    table.add_column("stem", overflow="fold")
    for name in ("min", "max", "mean", "OSC_START"):
        table.add_column(name, justify="right", no_wrap=True)
    levels = report.levels
    if levels is not None:
        table.add_column("low clip", justify="right", no_wrap=True)
        table.add_column("overflow", justify="right", no_wrap=True)
    for frame in report.frames:
        row = [
            str(frame.index),
            frame.source.stem,
            f"{frame.minimum:g}",
            f"{frame.maximum:g}",
            f"{frame.mean:.1f}",
            "" if frame.osc_start_deg is None else f"{frame.osc_start_deg:g}",
        ]
        if levels is not None:
            low, high = frame.clipped_low or 0, frame.clipped_high or 0
            row += [f"[yellow]{low}[/]" if low else "0", f"[yellow]{high}[/]" if high else "0"]
        table.add_row(*row)
    console.print(table)
    if levels is not None:
        capped = (
            f" [yellow](capped: lowest frame minimum {levels.lowest_minimum:g})[/]"
            if levels.capped
            else ""
        )
        console.print(f"LEGINON_OFFSET  {levels.offset}{capped}")
        console.print(
            f"IMAGE_PEDESTAL  {levels.pedestal:g}  (= {levels.offset} + highest frame minimum "
            f"{levels.highest_minimum:g})"
        )
        console.print(
            f"clipped pixels  {report.clipped_low} below −{levels.offset} (set to 0), "
            f"{report.clipped_high} above {65535 - levels.offset} (uint16 overflow, set to 65535)"
        )
    if report.wavelength_a is not None:
        console.print(f"WAVELENGTH      {report.wavelength_a:.8f} Å (relativistic)")
    if report.dry_run:
        console.print("[bold]dry run:[/] nothing was written")
    else:
        console.print(f"wrote {len(report.written)} files to {report.out_dir}")


def _run(step: str, params: dict[str, Any]) -> None:
    """Run ``tia2mrc``, ``mrc2smv`` or ``convert`` from a command's parameters; print a summary."""
    with _reporting() as on_event:
        try:
            metadata = SeriesMetadata.model_validate(
                {k: params[k] for k in SeriesMetadata.model_fields if k in params}
            )
        except ValidationError as exc:
            raise validation_error_to_config_error(exc) from None
        paths = expand_inputs(params["files"])
        out: Path = params["out"]
        common: dict[str, Any] = {
            "metadata": metadata,
            "overwrite": params["force"],
            "dry_run": params["dry_run"],
            "summary_name": f"{step}_summary.json" if params["summary"] else None,
            "on_event": on_event,
        }
        if step == "tia2mrc":
            report = tia_to_mrc(paths, out, **common)
        else:
            options = SmvOptions(**{k: params[k] for k in _OPTION_FIELDS})
            convert = mrc_to_smv if step == "mrc2smv" else convert_tia_series
            report = convert(paths, out, options=options, **common)
    _print_report(report)


@diffraction_app.command("tia2mrc")
def tia2mrc_command(
    files: Files,
    out: Out,
    voltage_kv: Voltage = None,
    camera_length_mm: CameraLength = None,
    pixel_size_mm: PixelSize = None,
    start_angle_deg: StartAngle = None,
    osc_range_deg: OscRange = None,
    rotation_speed_deg_s: Speed = None,
    exposure_s: Exposure = None,
    binning: Binning = None,
    force: Force = False,
    dry_run: DryRun = False,
    summary: Summary = True,
) -> None:
    """Convert TIA raw frames to MRC without losing a count (int32 → exact float32)."""
    _run("tia2mrc", locals())


@diffraction_app.command("mrc2smv")
def mrc2smv_command(
    files: Files,
    out: Out,
    voltage_kv: Voltage = None,
    camera_length_mm: CameraLength = None,
    pixel_size_mm: PixelSize = None,
    start_angle_deg: StartAngle = None,
    osc_range_deg: OscRange = None,
    rotation_speed_deg_s: Speed = None,
    exposure_s: Exposure = None,
    binning: Binning = None,
    beam_x_px: BeamX = None,
    beam_y_px: BeamY = None,
    gain: Gain = None,
    beamline: Beamline = DEFAULT_BEAMLINE,
    offset_cap: OffsetCap = LEGINON_OFFSET_CAP,
    force: Force = False,
    dry_run: DryRun = False,
    summary: Summary = True,
) -> None:
    """Convert MRC frames to SMV for DIALS with Leginon's offset and pedestal.

    Values recorded by tia2mrc are used; options given here replace them.
    """
    _run("mrc2smv", locals())


@diffraction_app.command("convert")
def convert_command(
    files: Files,
    out: Out,
    voltage_kv: Annotated[float, typer.Option("--voltage-kv", help="High tension (kV).")],
    camera_length_mm: Annotated[
        float, typer.Option("--camera-length-mm", help="Effective camera length (mm).")
    ],
    pixel_size_mm: Annotated[
        float, typer.Option("--pixel-size-mm", help="Image pixel size (mm): camera pixel × bin.")
    ],
    start_angle_deg: Annotated[
        float, typer.Option("--start-angle-deg", help="Goniometer angle at frame 0 (°).")
    ],
    osc_range_deg: OscRange = None,
    rotation_speed_deg_s: Speed = None,
    exposure_s: Exposure = None,
    binning: Binning = None,
    beam_x_px: BeamX = None,
    beam_y_px: BeamY = None,
    gain: Gain = None,
    beamline: Beamline = DEFAULT_BEAMLINE,
    offset_cap: OffsetCap = LEGINON_OFFSET_CAP,
    force: Force = False,
    dry_run: DryRun = False,
    summary: Summary = True,
) -> None:
    """TIA raw → MRC → SMV for a whole series: OUT/<stem>.mrc and OUT/<stem>.img per file.

    Frame i (0-based) gets OSC_START = start + i × osc-range (or rotation speed × exposure).
    """
    _run("convert", locals())


@diffraction_app.command("demo")
def demo_command(
    out: Out,
    frames: Annotated[int, typer.Option("--frames", help="Frames in the series.", min=1)] = 10,
    size: Annotated[int, typer.Option("--size", help="Frame size in pixels.", min=32)] = 256,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the twin.")] = 0,
    force: Force = False,
) -> None:
    """Simulate a diffraction series on the twin, write it as TIA files and convert it.

    The rotating crystal's frames go to OUT/tia/ as TIA raw files, the MRC and SMV files to
    OUT/converted/.
    """
    spec = DiffractionSeriesSpec(n_frames=frames, shape=(size, size), seed=seed)
    tia_dir = out / "tia"
    with _reporting() as on_event:
        if tia_dir.exists() and any(tia_dir.glob("*.bin")) and not force:
            raise FileExistsError(f"{tia_dir} already holds TIA files; use --force to replace them")
        series = simulate_diffraction_series(spec)
        paths = write_tia_series(series, tia_dir)
        report = convert_tia_series(
            paths,
            out / "converted",
            metadata=metadata_for(spec),
            options=options_for(spec),
            overwrite=force,
            on_event=on_event,
        )
    console.print(
        f"simulated {frames} frames of {size}×{size} px: "
        f"{len(series.reflections.frame)} reflection records, "
        f"{len(series.cosmic_rays)} cosmic-ray hits; TIA files in {tia_dir}"
    )
    _print_report(report)
    console.print(f"next: dials.import {out / 'converted'}/*.img")
