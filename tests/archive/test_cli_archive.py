"""The commands: acquire records (and serves), archive list/import, serve refuses a bad database."""

from __future__ import annotations

import re
from pathlib import Path

from archive_helpers import dump, write_config
from typer.testing import CliRunner

from tomopilot.cli.main import app
from tomopilot.store import open_store
from tomopilot.store.database import DEFAULT_DB_NAME


def test_acquire_serve_records_the_run_and_prints_a_token(tmp_path: Path) -> None:
    config = write_config(tmp_path, settings={"minTilt": -3, "maxTilt": 3})
    result = CliRunner().invoke(
        app, ["acquire", str(config), "--serve", "--port", "0", "--no-report"]
    )
    assert result.exit_code == 0, result.output
    output = result.output.replace("\n", "")
    assert re.search(r"web monitor: http://127\.0\.0\.1:\d+/", output)
    assert re.search(r"control token: \S{20,}", output)
    store = open_store(tmp_path / "run" / DEFAULT_DB_NAME)
    rows = dump(store)
    store.close()
    assert len(rows["exposure"]) == 9 and len(rows["ground_truth"]) == 9
    listing = CliRunner().invoke(app, ["archive", "list", "--db", str(tmp_path / "run")])
    assert listing.exit_code == 0 and "L1" in listing.output and "9" in listing.output


def test_serve_refuses_a_corrupt_database_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / DEFAULT_DB_NAME).write_bytes(b"garbage" * 100)
    result = CliRunner().invoke(app, ["serve", "--db", str(tmp_path), "--port", "0"])
    assert result.exit_code == 1
    assert "not an SQLite database" in result.output.replace("\n", "")
    assert "Traceback" not in result.output
    assert (tmp_path / DEFAULT_DB_NAME).read_bytes() == b"garbage" * 100
