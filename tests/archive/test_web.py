"""The monitor's pages, API, downloads and security, on a recorded twin run (no browser)."""

from __future__ import annotations

import re
from pathlib import Path

import mdocfile
import numpy as np
import pytest
from archive_helpers import recorded_twin_run
from fastapi.testclient import TestClient

from tomopilot.acquisition.control import EngineControl
from tomopilot.store import open_store
from tomopilot.store.models import TiltSeriesRow
from tomopilot.web.app import LiveRun, create_app


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return recorded_twin_run(tmp_path_factory.mktemp("web_run"), sortByTilt=True)


@pytest.fixture
def client(run_dir: Path):
    store = open_store(run_dir)
    live = LiveRun(control=EngineControl(), token="s3cret-token")
    with TestClient(create_app(store, live)) as c:
        yield c, live
    store.close()


def test_pages_show_the_session_series_and_map(client) -> None:
    c, _ = client
    home = c.get("/")
    assert home.status_code == 200 and "L1" in home.text and "21 / 21" in home.text
    session = c.get("/sessions/1").text
    for marker in ("progress", "ETA (microscope time)", "dose rate", "Timeline", "L1_ts_003"):
        assert marker in session
    assert "3.00 e⁻/Å²/s" in session  # 3 e/Å² in 1 s Records
    series = c.get("/series/1").text
    for plot in ("plot-x", "plot-y", "plot-error", "plot-z", "plot-defocus", "plot-counts"):
        assert f'id="{plot}"' in series
    assert series.count('class="exposure-row"') == 7
    assert series.count("<polyline") >= 10
    assert "true x (twin)" in series and "true (twin)" in series
    assert series.count('class="thumb"') == 7
    area = c.get("/areas/1").text
    assert area.count('class="footprint"') == 3 and "9.0°" in area  # the last tilt
    assert area.count('data-status="done"') == 3  # a finished run's targets are done
    # nothing is loaded from another host: offline microscope networks
    for page in (home.text, session, series, area, c.get("/api/docs").text):
        assert not re.search(r'(src|href)="(https?:)?//', page)


def test_api_matches_the_files(client, run_dir: Path) -> None:
    c, _ = client
    sessions = c.get("/api/sessions").json()
    assert sessions[0]["n_exposures"] == 21 and sessions[0]["status"] == "finished"
    detail = c.get("/api/tilt-series/1").json()
    exposures = detail["exposures"]
    assert [e["ordinal"] for e in exposures] == list(range(7))
    assert detail["true_tracking_rms_nm"] > 0
    spec = c.get("/api/openapi.json").json()
    assert {"/api/sessions", "/api/tilt-series/{series_id}", "/api/control/pause"} <= set(
        spec["paths"]
    )
    # downloads: the stack byte for byte, the mdoc, and tilt angles in stack order
    stack = c.get("/series/1/stack.mrc")
    assert stack.content == (run_dir / "L1_ts_001.mrc").read_bytes()
    mdoc_text = c.get("/series/1/stack.mdoc").text
    assert mdoc_text == (run_dir / "L1_ts_001.mrc.mdoc").read_text()
    tilts = [float(v) for v in c.get("/series/1/tilts.tlt").text.split()]
    mdoc = mdocfile.read(run_dir / "L1_ts_001.mrc.mdoc")
    assert tilts == pytest.approx(list(mdoc["TiltAngle"]), abs=0.01)
    assert tilts == sorted(tilts)  # the run sorted its stacks by tilt
    png = c.get("/series/1/thumb/0.png")
    assert png.headers["content-type"] == "image/png" and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    import imagecodecs

    image = imagecodecs.png_decode(png.content)
    assert image.shape == (128, 128) and image.std() > 10  # 256² Record binned by 2, not blank
    assert c.get("/series/1/thumb/99.png").status_code == 404


