"""``tomopilot twin``: look at the digital twin and take single exposures or movies on it."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from tomopilot.cli.common import console, user_errors
from tomopilot.core.config import load_config, write_resolved_config
from tomopilot.core.files import atomic_write_text
from tomopilot.instrument import LowDoseArea
from tomopilot.instrument.twin import TwinConfig, TwinMicroscope
from tomopilot.instrument.twin.profiles import SOURCES, STAGE_PROFILES
from tomopilot.instrument.twin.timing import TIME_COSTS
from tomopilot.io.mrc_image import write_mrc

twin_app = typer.Typer(
    name="twin",
    help="The digital twin: describe it, take an exposure or a movie, with its ground truth.",
    no_args_is_help=True,
)


class Area(StrEnum):
    """Low-dose areas on the command line."""

    search = "search"
    view = "view"
    focus = "focus"
    trial = "trial"
    record = "record"
    preview = "preview"

    def low_dose(self) -> LowDoseArea:
        return LowDoseArea(self.value.capitalize())


class SpecimenKind(StrEnum):
    """Specimens of the twin."""

    lamella = "lamella"
    holey_film = "holey-film"
    grid = "grid"


ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Twin configuration (YAML).", exists=True)
]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Random seed (overrides the file).")]
ProfileOpt = Annotated[
    str | None, typer.Option("--profile", help="Stage profile: autoloader or side-entry.")
]
SpecimenOpt = Annotated[
    SpecimenKind | None, typer.Option("--specimen", help="Specimen (overrides the file).")
]


def build_config(
    config: Path | None, seed: int | None, profile: str | None, specimen: SpecimenKind | None
) -> TwinConfig:
    """The twin configuration from a file and command-line overrides."""
    data: dict[str, Any] = (
        load_config(config, TwinConfig).model_dump(mode="json") if config is not None else {}
    )
    if seed is not None:
        data["seed"] = seed
    if profile is not None:
        stage = dict(data.get("stage", {}))
        stage = {"profile": profile} if stage.get("profile") != profile else stage
        data["stage"] = stage
    if specimen is not None:
        data["specimen"] = {"kind": specimen.value.replace("-", "_")}
    return TwinConfig.model_validate(data)


def describe_table(scope: TwinMicroscope) -> list[Table]:
    """Rich tables describing the twin."""
    info = scope.describe()
    stage = info["stage"]
    assert isinstance(stage, dict)
    summary = Table(title=f"{info['name']} (seed {info['seed']})", show_header=False)
    summary.add_column("", style="bold")
    summary.add_column("")
    optics = info["optics"]
    assert isinstance(optics, dict)
    for key, value in optics.items():
        summary.add_row(key, str(value))
    summary.add_row("camera", str(info["camera"]))
    specimen_table = Table(title="specimen", show_header=False)
    specimen_table.add_column("", style="bold")
    specimen_table.add_column("")
    specimen = info["specimen"]
    assert isinstance(specimen, dict)
    for key, value in specimen.items():
        specimen_table.add_row(key, str(value))
    profile = str(stage["profile"])
    stage_table = Table(title=f"stage profile: {profile}")
    stage_table.add_column("magnitude", style="bold")
    stage_table.add_column("value")
    stage_table.add_column("source", style="dim")
    defaults = STAGE_PROFILES[profile]
    for key, value in stage.items():
        if key == "profile":
            continue
        default = defaults.get(key)
        same = default is not None and list(np.atleast_1d(default)) == list(np.atleast_1d(value))
        source = SOURCES[profile].get(key, "") if same else "configured"
        stage_table.add_row(key, str(value), source)
    presets = Table(title="low-dose presets")
    for column in (
        "area",
        "mag",
        "pixel (Å)",
        "exposure (s)",
        "dose (e/Å²)",
        "defocus offset (µm)",
    ):
        presets.add_column(column)
    preset_info = info["presets"]
    assert isinstance(preset_info, dict)
    for area, p in preset_info.items():
        presets.add_row(
            area,
            str(p["magnification"]),
            f"{p['pixel_size_a']:g}",
            f"{p['exposure_s']:g}",
            f"{p['dose_e_a2']:g}",
            f"{p['defocus_offset_um']:g}",
        )
    timing = Table(title="time costs and levers")
    for column in ("cost", "magnitude", "source", "lever", "SerialEM"):
        timing.add_column(column, overflow="fold")
    for cost in TIME_COSTS:
        timing.add_row(cost.name, cost.magnitude, cost.source, cost.lever, cost.serialem)
    return [summary, specimen_table, stage_table, presets, timing]


@twin_app.command("describe")
def describe_command(
    config: ConfigOpt = None,
    seed: SeedOpt = None,
    profile: ProfileOpt = None,
    specimen: SpecimenOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Describe the twin: optics, camera, stage profile magnitudes, presets and specimen."""
    with user_errors():
        scope = TwinMicroscope(build_config(config, seed, profile, specimen))
        if as_json:
            console.print_json(json.dumps(scope.describe()))
            return
        for table in describe_table(scope):
            console.print(table)


