"""``tomopilot twin tour``: a scripted tour of the digital twin.

It describes the specimen and stage profile, centres a lamella, takes Records at a few tilts
without any tracking, and writes the MRC files, the ground truth and the resolved
configuration. The table it prints is measured against the twin's ground truth: how far the
untracked target wandered and how far its defocus drifted, which is what tracking and focusing
have to correct.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tomopilot.cli.common import console, user_errors
from tomopilot.cli.twin import describe_table
from tomopilot.core.config import write_resolved_config
from tomopilot.core.files import atomic_write_text
from tomopilot.instrument import LowDoseArea
from tomopilot.instrument.twin import TwinConfig, TwinMicroscope
from tomopilot.io.mrc_image import write_mrc

TOUR_TILTS_DEG = (0.0, 30.0, -30.0, 60.0, -60.0)


def tour_config(profile: str, seed: int) -> TwinConfig:
    """A lamella on the chosen stage, with 1k Records (binned 4× from 4k) for a quick tour."""
    data: dict[str, Any] = {
        "seed": seed,
        "stage": {"profile": profile},
        "presets": {"record": {"binning": 4, "camera_area_px": [4096, 4096]}},
    }
    return TwinConfig.model_validate(data)


def run_tour(out: Path, profile: str, seed: int, progress: Progress) -> Table:
    """Take the tour on one stage profile; returns the ground-truth table."""
    config = tour_config(profile, seed)
    scope = TwinMicroscope(config)
    folder = out / profile
    write_resolved_config(config, folder / "twin_config.yaml")
    task = progress.add_task(f"{profile}: tour", total=3 + len(TOUR_TILTS_DEG))
    scope.stage.move_to(x_um=0.0, y_um=0.0, backlash_compensate=True)
    scope.measurements.eucentricity()
    progress.advance(task)
    scope.measurements.eucentricity(fine=True)
    progress.advance(task)
    scope.measurements.autofocus(-3.0)
    progress.advance(task)
    table = Table(title=f"{profile} stage, seed {seed}: untracked target against the truth")
    for column in (
        "tilt (°)",
        "true tilt (°)",
        "target off beam x, y (nm)",
        "true defocus (µm)",
        "mean counts",
        "dose (e/Å²)",
        "clock (s)",
    ):
        table.add_column(column, justify="right")
    target: tuple[float, float, float] | None = None
    for tilt in TOUR_TILTS_DEG:
        scope.stage.tilt_to(tilt, backlash_compensate=True)
        image = scope.camera.acquire(LowDoseArea.RECORD)
        truth = scope.ground_truth.exposure(image.exposure_id)
        if target is None:
            target = truth.specimen_centre_um
        dx, dy = truth.offset_nm(target)
        name = f"tour_{profile}_{tilt:+05.1f}.mrc".replace("+", "p").replace("-", "m")
        write_mrc(
            folder / name,
            image.data,
            pixel_size_a=image.pixel_size_a,
            labels=[f"tomopilot twin tour, {profile}, tilt {tilt:g}"],
        )
        table.add_row(
            f"{tilt:g}",
            f"{truth.tilt_deg:.2f}",
            f"{dx:+.0f}, {dy:+.0f}",
            f"{truth.defocus_um:.2f}",
            f"{image.mean_counts:.2f}",
            f"{truth.dose_e_a2:.2f}",
            f"{scope.clock.now_s():.0f}",
        )
        progress.advance(task)
    scope.ground_truth.write_json(folder / "ground_truth.json")
    atomic_write_text(folder / "twin.json", json.dumps(scope.describe(), indent=1))
    return table


def tour_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("twin_tour"),
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the twin.")] = 7,
) -> None:
    """Tour the twin on both stage profiles: untracked Records at a few tilts, with the truth."""
    with user_errors():
        out.mkdir(parents=True, exist_ok=True)
        for table in describe_table(TwinMicroscope(tour_config("autoloader", seed))):
            console.print(table)
        tables = []
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
            for profile in ("autoloader", "side-entry"):
                tables.append(run_tour(out, profile, seed, progress))
        for table in tables:
            console.print(table)
        console.print(
            "The side-entry stage moves the untracked target further and shifts its focus "
            "more: that is what tracking must correct. Images, ground truth and resolved "
            f"configurations are in {out}/."
        )