@pytest.mark.parametrize(
    "name",
    [
        "../../../../etc/passwd",
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/etc/passwd",
        "%2Fetc%2Fpasswd",
        "frames/../../outside.txt",
        "..\\..\\outside.txt",
        "link_out",
        ".",
    ],
)
def test_downloads_never_leave_the_session_folder(client, run_dir: Path, name: str) -> None:
    c, _ = client
    outside = run_dir.parent / "outside.txt"
    outside.write_text("secret")
    link = run_dir / "link_out"
    if not link.exists():
        link.symlink_to(outside)
    response = c.get(f"/sessions/1/files/{name}")
    assert response.status_code == 404
    assert b"secret" not in response.content and b"root:" not in response.content


def test_a_tampered_database_path_cannot_reach_outside(client, run_dir: Path) -> None:
    c, _ = client
    store = c.app.state.monitor.store
    with store.session() as db:
        series = db.get(TiltSeriesRow, 2)
        series.stack_file = "../../../../etc/passwd"
    assert c.get("/series/2/stack.mrc").status_code == 404
    with store.session() as db:
        db.get(TiltSeriesRow, 2).stack_file = "L1_ts_002.mrc"
    assert c.get("/series/2/stack.mrc").status_code == 200
    assert c.get("/sessions/1/files/L1_ts_002.mrc.mdoc").status_code == 200


def test_control_needs_the_token(client) -> None:
    c, live = client
    page = c.get("/sessions/1").text
    assert 'id="control"' in page and 'src="/static/control.js"' in page  # buttons, no token
    assert live.token not in page
    assert c.get("/static/control.js").status_code == 200
    assert c.post("/api/control/pause").status_code == 401
    assert c.post("/api/control/pause", headers={"Authorization": "Bearer nope"}).status_code == 403
    assert c.post("/api/control/skip/2", headers={"X-Tomopilot-Token": "s3cret"}).status_code == 403
    assert not live.control.paused and live.control.skipped_targets() == set()
    ok = c.post("/api/control/pause", headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200 and live.control.paused
    ok = c.post("/api/control/skip/2", headers={"X-Tomopilot-Token": "s3cret-token"})
    assert ok.status_code == 200 and live.control.skipped_targets() == {2}
    assert (
        c.post("/api/control/resume", headers={"X-Tomopilot-Token": "s3cret-token"}).json()[
            "paused"
        ]
        is False
    )
    assert c.get("/api/control/pause").status_code == 405  # no control by a plain GET


def test_a_read_only_server_has_no_control(run_dir: Path) -> None:
    store = open_store(run_dir)
    with TestClient(create_app(store)) as c:
        assert c.post("/api/control/pause", headers={"X-Tomopilot-Token": "x"}).status_code == 404
        page = c.get("/sessions/1")
        assert page.status_code == 200
        assert 'id="control"' not in page.text and "control.js" not in page.text
    store.close()


def test_unknown_ids_are_404(client) -> None:
    c, _ = client
    for url in (
        "/sessions/99",
        "/series/99",
        "/areas/99",
        "/api/sessions/99",
        "/series/99/stack.mrc",
    ):
        assert c.get(url).status_code == 404


def test_svg_plot_scales_points_inside_the_frame() -> None:
    from tomopilot.web.svg import Line, line_plot

    svg = line_plot(
        [Line("a", [-60.0, 0.0, 60.0], [1.0, None, 3.0])], title="t", x_label="x", y_label="y"
    )
    points = [
        tuple(map(float, p.split(",")))
        for p in re.findall(r'cx="([\d.]+)" cy="([\d.]+)"', svg)
        for p in [",".join(p)]
    ]
    assert len(points) == 2  # the missing value is not drawn
    assert all(58 <= x <= 448 and 28 <= y <= 218 for x, y in points)
    assert "<polyline" not in svg  # a gap breaks the line; single points stay marks
    # ticks at -75 … 75 in steps of 25 cover the data: ±60° sit at 0.1 and 0.9 of the width
    np.testing.assert_allclose(sorted(x for x, _ in points), [58 + 0.1 * 390, 58 + 0.9 * 390])


def test_thumbnail_of_a_flat_image_is_grey_not_an_error() -> None:
    import imagecodecs

    from tomopilot.web.files import thumbnail_png

    image = imagecodecs.png_decode(thumbnail_png(np.full((300, 500), 7.0, np.float32)))
    assert image.shape == (75, 125)  # binned by 4: the longest side at most 160 px
    assert image.min() == image.max()
