"""``tomopilot atlas``: from a grid to a target list (atlas, squares, holes, targets).

``tomopilot atlas run atlas.yaml --out DIR`` takes the atlas, ranks the squares by ice, finds
the holes of the best squares, chooses targets (each checked on a Hole image and a Preview) and
writes, in DIR: ``<root>_atlas.mrc`` (the montage's pieces), ``<root>_atlas.mrc.mdoc`` (piece
coordinates), ``<root>_atlas.nav`` (the map, the squares, the targets and their focus points),
``<root>_tgts.txt`` (what ``tomopilot acquire`` reads: give it as ``targets: {file: ...}`` with
``output: {dir: DIR}``), each target's map ``<root>_tgt_NNN.mrc`` (a Preview) and its View
``<root>_tgt_NNN_view.mrc`` (the hole and its edge: the series realigns to it first).

The YAML holds ``microscope:`` (as for ``tomopilot acquire``: the twin, or SerialEM with
``backend: serialem``, whose magnification table and pixel calibration the Grid and Square
presets are taken from), ``atlas:``
(:class:`~tomopilot.targeting.atlas.AtlasSettings`) and ``presets:``, changes to the Leginon
presets by name (``{Grid: {binning: 16}, Square: {binning: 4}}``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import Field, ValidationError
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from tomopilot.acquisition.plan.run_config import MicroscopeConfig
from tomopilot.acquisition.run import close_microscope, open_microscope
from tomopilot.cli.common import console, user_errors
from tomopilot.core.config import ConfigModel
from tomopilot.core.errors import ConfigError
from tomopilot.core.events import EventBus
from tomopilot.core.events import Progress as ProgressEvent
from tomopilot.instrument import LowDoseArea, Microscope
from tomopilot.instrument.presets import PresetManager
from tomopilot.instrument.twin import TwinMicroscope
from tomopilot.instrument.twin.microscope import as_microscope
from tomopilot.targeting.atlas import (
    AtlasResult,
    AtlasSettings,
    grid_to_targets,
    write_atlas,
    write_target_list,
)

atlas_app = typer.Typer(
    name="atlas",
    help="From a grid to targets: the atlas montage, squares ranked by ice, holes, targets.",
    no_args_is_help=True,
)

TASKS = {"atlas": "atlas tiles", "squares": "squares"}


class AtlasConfig(ConfigModel):
    """``tomopilot atlas run``'s YAML."""

    microscope: MicroscopeConfig = Field(default_factory=MicroscopeConfig)
    atlas: AtlasSettings = Field(default_factory=AtlasSettings)
    presets: dict[str, dict[str, Any]] = Field(default_factory=dict)


def load_atlas_config(path: Path) -> AtlasConfig:
    """Read and check the YAML; a ConfigError names the file and the refused field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the atlas configuration: {exc}", path=path) from None
    try:
        return AtlasConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{where}: {first['msg']}", path=path, field=where) from None


def _presets(scope: Any, changes: dict[str, dict[str, Any]]) -> PresetManager:
    manager = PresetManager.from_scope(scope)
    for name, update in changes.items():
        preset = manager.get(name)
        try:
            conditions = preset.conditions.model_validate(
                {**preset.conditions.model_dump(), **update}
            )
        except ValidationError as exc:
            raise ConfigError(f"presets.{name}: {exc.errors()[0]['msg']}") from None
        manager.add(preset.model_copy(update={"conditions": conditions}))
    return manager


def _squares_table(result: AtlasResult, shown: int = 12) -> Table:
    table = Table(title="Squares, best first", box=box.SIMPLE_HEAD)
    for column in ("rank", "x µm", "y µm", "ice nm", "flags", "targets"):
        table.add_column(column, justify="right" if column != "flags" else "left")
    counts = {label: result.target_squares.count(label) for label in set(result.target_squares)}
    ordered = result.survey.ranked() + [s for s in result.survey.squares if s.rank is None]
    for square in ordered[:shown]:
        table.add_row(
            str(square.rank or "-"),
            f"{square.centre_um[0]:.0f}",
            f"{square.centre_um[1]:.0f}",
            f"{square.thickness_nm:.0f}",
            ", ".join(square.flags) or "usable",
            str(counts.get(square.label, "")),
        )
    return table


@atlas_app.command("run")
def run_command(
    config_path: Annotated[
        Path, typer.Argument(help="The atlas YAML.", exists=True, dir_okay=False)
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for the atlas and targets.")],
    root: Annotated[str, typer.Option(help="Name root of the files written.")] = "grid",
    force: Annotated[bool, typer.Option("--force", help="Replace existing files.")] = False,
) -> None:
    """Take the atlas, rank the squares, find holes and write the target list."""
    with user_errors():
        config = load_atlas_config(config_path)
        targets_file = out / f"{root}_tgts.txt"
        if targets_file.exists() and not force:
            raise FileExistsError(f"{targets_file} exists; use --force to replace it")
        bus = EventBus()
        if config.microscope.backend == "twin":
            scope = as_microscope(TwinMicroscope(config.microscope.twin, events=bus))
        else:  # SerialEM (its module, or the twin serving it); restored when done
            scope = open_microscope(config.microscope, out, bus)
        try:
            _run(scope, config, out, root, bus)
        finally:
            for line in close_microscope(scope):
                console.print(f"[dim]{line}[/dim]")


def _run(scope: Microscope, config: AtlasConfig, out: Path, root: str, bus: EventBus) -> None:
    """The atlas, its files and the summary table (``run_command``'s work)."""
    presets = _presets(scope, config.presets)
    columns = (TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        tasks: dict[str, TaskID] = {}

        def show(event: ProgressEvent) -> None:
            if event.task not in TASKS:
                return
            if event.task not in tasks:
                tasks[event.task] = progress.add_task(TASKS[event.task], total=event.total)
            progress.update(tasks[event.task], completed=event.done)

        bus.subscribe(ProgressEvent, show)
        result = grid_to_targets(scope, presets, config.atlas)
    atlas_files = write_atlas(out, result.atlas, result.survey, name=f"{root}_atlas")
    preview = scope.optics.preset(LowDoseArea.PREVIEW)
    view = scope.optics.preset(LowDoseArea.VIEW)
    path = write_target_list(
        out,
        result.targets,
        root=root,
        maps=result.maps,
        pixel_size_a=preview.pixel_size_a,
        nav_path=atlas_files["nav"],
        views=result.views,
        view_pixel_size_a=view.pixel_size_a,
    )
    console.print(_squares_table(result))
    usable = len(result.survey.ranked())
    console.print(
        f"{len(result.survey.squares)} squares, {usable} usable; "
        f"{len(result.findings)} looked at; {len(result.targets)} targets "
        f"(dropped: {result.dropped['hole image']} on the hole image, "
        f"{result.dropped['preview']} on the Preview)"
    )
    for kind, written in {**atlas_files, "targets": path}.items():
        console.print(f"wrote {kind}: {written}")
