"""The ``tomopilot`` command."""

from __future__ import annotations

import typer

from tomopilot import __version__
from tomopilot.cli import acquire, demo, sem_run, serve
from tomopilot.cli.archive import archive_app
from tomopilot.cli.common import show_library_warnings
from tomopilot.cli.diffraction import diffraction_app
from tomopilot.cli.geometry import geometry_app
from tomopilot.cli.preprocess import preprocess_app
from tomopilot.cli.serialem import serialem_app
from tomopilot.cli.targets import targets_app
from tomopilot.cli.twin import twin_app

app = typer.Typer(
    name="tomopilot",
    help="An autopilot for cryo-electron tomography, on a digital twin or a real microscope.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
app.add_typer(diffraction_app, name="diffraction")
app.add_typer(targets_app, name="targets")
app.add_typer(geometry_app, name="geometry")
app.add_typer(preprocess_app, name="preprocess")
app.add_typer(twin_app, name="twin")
app.add_typer(archive_app, name="archive")
app.add_typer(serialem_app, name="serialem")
demo.register(app)
acquire.register(app)
sem_run.register(app)
serve.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tomopilot {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """tomopilot: plan, acquire, track and preprocess cryo-ET tilt series."""
    show_library_warnings()
