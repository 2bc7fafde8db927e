"""The ``tomopilot`` command.

Subcommands are imported when they are used, not when ``tomopilot`` starts: importing every
subcommand (acquisition engine, web server, archive, CTF fitting, …) costs about 2 CPU-s, which
a ``tomopilot preprocess`` job on one movie would otherwise pay. ``tomopilot --help`` imports
them all to list them with their help.
"""

from __future__ import annotations

import importlib

import typer
from typer.core import TyperGroup

try:  # typer >= 0.20 ships its own copy of click
    from typer import _click as click
except ImportError:  # pragma: no cover - older typer uses click itself
    import click  # type: ignore[no-redef]

from tomopilot import __version__
from tomopilot.cli.common import show_library_warnings

# name -> (module, attribute). The attribute is a ``typer.Typer`` (a command group) or a
# ``register(app)`` function that adds one or more commands; for the latter, the name is the
# command it adds (a module whose ``register`` adds several is listed once per command).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("tomopilot.cli.demo", "register"),
    "acquire": ("tomopilot.cli.acquire", "register"),
    "report": ("tomopilot.cli.acquire", "register"),
    "sem-run": ("tomopilot.cli.sem_run", "register"),
    "serve": ("tomopilot.cli.serve", "register"),
    "diffraction": ("tomopilot.cli.diffraction", "diffraction_app"),
    "targets": ("tomopilot.cli.targets", "targets_app"),
    "atlas": ("tomopilot.cli.atlas", "atlas_app"),
    "geometry": ("tomopilot.cli.geometry", "geometry_app"),
    "preprocess": ("tomopilot.cli.preprocess", "preprocess_app"),
    "twin": ("tomopilot.cli.twin", "twin_app"),
    "archive": ("tomopilot.cli.archive", "archive_app"),
    "serialem": ("tomopilot.cli.serialem", "serialem_app"),
}


def load_subcommand(name: str) -> click.Command:
    """Import subcommand ``name`` and build its click command."""
    module_name, attribute = SUBCOMMANDS[name]
    target = getattr(importlib.import_module(module_name), attribute)
    holder = typer.Typer()
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
    else:
        target(holder)
    built = typer.main.get_command(holder)
    if isinstance(built, TyperGroup):
        return built.commands[name]
    return built


class LazyGroup(TyperGroup):
    """The main command group: subcommands from :data:`SUBCOMMANDS`, imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in SUBCOMMANDS if n not in self.commands)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in SUBCOMMANDS:
            self.commands[cmd_name] = load_subcommand(cmd_name)
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    name="tomopilot",
    help="An autopilot for cryo-electron tomography, on a digital twin or a real microscope.",
    cls=LazyGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


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