def _prepare(
    scope: TwinMicroscope,
    *,
    x_um: float,
    y_um: float,
    tilt_deg: float,
    defocus_um: float,
    eucentric: bool,
    is_x_um: float = 0.0,
    is_y_um: float = 0.0,
) -> None:
    scope.stage.move_to(x_um=x_um, y_um=y_um, backlash_compensate=True)
    if eucentric:
        scope.measurements.eucentricity()
        scope.measurements.eucentricity(fine=True)
    scope.stage.tilt_to(tilt_deg, backlash_compensate=True)
    scope.optics.set_image_shift_um(is_x_um, is_y_um)
    scope.optics.set_focus_um(defocus_um)


def _truth_json(scope: TwinMicroscope, exposure_id: int) -> str:
    truth = scope.ground_truth.exposure(exposure_id)
    return json.dumps(
        {
            "exposure": truth.to_dict(),
            "time_s": scope.clock.now_s(),
            "time_by_activity_s": dict(scope.ground_truth.time_by_activity_s),
            "twin": scope.describe(),
        },
        indent=1,
    )


def _write_truth(scope: TwinMicroscope, out: Path, exposure_id: int) -> Path:
    """Write the exposure's ground truth to ``OUT.truth.json``."""
    truth_path = out.with_name(out.name + ".truth.json")
    atomic_write_text(truth_path, _truth_json(scope, exposure_id))
    return truth_path


Position = Annotated[float, typer.Option(help="Stage position (µm).")]
TiltDeg = Annotated[float, typer.Option("--tilt-deg", help="Stage tilt.")]
XUm = Annotated[float, typer.Option("--x-um", help="Stage x.")]
YUm = Annotated[float, typer.Option("--y-um", help="Stage y.")]
DefocusUm = Annotated[float, typer.Option("--defocus-um", help="Objective focus.")]
Eucentric = Annotated[bool, typer.Option(help="Run eucentricity at the position first.")]


@twin_app.command("image")
def image_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output MRC file.")],
    tilt_deg: TiltDeg = 0.0,
    x_um: XUm = 0.0,
    y_um: YUm = 0.0,
    is_x_um: Annotated[float, typer.Option("--is-x-um", help="Image shift x (specimen µm).")] = 0.0,
    is_y_um: Annotated[float, typer.Option("--is-y-um", help="Image shift y (specimen µm).")] = 0.0,
    area: Annotated[Area, typer.Option("--area", help="Low-dose area.")] = Area.record,
    defocus_um: DefocusUm = -3.0,
    eucentric: Eucentric = True,
    config: ConfigOpt = None,
    seed: SeedOpt = None,
    profile: ProfileOpt = None,
    specimen: SpecimenOpt = None,
) -> None:
    """Take one exposure and write it as MRC, with OUT.truth.json beside it."""
    with user_errors():
        scope = TwinMicroscope(build_config(config, seed, profile, specimen))
        _prepare(
            scope,
            x_um=x_um,
            y_um=y_um,
            tilt_deg=tilt_deg,
            defocus_um=defocus_um,
            eucentric=eucentric,
            is_x_um=is_x_um,
            is_y_um=is_y_um,
        )
        image = scope.camera.acquire(area.low_dose())
        write_mrc(
            out,
            image.data,
            pixel_size_a=image.pixel_size_a,
            labels=[f"tomopilot twin {image.area.value} tilt {image.tilt_deg:g}"],
        )
        truth_path = _write_truth(scope, out, image.exposure_id)
        truth = scope.ground_truth.exposure(image.exposure_id)
        console.print(
            f"wrote {out} ({image.data.shape[1]}×{image.data.shape[0]} px, "
            f"{image.pixel_size_a:g} Å/px, mean {image.mean_counts:.2f} counts) and {truth_path}\n"
            f"true defocus {truth.defocus_um:.3f} µm, dose {truth.dose_e_a2:.3f} e/Å², "
            f"{scope.clock.now_s():.1f} s of microscope time"
        )


