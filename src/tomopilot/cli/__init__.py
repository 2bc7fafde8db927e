"""Command-line interface (typer + rich): the only code, with ``web/``, that talks to people."""
