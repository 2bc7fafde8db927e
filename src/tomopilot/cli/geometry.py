"""``tomopilot geometry``: specimen geometry from defocus readings, geo points, tilt-axis offset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, cast

import numpy as np
import typer
from rich.console import Console

from tomopilot.cli.targets import print_targets, report_errors
from tomopilot.core.config import load_config
from tomopilot.geometry import (
    ParaboloidFit,
    apply_tilt_axis_offset,
    fit_surface,
    measure_tilt_axis_offset,
    pattern_geo_points,
)
from tomopilot.instrument import Microscope
from tomopilot.instrument.twin import TwinConfig, TwinMicroscope
from tomopilot.io.errors import FormatError
from tomopilot.targeting import load_targets, save_targets, set_overrides
from tomopilot.targeting.targets import GeoPoint

geometry_app = typer.Typer(
    name="geometry",
    help="Specimen geometry: plane/paraboloid fits, geo points, tilt-axis offset.",
    no_args_is_help=True,
)
console = Console()


def _read_readings(path: Path) -> np.ndarray:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.split("#", 1)[0].replace(",", " ").strip()
        if not text:
            continue
        try:
            values = [float(v) for v in text.split()]
        except ValueError:
            raise FormatError(
                f"expected 'x y defocus' numbers, got {line!r}", path=path, line=number
            ) from None
        if len(values) != 3:
            raise FormatError(
                f"expected 3 numbers (x y defocus), got {len(values)}", path=path, line=number
            )
        rows.append(values)
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


@geometry_app.command("fit")
def fit_command(
    readings: Annotated[
        Path, typer.Argument(help="Text file: x y defocus (µm) per line.", exists=True)
    ],
    write_to: Annotated[
        Path | None,
        typer.Option("--write-to", help="Targets file to receive _set pretilt/rotation."),
    ] = None,
    paraboloid_from: Annotated[
        int, typer.Option("--paraboloid-from", help="Fit a paraboloid from this many points.")
    ] = 9,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Write nothing.")] = False,
) -> None:
    """Fit the specimen plane (pretilt, rotation) or paraboloid to defocus readings."""
    with report_errors():
        data = _read_readings(readings)
        fit = fit_surface(data[:, 0], data[:, 1], data[:, 2], paraboloid_from=paraboloid_from)
        kind = "paraboloid" if isinstance(fit, ParaboloidFit) else "plane"
        console.print(
            f"{kind} through {fit.n_points} points: pretilt {fit.pretilt_deg:.2f}°, rotation "
            f"{fit.rotation_deg:.2f}°, rms residual {fit.rms_residual_um * 1e3:.0f} nm"
        )
        for warning in fit.warnings:
            console.print(f"[yellow]warning:[/] {warning.message}", highlight=False)
        if write_to is not None:
            targets = set_overrides(
                load_targets(write_to),
                {"pretilt": round(fit.pretilt_deg, 2), "rotation": round(fit.rotation_deg, 2)},
            )
            if dry_run:
                console.print(f"[bold]dry run:[/] would set pretilt and rotation in {write_to}")
            else:
                save_targets(write_to, targets)
                console.print(f"wrote pretilt and rotation to {write_to}")


@geometry_app.command("suggest")
def suggest_command(
    tgts: Annotated[
        Path, typer.Argument(help="A pattern targets file (with size, vecA*, vecB*).", exists=True)
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Write nothing.")] = False,
) -> None:
    """Add PACEtomo's automatic geo points of a hole pattern to its targets file."""
    with report_errors():
        targets = load_targets(tgts)
        s = targets.settings
        missing = [k for k in ("size", "vecA0", "vecA1", "vecB0", "vecB1") if k not in s]
        if missing:
            raise ValueError(f"{tgts} is not a pattern file: no {', '.join(missing)}")
        points = pattern_geo_points(
            (s["vecA0"], s["vecA1"]), (s["vecB0"], s["vecB1"]), round(s["size"])
        )
        targets = targets.model_copy(
            update={"geo_points": [GeoPoint(ss_x_um=x, ss_y_um=y) for x, y in points]}
        )
        print_targets(targets, f"{tgts.name}: {len(points)} geo points")
        if not dry_run:
            save_targets(tgts, targets)
            console.print(f"wrote {tgts}")


@geometry_app.command("offset")
def offset_command(
    twin_config: Annotated[
        Path | None, typer.Option("--twin-config", help="Twin configuration (YAML).")
    ] = None,
    max_tilt: Annotated[float, typer.Option("--max-tilt", help="Tilt range ±T (°).")] = 20.0,
    sweeps: Annotated[int, typer.Option("--sweeps", help="Sweeps to average.", min=1)] = 2,
    step: Annotated[float, typer.Option("--step", help="Tilt step (°).")] = 5.0,
    offset: Annotated[float, typer.Option("--offset", help="Image-shift positions ±o (µm).")] = 5.0,
    apply: Annotated[
        bool | None, typer.Option("--apply/--no-apply", help="Apply without asking.")
    ] = None,
) -> None:
    """Measure the tilt-axis offset on the digital twin (PACEtomo's measureOffset)."""
    with report_errors():
        config = load_config(twin_config, TwinConfig) if twin_config else TwinConfig()
        scope = cast(Microscope, TwinMicroscope(config))
        result = measure_tilt_axis_offset(
            scope,
            max_tilt_deg=max_tilt,
            step_deg=step,
            positions_um=(0.0, -offset, offset),
            sweeps=sweeps,
        )
        for y, value in zip(result.positions_um, result.per_position_um, strict=True):
            console.print(f"  at IS y = {y:+.1f} µm: {value:.3f} µm")
        console.print(
            f"tilt-axis offset {result.offset_um:.3f} µm (now {result.previous_offset_um:.3f}; "
            f"− branch {result.negative_branch_um:.3f}, + branch {result.positive_branch_um:.3f}, "
            f"each ± {result.branch_sigma_um:.2f})"
        )
        if result.discarded_sweeps:
            console.print(
                f"{result.discarded_sweeps} sweep(s) disturbed by a stage jump were measured again"
            )
        do_apply = (
            apply if apply is not None else typer.confirm("Apply this offset?", default=False)
        )
        if do_apply:
            apply_tilt_axis_offset(scope, result)
            console.print(
                f"applied: the tilt-axis offset is now {scope.stage.tilt_axis_offset_um:.3f} µm"
            )
