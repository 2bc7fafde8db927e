"""``python -m tomopilot``: the same as the ``tomopilot`` command."""

from tomopilot.cli.main import app

app(prog_name="tomopilot")
