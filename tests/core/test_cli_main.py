"""The ``tomopilot`` command loads its subcommands lazily and still lists them all."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from tomopilot.cli.main import SUBCOMMANDS, app, load_subcommand


def test_starting_imports_no_subcommand_module() -> None:
    code = (
        "import sys; from tomopilot.cli.main import SUBCOMMANDS; "
        "print(sorted({m for m, _ in SUBCOMMANDS.values()} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_help_lists_every_subcommand_with_its_help() -> None:
    result = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name in SUBCOMMANDS:
        command = load_subcommand(name)
        assert command.name == name
        first_words = " ".join((command.help or "").split()[:3])
        assert first_words
        assert any(name in line and first_words in line for line in lines), (name, first_words)


def test_a_subcommand_runs_after_lazy_loading() -> None:
    result = CliRunner().invoke(app, ["preprocess", "--help"])
    assert result.exit_code == 0, result.output
    assert "motioncorr" in result.output
    result = CliRunner().invoke(app, ["no-such-command"])
    assert result.exit_code != 0
