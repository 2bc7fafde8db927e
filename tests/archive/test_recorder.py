"""The live recorder: one twin run recorded through SQLite and PostgreSQL, a database that dies."""

from __future__ import annotations

import math
import time
from pathlib import Path

import mdocfile
import pytest
from archive_helpers import dump, fresh_postgres, set_connections, write_config
from sqlalchemy import func, select

from tomopilot.acquisition.events import ExposureRecorded
from tomopilot.acquisition.plan.run_config import load_acquire_config
from tomopilot.acquisition.quality import assess_run_dir
from tomopilot.acquisition.run import start_run
from tomopilot.archive.live import session_info
from tomopilot.archive.recorder import PENDING_FILE, RECORDED_KINDS, Recorder
from tomopilot.archive.truth import live_truth_source
from tomopilot.core.events import Event, Message
from tomopilot.store import open_store
from tomopilot.store.models import EventLogRow, ExposureRow, GroundTruthRow, TiltSeriesRow


def _engine(folder: Path, **settings: object):
    config = write_config(folder, settings={"sortByTilt": True, **settings})
    return start_run(load_acquire_config(config))


def _recorder(store, engine, resolved, token: str = "t") -> Recorder:
    recorder = Recorder(
        store,
        session_info(engine, resolved),
        truth=live_truth_source(engine.scope, engine.journal_path),
        token=token,
        retry_s=0.02,
        max_retry_s=0.2,
    )
    recorder.attach(engine.events)
    return recorder


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory):
    """One twin run recorded at once into SQLite (in the run folder) and PostgreSQL."""
    folder = tmp_path_factory.mktemp("recorded")
    engine, resolved = _engine(folder)
    events: list[Event] = []
    engine.events.subscribe(Event, events.append)
    with fresh_postgres() as pg_url:
        sqlite = open_store(engine.plan.run_dir)
        postgres = open_store(pg_url)
        recorders = [_recorder(sqlite, engine, resolved), _recorder(postgres, engine, resolved)]
        summary = engine.run()
        assert all(r.close() for r in recorders)
        yield engine, summary, events, sqlite, postgres
        sqlite.close()
        postgres.close()


def test_sqlite_and_postgresql_hold_identical_rows(recorded) -> None:
    _, summary, _, sqlite, postgres = recorded
    rows_sqlite, rows_pg = dump(sqlite), dump(postgres)
    assert len(rows_sqlite["exposure"]) == summary.n_exposures == 21
    assert len(rows_sqlite["ground_truth"]) == 21
    assert rows_sqlite == rows_pg


def test_rows_hold_what_the_engine_did_and_the_twin_truth(recorded) -> None:
    engine, _, events, sqlite, _ = recorded
    records = [e for e in events if isinstance(e, ExposureRecorded)]
    quality = assess_run_dir(engine.plan.run_dir)
    with sqlite.reader() as db:
        for target in quality.targets:
            series = db.scalars(
                select(TiltSeriesRow).filter_by(name=f"L1_ts_{target.target:03d}")
            ).one()
            exposures = list(series.exposures)
            mine = [e for e in records if e.target == target.target]
            assert [x.tilt_deg for x in exposures] == [e.tilt_deg for e in mine]
            for row, event in zip(exposures, mine, strict=True):
                assert row.tracking_error_x_um == event.alignment_x_um
                assert row.measured_y_um == pytest.approx(
                    event.image_shift_y_um + event.alignment_y_um, abs=1e-8
                )
                assert row.target_defocus_um == event.target_defocus_um
                assert row.dose_e_a2 == pytest.approx(3.0)
            # the true error beside the measured one: what the ground-truth report computes
            true_nm = [
                math.hypot(x.truth.true_error_x_nm, x.truth.true_error_y_nm) for x in exposures
            ]
            assert true_nm == pytest.approx(target.tracking_nm, abs=1e-6)
            # the files were sorted by tilt at the end: sections follow the mdoc
            mdoc = mdocfile.read(engine.plan.run_dir / series.mdoc_file)
            for row in exposures:
                assert float(mdoc["TiltAngle"][row.section]) == pytest.approx(row.tilt_deg)
            assert sorted(x.section for x in exposures) == list(range(len(exposures)))
            assert series.status == "finished"


def test_a_database_that_dies_mid_run_loses_no_event(tmp_path: Path) -> None:
    engine, resolved = _engine(tmp_path)
    messages: list[Message] = []
    engine.events.subscribe(Message, messages.append)
    counted: list[Event] = []
    with fresh_postgres() as url:
        store = open_store(url)
        recorder = _recorder(store, engine, resolved)
        engine.events.subscribe(Event, counted.append)
        n = [0]

        def outage(event: ExposureRecorded) -> None:
            n[0] += 1
            if n[0] == 4:
                set_connections(url, False)
            if n[0] == 12:  # the writer must have met the dead server by now
                deadline = time.monotonic() + 20
                while recorder.healthy and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert not recorder.healthy
                set_connections(url, True)

        engine.events.subscribe(ExposureRecorded, outage)
        summary = engine.run()
        assert summary.status == "finished"  # the acquisition never noticed
        assert recorder.close(timeout_s=60)
        assert recorder.n_failures > 0
        assert any("unreachable" in m.text for m in messages)
        with store.reader() as db:
            assert db.scalar(select(func.count()).select_from(ExposureRow)) == summary.n_exposures
            n_logged = db.scalar(select(func.count()).select_from(EventLogRow))
            assert db.scalar(select(func.count()).select_from(GroundTruthRow)) == 21
        assert n_logged == len([e for e in counted if e.kind in RECORDED_KINDS])
        store.close()


