"""A real headless Chromium watches a twin acquisition live (Debian's chromium via Playwright).

The monitor runs as ``acquire --serve`` runs it (a child process reading the archive). The run
pauses after a few Records; the browser opens the session and tilt-series pages; the run resumes
through the token-protected control API (the child forwards it to this process), and the pages
must show the new tilts without a reload, with plots drawn and thumbnails decoded. Screenshots
go to ``test-artifacts/browser/`` (or ``$TOMOPILOT_TEST_ARTIFACTS/browser``). No browser is
downloaded: the system's Chromium is driven through ``executable_path``; CI (``CI=true``) fails
when it is missing, a developer's machine without it skips.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from archive_helpers import write_config
from sqlalchemy import func, select

from tomopilot.acquisition.control import EngineControl
from tomopilot.acquisition.events import ExposureRecorded
from tomopilot.acquisition.output.side_files import detach_run_log
from tomopilot.acquisition.plan.run_config import load_acquire_config
from tomopilot.acquisition.run import attach_outputs, start_run
from tomopilot.archive.live import record_run
from tomopilot.store import open_store
from tomopilot.store.models import ExposureRow
from tomopilot.web.monitor_process import MonitorProcess

CHROMIUM = Path(os.environ.get("TOMOPILOT_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = (
    Path(
        os.environ.get(
            "TOMOPILOT_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"
        )
    )
    / "browser"
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
N_TILTS = 13  # -18 … 18 in 3° steps
N_TARGETS = 3


def _chromium() -> Path:
    if not CHROMIUM.is_file():
        message = f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + "; .ci/run installs it")
        pytest.skip(message)
    return CHROMIUM


def _post(url: str, token: str | None) -> int:
    request = urllib.request.Request(url, method="POST", data=b"")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_a_browser_sees_tilts_arrive_without_reloading(tmp_path: Path) -> None:
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    config = write_config(tmp_path, settings={"minTilt": -18, "maxTilt": 18, "sortByTilt": False})
    control = EngineControl()
    engine, resolved = start_run(load_acquire_config(config), control=control)
    handler = attach_outputs(engine, resolved)
    store = open_store(engine.plan.run_dir)
    recorder = record_run(engine, resolved, store)
    n_recorded = [0]

    def pause_early(event: ExposureRecorded) -> None:
        n_recorded[0] += 1
        if n_recorded[0] == 4:
            control.pause()

    engine.events.subscribe(ExposureRecorded, pause_early)
    # as `acquire --serve`: the monitor in a child process, control sent back to this one
    server = MonitorProcess(store.url, control, host="127.0.0.1", port=0).start()
    assert server.url.startswith("http://127.0.0.1:")
    worker = threading.Thread(target=engine.run, name="acquisition")
    worker.start()
    outside_requests: list[str] = []
    errors: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while n_recorded[0] < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert n_recorded[0] == 4 and recorder.flush(30)
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),
                executable_path=str(chromium),
                headless=True,
                args=FLAGS,
                viewport={"width": 1280, "height": 900},
            )
            try:
                session_page = context.new_page()
                series_page = context.new_page()
                for page in (session_page, series_page):
                    page.on(
                        "request",
                        lambda r: (
                            None
                            if r.url.startswith(server.url) or r.url.startswith("data:")
                            else outside_requests.append(r.url)
                        ),
                    )
                    page.on("pageerror", lambda e: errors.append(str(e)))
                session_page.goto(f"{server.url}/sessions/1")
                series_page.goto(f"{server.url}/series/1")
                for page in (session_page, series_page):
                    page.evaluate("window.__sameDocument = 'yes'")
                    page.wait_for_function(
                        "window.tomopilotLive && window.tomopilotLive.revision !== null"
                    )
                # the page lists exactly what the archive holds for series 1 at the pause
                with store.session() as db:
                    n_archived = db.scalar(
                        select(func.count())
                        .select_from(ExposureRow)
                        .where(ExposureRow.tilt_series_id == 1)
                    )
                n_rows = series_page.locator(".exposure-row").count()
                assert n_archived is not None and n_archived >= 1
                assert n_rows == n_archived
                session_page.screenshot(path=ARTIFACTS / "session_paused.png", full_page=True)
                series_page.screenshot(path=ARTIFACTS / "series_paused.png", full_page=True)

                # control without the token is refused; with it the run goes on
                assert _post(f"{server.url}/api/control/resume", None) == 401
                assert control.paused
                # the session page's Resume button, with the token typed in
                session_page.fill("#control-token", server.token)
                session_page.click("button[data-control=resume]")
                session_page.wait_for_function(
                    "document.getElementById('control-result') === null"
                    " || document.getElementById('control-result').textContent === 'running'"
                )
                deadline = time.monotonic() + 30
                while control.paused and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert not control.paused

                series_page.wait_for_function(
                    f"document.querySelectorAll('.exposure-row').length > {n_rows}"
                    " && window.__sameDocument === 'yes'",
                    timeout=120_000,
                )
                worker.join(timeout=300)
                assert not worker.is_alive()
                assert recorder.flush(30)
                series_page.wait_for_function(
                    f"document.querySelectorAll('.exposure-row').length === {N_TILTS}",
                    timeout=60_000,
                )
                session_page.wait_for_function(
                    "document.getElementById('session-status').textContent.trim() === 'finished'",
                    timeout=60_000,
                )
                for page in (session_page, series_page):
                    assert page.evaluate("window.__sameDocument") == "yes"  # never reloaded
                    assert page.evaluate("window.tomopilotLive.refreshes") >= 1
                # every thumbnail decoded, every plot drawn with a real size
                series_page.wait_for_function(
                    "Array.from(document.querySelectorAll('.thumb img'))"
                    ".every(i => i.complete && i.naturalWidth > 0)",
                    timeout=30_000,
                )
                n_thumbs = series_page.locator(".thumb img").count()
                assert n_thumbs == N_TILTS
                plots = series_page.evaluate(
                    "Array.from(document.querySelectorAll('svg.plot')).map(s => {"
                    " const b = s.getBoundingClientRect();"
                    " return [s.id, b.width, b.height, s.querySelectorAll('polyline').length,"
                    " s.querySelectorAll('circle').length]; })"
                )
                by_id = {p[0]: p[1:] for p in plots}
                for plot_id in ("plot-x", "plot-y", "plot-error", "plot-defocus", "plot-counts"):
                    width, height, n_lines, n_marks = by_id[plot_id]
                    assert width > 300 and height > 200 and n_lines >= 1 and n_marks >= N_TILTS
                progress = session_page.locator("#progress-text").inner_text()
                assert progress.startswith(f"{N_TILTS * N_TARGETS} / {N_TILTS * N_TARGETS}")
                session_page.screenshot(path=ARTIFACTS / "session_finished.png", full_page=True)
                series_page.screenshot(path=ARTIFACTS / "series_finished.png", full_page=True)
                area_page = context.new_page()
                area_page.goto(f"{server.url}/areas/1")
                assert area_page.locator("polygon.footprint").count() == N_TARGETS
                area_page.screenshot(path=ARTIFACTS / "area_map.png", full_page=True)
            finally:
                context.close()
    finally:
        control.resume()
        if worker.is_alive():
            control.abort()
            worker.join(timeout=120)
        server.stop()
        recorder.close()
        detach_run_log(handler)
        store.close()
    assert outside_requests == []  # nothing fetched from another host
    assert errors == []
    summary = json.loads(json.dumps({"thumbnails": n_thumbs, "plots": len(plots)}))
    assert summary["plots"] >= 6