@twin_app.command("movie")
def movie_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Frames file (.mrc, .tif or .eer).")],
    frames: Annotated[int, typer.Option("--frames", min=1, help="Number of frames.")] = 10,
    tilt_deg: TiltDeg = 0.0,
    x_um: XUm = 0.0,
    y_um: YUm = 0.0,
    defocus_um: DefocusUm = -3.0,
    eucentric: Eucentric = True,
    config: ConfigOpt = None,
    seed: SeedOpt = None,
    profile: ProfileOpt = None,
    specimen: SpecimenOpt = None,
) -> None:
    """Record a movie: raw frames to OUT, the gain reference, the sum and the true motion.

    The gain reference (``<stem>_gain.mrc``) multiplies the raw frames, as RELION, MotionCor2
    and SerialEM apply one; it is 0 on defective pixels. A ``.tif`` movie is written with its
    rows top-down, as SerialEM writes TIFF frames, so that RELION and IMOD read it in the
    orientation of the gain and the MRC files.
    """
    from tomopilot.io.frames import write_frames

    with user_errors():
        twin_config = build_config(config, seed, profile, specimen)
        scope = TwinMicroscope(twin_config)
        _prepare(
            scope,
            x_um=x_um,
            y_um=y_um,
            tilt_deg=tilt_deg,
            defocus_um=defocus_um,
            eucentric=eucentric,
        )
        movie = scope.camera.acquire_movie(LowDoseArea.RECORD, n_frames=frames)
        pixel = movie.image.pixel_size_a
        write_frames(out, movie.frames, pixel_size_a=pixel, seed=twin_config.seed)
        stem = out.with_suffix("")
        sum_path = write_mrc(Path(f"{stem}_sum.mrc"), movie.image.data, pixel_size_a=pixel)
        gain_path = write_mrc(
            Path(f"{stem}_gain.mrc"), scope.camera.gain_reference(), pixel_size_a=pixel
        )
        truth_path = _write_truth(scope, out, movie.image.exposure_id)
        shifts = scope.ground_truth.exposure(movie.image.exposure_id).frame_shifts_px
        table = Table(title=f"{out.name}: true global motion (px)")
        table.add_column("frame")
        table.add_column("x")
        table.add_column("y")
        for i, (sx, sy) in enumerate(shifts - shifts[0]):
            table.add_row(str(i), f"{sx:+.2f}", f"{sy:+.2f}")
        console.print(table)
        console.print(
            f"wrote {out}, {sum_path}, {gain_path} and {truth_path}; "
            f"{movie.frame_dose_e_a2:.3f} e/Å² per frame"
        )


@twin_app.command("config")
def config_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the YAML.")],
    config: ConfigOpt = None,
    seed: SeedOpt = None,
    profile: ProfileOpt = None,
    specimen: SpecimenOpt = None,
) -> None:
    """Write the fully resolved twin configuration (every default shown) as YAML to edit."""
    with user_errors():
        write_resolved_config(build_config(config, seed, profile, specimen), out)
        console.print(f"wrote {out}")


def _register_tour() -> None:
    from tomopilot.cli.twin_tour import tour_command

    twin_app.command("tour")(tour_command)


_register_tour()