def test_events_still_queued_when_the_run_ends_are_saved_and_imported_later(
    tmp_path: Path,
) -> None:
    from tomopilot.archive.import_run import import_run

    engine, resolved = _engine(tmp_path)
    with fresh_postgres() as url:
        store = open_store(url)
        recorder = _recorder(store, engine, resolved)
        engine.events.subscribe(
            ExposureRecorded, lambda e: set_connections(url, False) if e.section == 2 else None
        )
        summary = engine.run()
        assert not recorder.close(timeout_s=1.0)
        pending = engine.plan.run_dir / PENDING_FILE
        assert pending.is_file()
        set_connections(url, True)
        result = import_run(store, engine.plan.run_dir)
        assert result.replayed_events > 0
        with store.reader() as db:
            assert db.scalar(select(func.count()).select_from(ExposureRow)) == summary.n_exposures
            kinds = db.scalars(select(EventLogRow.kind)).all()
            assert kinds.count("ExposureRecorded") == summary.n_exposures
            assert "RunFinished" in kinds
        store.close()


def test_a_dewar_refill_is_recorded_as_housekeeping(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from tomopilot.store.models import HousekeepingRow
    from tomopilot.web.app import create_app

    # The fill goes between the middle two Records, placed from an uninterrupted run's own
    # timeline: a fixed clock time falls elsewhere (or after the run) whenever the
    # microscope's time costs change.
    (tmp_path / "plain").mkdir()
    no_fill = {"housekeeping": {"dewar_first_fill_s": 1e9}}
    plain, _ = start_run(load_acquire_config(write_config(tmp_path / "plain", twin=no_fill)))
    assert plain.run().status == "finished"
    records = sorted(
        (e.time_s, e.time_s + e.duration_s)
        for e in plain.scope.ground_truth.exposures  # type: ignore[attr-defined]
        if e.area == "Record"
    )
    middle = len(records) // 2
    fill_s = (records[middle - 1][1] + records[middle][0]) / 2
    config = write_config(
        tmp_path,
        twin={"housekeeping": {"dewar_first_fill_s": fill_s, "dewar_refill_duration_s": 300.0}},
    )
    engine, resolved = start_run(load_acquire_config(config))
    store = open_store(engine.plan.run_dir)
    recorder = _recorder(store, engine, resolved)
    engine.run()
    assert recorder.close()
    truth = engine.scope.ground_truth  # type: ignore[attr-defined]
    assert truth.time_by_activity_s["dewar_wait"] > 250.0  # the fill fell mid-run
    with store.reader() as db:
        waits = db.query(HousekeepingRow).filter_by(task="dewar_wait").all()
    assert waits, "the refill the engine waited out is in the archive"
    assert sum(w.duration_s for w in waits) == pytest.approx(
        truth.time_by_activity_s["dewar_wait"], rel=1e-9
    )
    with TestClient(create_app(store)) as client:
        page = client.get("/sessions/1").text
        assert "dewar_wait" in page and 'id="housekeeping"' in page
    store.close()


def test_an_event_the_database_refuses_is_set_aside_not_retried_forever(tmp_path: Path) -> None:
    import json

    from tomopilot.archive.apply_events import SessionInfo

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    store = open_store(run_dir)
    recorder = Recorder(store, SessionInfo(run_dir=str(run_dir), name="R"), token="k")
    recorder.submit({"kind": "RunStarted", "time_s": 0.0, "strategy": "pace", "n_tilts": 3})
    recorder.submit({"kind": "ExposureRecorded", "time_s": 1.0, "target": 1})  # no tilt: refused
    recorder.submit({"kind": "RunFinished", "time_s": 2.0, "status": "finished"})
    assert recorder.close(timeout_s=30)
    assert recorder.n_rejected == 1 and recorder.n_written == 2 and recorder.n_failures == 0
    kept = [json.loads(line) for line in (run_dir / PENDING_FILE).read_text().splitlines()]
    assert [k["event"]["kind"] for k in kept] == ["ExposureRecorded"]
    with store.reader() as db:
        assert db.scalars(select(EventLogRow.kind).order_by(EventLogRow.id)).all() == [
            "RunStarted",
            "RunFinished",
        ]
    store.close()
    from tomopilot.archive.import_run import _replay_pending

    store = open_store(run_dir)  # replaying the pending file skips what stays unrecordable
    assert _replay_pending(store, run_dir, SessionInfo(run_dir=str(run_dir), name="R")) == 0
    store.close()
