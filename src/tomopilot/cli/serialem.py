"""``tomopilot serialem check``: connect to SerialEM, show what tomopilot will use, refuse what it
cannot support."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from tomopilot.acquisition.plan.run_config import load_acquire_config, resolve_run
from tomopilot.cli.common import console, err_console, user_errors
from tomopilot.instrument.serialem import (
    SerialEMOptions,
    check_setup,
    open_serialem,
    resolve_address,
)

serialem_app = typer.Typer(help="Drive a real microscope through SerialEM.", no_args_is_help=True)


def _needs(config_path: Path) -> tuple[float, float, str | None, int | None]:
    """The image shift and tilt a run needs, and the configured SerialEM address."""
    config = load_acquire_config(config_path)
    resolved = resolve_run(config, limits=(90.0, 1e6))  # the real limits are what we check
    shifts = [max(abs(t.ss_x_um), abs(t.ss_y_um)) for t in resolved.targets if not t.skip]
    tilts = [abs(step.tilt_deg) for step in resolved.scheme.steps()]
    return (
        max(shifts, default=0.0),
        max(tilts, default=0.0),
        config.microscope.host,
        config.microscope.port,
    )


def check_command(
    config: Annotated[
        Path | None,
        typer.Argument(
            help="An acquisition configuration: also check its targets and tilts fit.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="SerialEM's address (default PY_SERIALEM_IP or 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="SerialEM's port (default PY_SERIALEM_PORT or 48888).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Connect to SerialEM; report its version, Low Dose set-up, camera, limits and the
    calibrations tomopilot will use; exit 1 with the reasons if the set-up cannot run."""
    with user_errors():
        needed_is = needed_tilt = None
        if config is not None:
            needed_is, needed_tilt, cfg_host, cfg_port = _needs(config)
            host = host or cfg_host
            port = port or cfg_port
        address = resolve_address(host, port)
        scope = open_serialem(address, options=SerialEMOptions(), prepare=False)
        report = check_setup(scope, needed_image_shift_um=needed_is, needed_tilt_deg=needed_tilt)
    if as_json:
        typer.echo(json.dumps({"address": str(address), **report.as_dict()}, indent=2))
    else:
        table = Table(title=f"SerialEM at {address}", box=box.SIMPLE_HEAD)
        for column in ("", "", ""):
            table.add_column(column)
        last = None
        for section, name, value in report.facts:
            table.add_row(section if section != last else "", name, value)
            last = section
        console.print(table)
        for note in report.notes:
            console.print(f"note: {note}")
        for problem in report.problems:
            err_console.print(f"[bold red]refused:[/] {problem}")
        if report.ok:
            console.print("[green]tomopilot can run on this SerialEM set-up[/]")
    if not report.ok:
        raise typer.Exit(1)


serialem_app.command("check")(check_command)
