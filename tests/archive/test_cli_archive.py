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


def test_the_monitor_process_controls_the_engine_with_the_token(tmp_path: Path) -> None:
    import json
    import urllib.error
    import urllib.request

    from tomopilot.acquisition.control import EngineControl
    from tomopilot.web.monitor_process import MonitorProcess

    store = open_store(tmp_path)  # an empty archive, migrated by the engine's side first
    store.close()
    control = EngineControl()
    seen: list[tuple[str, dict[str, object]]] = []
    monitor = MonitorProcess(
        str(tmp_path / DEFAULT_DB_NAME),
        control,
        host="127.0.0.1",
        port=0,
        notify=lambda action, detail: seen.append((action, detail)),
    ).start()

    def post(path: str, token: str | None) -> int:
        request = urllib.request.Request(f"{monitor.url}{path}", method="POST", data=b"")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    try:
        assert post("/api/control/pause", None) == 401
        assert post("/api/control/pause", "wrong") == 403
        assert not control.paused
        assert post("/api/control/pause", monitor.token) == 200
        assert control.paused
        assert post("/api/control/skip/3", monitor.token) == 200
        assert control.skipped_targets() == {3}
        assert post("/api/control/resume", monitor.token) == 200
        assert not control.paused
        with urllib.request.urlopen(f"{monitor.url}/api/sessions", timeout=30) as response:
            assert json.loads(response.read()) == []
    finally:
        monitor.stop()
    assert seen == [("paused", {}), ("skipped", {"target": 3}), ("running", {})]
