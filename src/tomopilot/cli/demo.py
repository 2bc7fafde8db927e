"""``tomopilot demo``: the main job of ``make demo``, on the digital twin.

It acquires nine tilt series in parallel on a lamella (±60°, 3° steps, groups of 2) with the
``fused`` strategy, prints the ground-truth report, and converts a synthetic microED series.
The configuration it runs ships with the package; ``--write-config`` copies it for editing.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
import yaml

from tomopilot.acquisition.plan.run_config import load_acquire_config
from tomopilot.acquisition.quality import assess_run_dir
from tomopilot.cli.acquire import acquire_command, quality_table
from tomopilot.cli.common import console, user_errors
from tomopilot.core.errors import ConfigError
from tomopilot.core.files import atomic_write_text

EXAMPLE = "lamella_9_targets.yaml"


def example_config_path() -> Path:
    """The example acquisition configuration shipped with the package."""
    return Path(str(resources.files("tomopilot.examples").joinpath(EXAMPLE)))


def write_demo_config(out: Path) -> tuple[Path, Path]:
    """Write the example into ``out`` for a fresh run; its path and the run folder.

    The example stays as written (only the output folder changes), so that what the user set
    stays distinguishable from defaults; the run writes its resolved settings itself. The
    output folder is relative to the YAML, as every path in it is.
    """
    run_dir = out / "lamella"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # the demo always starts afresh
    example = yaml.safe_load(example_config_path().read_text(encoding="utf-8"))
    example["output"]["dir"] = run_dir.name
    out.mkdir(parents=True, exist_ok=True)
    path = out / "lamella_demo.yaml"
    atomic_write_text(path, yaml.safe_dump(example, sort_keys=False, allow_unicode=True))
    config = load_acquire_config(path)  # refuse a broken example before anything runs
    if config.output.dir.resolve() != run_dir.resolve():
        raise ConfigError(f"the demo would write to {config.output.dir}, not {run_dir}", path=path)
    return path, run_dir


def demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("demo_output"),
    strategy: Annotated[str, typer.Option("--strategy", help="fused, pace or none.")] = "fused",
    write_config: Annotated[
        Path | None, typer.Option("--write-config", help="Only copy the example YAML here.")
    ] = None,
    microed: Annotated[bool, typer.Option(help="Also convert a synthetic microED series.")] = True,
) -> None:
    """Acquire nine tilt series on a twin lamella, report them, and convert a microED series."""
    with user_errors():
        if write_config is not None:
            shutil.copyfile(example_config_path(), write_config)
            console.print(f"wrote {write_config}; run it with: tomopilot acquire {write_config}")
            return
        path, run_dir = write_demo_config(out)
        console.rule("acquisition on the digital twin")
        acquire_command(path, strategy=strategy, report=False)
        console.print(quality_table(assess_run_dir(run_dir), f"{strategy}: ground truth"))
        if microed:
            from tomopilot.cli.diffraction import demo_command as diffraction_demo

            console.rule("microED: TIA → MRC → SMV")
            diffraction_demo(out=out / "microed", frames=8, size=256, seed=7, force=True)


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the main command."""
    app.command("demo")(demo_command)
