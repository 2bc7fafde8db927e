"""``tomopilot targets``: make, inspect and edit PACEtomo targets files and Navigator items."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich import box
from rich.console import Console
from rich.table import Table

from tomopilot.core.errors import TomopilotError
from tomopilot.io.navigator import NavDocument, format_nav, read_nav, write_nav
from tomopilot.io.pacetomo_targets import format_targets
from tomopilot.targeting import (
    TargetSet,
    TargetWarning,
    copy_to_points,
    fill_polygon,
    find_item,
    group_points,
    image_shift_warnings,
    load_targets,
    make_tracking,
    name_files,
    nav_items,
    overlap_warnings,
    pattern_targets,
    reorder,
    save_targets,
    set_overrides,
    set_skip,
    target_items,
    targets_from_image_shifts,
    targets_from_nav_points,
    targets_from_shifts,
    targets_from_specimen_points,
)
from tomopilot.targeting.targets import format_number, to_file_data

targets_app = typer.Typer(
    name="targets",
    help="Target selection for PACE-style tilt series: targets files (<root>_tgts.txt) and "
    "Navigator items.",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True)

Out = Annotated[Path, typer.Argument(help="The targets file to write (<root>_tgts.txt).")]
Tgts = Annotated[Path, typer.Argument(help="A PACEtomo targets file.", exists=True, dir_okay=False)]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Show what would be written; write nothing.")
]
Force = Annotated[bool, typer.Option("--force", help="Replace an existing targets file.")]
IsLimit = Annotated[float, typer.Option("--is-limit", help="Image-shift limit (µm).")]
BeamDiameter = Annotated[float, typer.Option("--beam-diameter", help="Beam diameter (µm).")]
MaxTilt = Annotated[float, typer.Option("--max-tilt", help="Highest tilt of the series (°).")]


@contextmanager
def report_errors() -> Iterator[None]:
    """Turn library errors into one red line and exit status 1."""
    try:
        yield
    except (TomopilotError, OSError, KeyError, ValueError) as exc:
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        err_console.print(f"[bold red]error:[/] {text}", highlight=False)
        raise typer.Exit(1) from None


def _pair(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected X,Y (two numbers), got {text!r}") from None
    return x, y


def _root(out: Path) -> str:
    name = out.name
    return name[: -len("_tgts.txt")] if name.endswith("_tgts.txt") else out.stem


def print_targets(targets: TargetSet, title: str) -> None:
    """A table of targets, settings and geo points."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False)
    for name, justify in (("#", "right"), ("SSX µm", "right"), ("SSY µm", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for name in ("skip", "tsfile", "tgtfile", "score"):
        table.add_column(name)
    for index, target in enumerate(targets.targets, start=1):
        table.add_row(
            f"{index}" + (" (track)" if index == 1 else ""),
            f"{target.ss_x_um:.3f}",
            f"{target.ss_y_um:.3f}",
            "[yellow]skip[/]" if target.skip else "",
            target.ts_file or "",
            target.tgt_file or "",
            "" if target.space_score is None else f"{target.space_score:.2f}",
        )
    console.print(table)
    for name, value in targets.settings.items():
        console.print(f"_set {name} = {format_number(value)}")
    for name, flag in targets.bool_settings.items():
        console.print(f"_bset {name} = {str(flag).lower()}")
    for index, geo in enumerate(targets.geo_points, start=1):
        console.print(f"geo {index}: ({geo.ss_x_um:.2f}, {geo.ss_y_um:.2f}) µm")


def print_warnings(warnings: list[TargetWarning]) -> None:
    """One yellow line per warning."""
    for warning in warnings:
        console.print(f"[yellow]warning:[/] {warning.message}", highlight=False)


def _check(
    targets: TargetSet, is_limit: float, beam_diameter: float, max_tilt: float
) -> list[TargetWarning]:
    return image_shift_warnings(targets, limit_um=is_limit) + overlap_warnings(
        targets, beam_radius_um=beam_diameter / 2, max_tilt_deg=max_tilt
    )


def _write(
    out: Path, targets: TargetSet, *, dry_run: bool, force: bool, existing_ok: bool = False
) -> None:
    if dry_run:
        console.print(f"[bold]dry run:[/] would write {out}:")
        console.print(format_targets(to_file_data(targets)), highlight=False, markup=False)
        return
    if out.exists() and not (force or existing_ok):
        raise FileExistsError(f"{out} exists; use --force to replace it")
    save_targets(out, targets)
    console.print(f"wrote {out} ({len(targets.targets)} targets)")


def _add_nav(
    nav_in: Path | None,
    nav_out: Path | None,
    targets: TargetSet,
    stage_xyz: tuple[float, float, float],
    tgts_name: str,
    *,
    beam_diameter: float,
    max_tilt: float,
    dry_run: bool,
) -> None:
    if nav_out is None:
        return
    doc = read_nav(nav_in) if nav_in is not None else NavDocument.new(nav_out.name)
    items = target_items(
        doc,
        targets,
        stage_origin_um=stage_xyz,
        targets_file=tgts_name,
        beam_radius_um=beam_diameter / 2,
        max_tilt_deg=max_tilt,
    )
    doc.sections.extend(items)
    if dry_run:
        console.print(f"[bold]dry run:[/] would write {len(items)} items to {nav_out}")
        return
    write_nav(nav_out, doc)
    console.print(f"wrote {nav_out} (+{len(items)} Navigator items)")


def _save_new(
    out: Path,
    targets: TargetSet,
    what: str,
    *,
    is_limit: float,
    beam_diameter: float,
    max_tilt: float,
    dry_run: bool,
    force: bool,
    nav: tuple[Path | None, Path | None, tuple[float, float, float]] | None = None,
) -> None:
    """Name the files after OUT, show the targets and their warnings, and write them.

    ``nav`` (Navigator read, Navigator written, stage X, Y, Z of target 1) adds Navigator items.
    """
    targets = name_files(targets, _root(out), maps=False)
    print_targets(targets, f"{out.name}: {len(targets.targets)} {what}")
    print_warnings(_check(targets, is_limit, beam_diameter, max_tilt))
    _write(out, targets, dry_run=dry_run, force=force)
    if nav is not None:
        nav_in, nav_out, stage_xyz = nav
        _add_nav(
            nav_in,
            nav_out,
            targets,
            stage_xyz,
            out.name,
            beam_diameter=beam_diameter,
            max_tilt=max_tilt,
            dry_run=dry_run,
        )


@targets_app.command("manual")
def manual_command(
    out: Out,
    point: Annotated[
        list[str] | None, typer.Option("--point", help="Specimen X,Y (µm); first = target 1.")
    ] = None,
    shift: Annotated[
        list[str] | None, typer.Option("--shift", help="Fixed shift X,Y (µm) from target 1.")
    ] = None,
    image_shift: Annotated[
        list[str] | None, typer.Option("--image-shift", help="Image shift X,Y (µm).")
    ] = None,
    nav: Annotated[
        Path | None, typer.Option("--nav", help="Navigator with a point group.", exists=True)
    ] = None,
    group: Annotated[
        str | None, typer.Option("--group", help="Label of a point of the group, or its GroupID.")
    ] = None,
    nav_out: Annotated[
        Path | None, typer.Option("--nav-out", help="Write the Navigator with target items here.")
    ] = None,
    stage: Annotated[
        str, typer.Option("--stage", help="Stage X,Y of target 1 (µm) for Navigator items.")
    ] = "0,0",
    is_limit: IsLimit = 15.0,
    beam_diameter: BeamDiameter = 1.5,
    max_tilt: MaxTilt = 60.0,
    dry_run: DryRun = False,
    force: Force = False,
) -> None:
    """Targets from specimen points, fixed shifts, image shifts or a Navigator point group."""
    with report_errors():
        sources = [s for s in (point, shift, image_shift) if s] + ([group] if group else [])
        if len(sources) != 1:
            raise ValueError("give exactly one of --point, --shift, --image-shift, --nav/--group")
        z = 0.0
        sx, sy = _pair(stage)
        if point:
            targets = targets_from_specimen_points([_pair(p) for p in point])
        elif shift:
            targets = targets_from_shifts([_pair(p) for p in shift])
        elif image_shift:
            targets = targets_from_image_shifts([_pair(p) for p in image_shift])
        else:
            if nav is None or group is None:
                raise ValueError("--group needs --nav")
            items = group_points(read_nav(nav), group)
            targets = targets_from_nav_points(items)
            sx, sy, z = items[0].stage_xyz_um
        _save_new(
            out,
            targets,
            "targets",
            is_limit=is_limit,
            beam_diameter=beam_diameter,
            max_tilt=max_tilt,
            dry_run=dry_run,
            force=force,
            nav=(nav, nav_out, (sx, sy, z)),
        )


@targets_app.command("pattern")
def pattern_command(
    out: Out,
    vec_a: Annotated[str, typer.Option("--vec-a", help="Lattice vector A as X,Y (µm).")],
    vec_b: Annotated[str, typer.Option("--vec-b", help="Lattice vector B as X,Y (µm).")],
    size: Annotated[
        int, typer.Option("--size", help="Pattern size n: (2n+1)² targets.", min=0)
    ] = 1,
    is_limit: IsLimit = 15.0,
    beam_diameter: BeamDiameter = 1.5,
    max_tilt: MaxTilt = 60.0,
    dry_run: DryRun = False,
    force: Force = False,
) -> None:
    """A hole pattern from known lattice vectors, in spiral order, with automatic geo points."""
    with report_errors():
        _save_new(
            out,
            pattern_targets(_pair(vec_a), _pair(vec_b), size),
            "pattern targets",
            is_limit=is_limit,
            beam_diameter=beam_diameter,
            max_tilt=max_tilt,
            dry_run=dry_run,
            force=force,
        )


@targets_app.command("polygon")
def polygon_command(
    nav: Annotated[Path, typer.Argument(help="Navigator file.", exists=True, dir_okay=False)],
    label: Annotated[str, typer.Argument(help="Label of the polygon item to fill.")],
    out: Out,
    beam_diameter: BeamDiameter = 1.5,
    max_tilt: MaxTilt = 60.0,
    pattern_rot: Annotated[
        float, typer.Option("--pattern-rot", help="Pattern rotation (°).")
    ] = 0.0,
    size: Annotated[int, typer.Option("--size", help="Spiral rings to try.", min=1)] = 10,
    nav_out: Annotated[
        Path | None,
        typer.Option(
            "--nav-out", help="Navigator to write with the new items (default: <nav>_targets.nav)."
        ),
    ] = None,
    is_limit: IsLimit = 15.0,
    dry_run: DryRun = False,
    force: Force = False,
) -> None:
    """Fill a Navigator polygon with targets whose beams do not overlap at maxTilt."""
    with report_errors():
        doc = read_nav(nav)
        item = find_item(doc, label)
        if len(item.points_um) < 3:
            raise ValueError(f"item {label!r} is not a polygon")
        fill = fill_polygon(
            np.array(item.points_um),
            beam_diameter_um=beam_diameter,
            max_tilt_deg=max_tilt,
            pattern_rot_deg=pattern_rot,
            size=size,
        )
        x, y = fill.stage_origin_um
        _save_new(
            out,
            fill.targets,
            f"targets in {label!r}",
            is_limit=is_limit,
            beam_diameter=beam_diameter,
            max_tilt=max_tilt,
            dry_run=dry_run,
            force=force,
            nav=(
                nav,
                nav_out or nav.with_name(f"{nav.stem}_targets.nav"),
                (x, y, item.stage_xyz_um[2]),
            ),
        )


@targets_app.command("show")
def show_command(
    tgts: Tgts,
    is_limit: IsLimit = 15.0,
    beam_diameter: BeamDiameter = 1.5,
    max_tilt: MaxTilt = 60.0,
) -> None:
    """List the targets, settings and geo points of a targets file, with warnings."""
    with report_errors():
        targets = load_targets(tgts)
        print_targets(targets, f"{tgts.name}: {len(targets.targets)} targets")
        print_warnings(_check(targets, is_limit, beam_diameter, max_tilt))


def _edit(tgts: Path, targets: TargetSet, dry_run: bool) -> None:
    print_targets(targets, f"{tgts.name} (edited)")
    _write(tgts, targets, dry_run=dry_run, force=True, existing_ok=True)


@targets_app.command("skip")
def skip_command(
    tgts: Tgts,
    numbers: Annotated[list[int], typer.Argument(help="Target numbers (1-based).")],
    unskip: Annotated[bool, typer.Option("--unskip", help="Clear the skip flag instead.")] = False,
    dry_run: DryRun = False,
) -> None:
    """Skip targets (or un-skip them)."""
    with report_errors():
        _edit(tgts, set_skip(load_targets(tgts), [n - 1 for n in numbers], not unskip), dry_run)


@targets_app.command("track")
def track_command(
    tgts: Tgts,
    number: Annotated[int, typer.Argument(help="Target number (1-based) to track on.")],
    dry_run: DryRun = False,
) -> None:
    """Make a different target the tracking target (shifts are re-expressed relative to it)."""
    with report_errors():
        _edit(tgts, make_tracking(load_targets(tgts), number - 1), dry_run)


@targets_app.command("reorder")
def reorder_command(
    tgts: Tgts,
    order: Annotated[str, typer.Argument(help="New order as 1-based numbers, e.g. 3,1,2.")],
    dry_run: DryRun = False,
) -> None:
    """Put the targets in a new order."""
    with report_errors():
        indices = [int(v) - 1 for v in order.split(",")]
        _edit(tgts, reorder(load_targets(tgts), indices), dry_run)


@targets_app.command("set")
def set_command(
    tgts: Tgts,
    settings: Annotated[
        list[str] | None, typer.Argument(help="name=value (number or true/false).")
    ] = None,
    remove: Annotated[list[str] | None, typer.Option("--remove", help="Drop an override.")] = None,
    dry_run: DryRun = False,
) -> None:
    """Settings overrides: `_set` lines for numbers, `_bset` lines for booleans."""
    with report_errors():
        numbers: dict[str, float] = {}
        booleans: dict[str, bool] = {}
        for item in settings or []:
            name, _, value = item.partition("=")
            if not value:
                raise ValueError(f"expected name=value, got {item!r}")
            if value.lower() in ("true", "false", "yes", "no", "on", "off"):
                booleans[name] = value.lower() in ("true", "yes", "on")
            else:
                numbers[name] = float(value)
        _edit(tgts, set_overrides(load_targets(tgts), numbers, booleans, remove or []), dry_run)


@targets_app.command("copy")
def copy_command(
    tgts: Tgts,
    nav: Annotated[Path, typer.Argument(help="Navigator file.", exists=True, dir_okay=False)],
    group: Annotated[str, typer.Argument(help="A point of the group (label) or its GroupID.")],
    dry_run: DryRun = False,
    force: Force = False,
) -> None:
    """Copy a pattern to other Navigator points ("Copy to Acq"): <root>_tgts_pNN.txt files."""
    with report_errors():
        targets = load_targets(tgts)
        points = [
            (i.stage_xyz_um[0], i.stage_xyz_um[1]) for i in group_points(read_nav(nav), group)
        ]
        for name, copy in copy_to_points(targets, points, _root(tgts)):
            _write(tgts.with_name(name), copy, dry_run=dry_run, force=force)


@targets_app.command("check")
def check_command(
    tgts: Tgts,
    is_limit: IsLimit = 15.0,
    beam_diameter: BeamDiameter = 1.5,
    max_tilt: MaxTilt = 60.0,
) -> None:
    """Warnings only: image-shift reach and beam overlap at maxTilt. Exit 2 if any."""
    with report_errors():
        warnings = _check(load_targets(tgts), is_limit, beam_diameter, max_tilt)
    print_warnings(warnings)
    if warnings:
        raise typer.Exit(2)
    console.print("no warnings")


@targets_app.command("nav")
def nav_command(
    nav: Annotated[Path, typer.Argument(help="Navigator file (autodoc or XML).", exists=True)],
    rewrite: Annotated[
        Path | None, typer.Option("--rewrite", help="Write it back (autodoc) here.")
    ] = None,
) -> None:
    """List a Navigator's items (and check them); optionally write it back as an autodoc."""
    with report_errors():
        doc = read_nav(nav)
        table = Table(
            title=f"{nav.name}: AdocVersion {doc.version}",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            show_edge=False,
        )
        for column in ("label", "type", "stage X", "stage Y", "Z", "group", "acq", "note"):
            table.add_column(column)
        kinds = {0: "point", 1: "polygon", 2: "map"}
        for item in nav_items(doc):
            kind = kinds.get(item.item_type, str(item.item_type))
            if item.is_montage:
                kind = "montage"
            x, y, z = item.stage_xyz_um
            table.add_row(
                item.label,
                kind,
                f"{x:.3f}",
                f"{y:.3f}",
                f"{z:.3f}",
                str(item.group_id or ""),
                "yes" if item.acquire else "",
                item.note,
            )
        console.print(table)
        if rewrite is not None:
            write_nav(rewrite, doc)
            console.print(f"wrote {rewrite} ({len(format_nav(doc))} characters)")
