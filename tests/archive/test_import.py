"""``tomopilot archive import``: tomopilot and SerialEM/PACEtomo folders, twice, and torn files."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from archive_helpers import dump, recorded_twin_run, write_config
from typer.testing import CliRunner

from tomopilot.acquisition.plan.run_config import load_acquire_config
from tomopilot.acquisition.quality import assess_run_dir
from tomopilot.acquisition.run import start_run
from tomopilot.archive.import_run import import_run
from tomopilot.archive.live import record_run
from tomopilot.archive.mdoc_sections import ArchiveImportError, TornRunFileError
from tomopilot.cli.main import app
from tomopilot.store import Store, open_store
from tomopilot.store.models import AreaRow, ExposureRow, TiltSeriesRow

PACETOMO_MDOC = "krios-d3645_sem4.1.0beta_pacetomo_L1_ts_001.mrc.mdoc"
EMBL_MDOC = "embl-krios-2015_TS_01.mrc.mdoc"


@pytest.fixture(scope="module")
def twin_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished twin run folder, recorded live into its own SQLite archive."""
    return recorded_twin_run(tmp_path_factory.mktemp("twin_run"), sortByTilt=True)


def test_importing_a_twin_run_twice_changes_nothing(twin_run: Path, tmp_path: Path) -> None:
    job = twin_run / "MotionCorr" / "job002"
    job.mkdir(parents=True, exist_ok=True)
    (job / "RELION_JOB_EXIT_SUCCESS").touch()
    store = open_store(tmp_path / "facility.sqlite")
    first = import_run(store, twin_run)
    assert (first.kind, first.n_series, first.n_exposures, first.n_new_exposures) == (
        "tomopilot",
        3,
        21,
        21,
    )
    assert first.n_truth == 21
    rows = dump(store)
    assert [r[3:6] for r in rows["processing_job"]] == [
        ("MotionCorr", "MotionCorr/job002", "finished")
    ]
    second = import_run(store, twin_run)
    assert second.n_new_exposures == 0
    assert dump(store) == rows
    # the truth rebuilt from the twin's command log is the report's truth
    quality = assess_run_dir(twin_run)
    with store.reader() as db:
        for target in quality.targets:
            series = db.query(TiltSeriesRow).filter_by(name=f"L1_ts_{target.target:03d}").one()
            true_nm = [
                math.hypot(e.truth.true_error_x_nm, e.truth.true_error_y_nm)
                for e in series.exposures
            ]
            assert true_nm == pytest.approx(target.tracking_nm, abs=1e-6)
    store.close()


def test_importing_a_run_recorded_live_keeps_what_the_recorder_saw(twin_run: Path) -> None:
    store = open_store(twin_run)
    live = dump(store)
    result = import_run(store, twin_run)
    assert result.n_new_exposures == 0
    after = dump(store)
    columns = [c.name for c in ExposureRow.__table__.columns if c.name != "recorded_utc"]
    for before_row, after_row in zip(live["exposure"], after["exposure"], strict=True):
        for name, old, new in zip(columns, before_row, after_row, strict=True):
            if old not in (None, ""):
                assert new == old, name  # nothing the recorder wrote is replaced
    # the files add what events do not carry: the mdoc's DateTime
    assert all(row[columns.index("datetime")] for row in after["exposure"])
    assert after["ground_truth"] == live["ground_truth"]
    assert import_run(store, twin_run).n_new_exposures == 0
    assert dump(store) == after
    store.close()


def _serialem_folder(real_data: Path, folder: Path) -> Path:
    folder.mkdir()
    for name in (PACETOMO_MDOC, EMBL_MDOC):
        shutil.copy(real_data / "mdoc" / name, folder / name)
    return folder


def test_a_serialem_folder_imports_in_acquisition_order(real_data: Path, tmp_path: Path) -> None:
    folder = _serialem_folder(real_data, tmp_path / "sem")
    store = open_store(tmp_path / "a.sqlite")
    result = import_run(store, folder)
    assert (result.kind, result.n_series, result.n_exposures) == ("serialem", 2, 82)
    with store.reader() as db:
        pace = (
            db.query(TiltSeriesRow)
            .filter_by(name="krios-d3645_sem4.1.0beta_pacetomo_L1_ts_001")
            .one()
        )
        tilts = [e.tilt_deg for e in pace.exposures]
        # dose-symmetric from 0 in groups of two, as PACEtomo took them
        assert tilts[:5] == pytest.approx([-0.00949884, 2.99163, 5.99177, -3.00663, -6.00726])
        first = pace.exposures[0]
        assert first.target_defocus_um == -5
        assert first.predicted_defocus_um == pytest.approx(-5.30089)
        assert first.mean_counts == pytest.approx(289.422)
        assert first.stage_z_um == pytest.approx(-2.56436)
    rows = dump(store)
    assert import_run(store, folder).n_new_exposures == 0
    assert dump(store) == rows
    store.close()


def test_a_torn_mdoc_is_a_clear_error_and_changes_nothing(real_data: Path, tmp_path: Path) -> None:
    folder = _serialem_folder(real_data, tmp_path / "sem")
    store_path = tmp_path / "a.sqlite"
    store = open_store(store_path)
    import_run(store, folder)
    before = dump(store)
    torn = folder / EMBL_MDOC
    text = torn.read_bytes()
    torn.write_bytes(text[: text.rindex(b"StagePosition") + 10])  # cut mid-line by a crash
    with pytest.raises(TornRunFileError, match=EMBL_MDOC):
        import_run(store, folder)
    assert dump(store) == before
    store.close()
    result = CliRunner().invoke(app, ["archive", "import", str(folder), "--db", str(store_path)])
    assert result.exit_code == 1
    output = result.output.replace("\n", "")  # rich wraps long lines
    assert "torn mdoc" in output and EMBL_MDOC in output
    assert "Traceback" not in result.output


def test_a_stack_shorter_than_its_mdoc_is_refused(real_data: Path, tmp_path: Path) -> None:
    folder = _serialem_folder(real_data, tmp_path / "sem")
    stack = folder / EMBL_MDOC.removesuffix(".mdoc")
    with mrcfile.new(stack) as mrc:
        mrc.set_data(np.zeros((5, 8, 8), np.float32))
    store = open_store(tmp_path / "a.sqlite")
    with pytest.raises(TornRunFileError, match="5 images"):
        import_run(store, folder)
    assert dump(store)["exposure"] == []
    store.close()


def test_a_folder_without_a_run_is_refused(tmp_path: Path) -> None:
    store = open_store(tmp_path / "a.sqlite")
    with pytest.raises(ArchiveImportError, match="no mdoc"):
        import_run(store, tmp_path)
    store.close()


def test_a_sequential_session_is_judged_area_by_area(tmp_path: Path) -> None:
    from tomopilot.acquisition.session import (
        assess_session,
        run_configured_session,
        sequential_plans,
    )

    presets = {
        "record": {"camera_area_px": [4096, 4096], "binning": 16},
        "preview": {"camera_area_px": [4096, 4096], "binning": 16, "exposure_s": 0.5},
    }
    config = write_config(
        tmp_path,
        strategy="sequential",
        seed=5,
        targets=[{"SSX": 0.0, "SSY": 0.0}, {"SSX": 1.5, "SSY": 0.5}],
        settings={"minTilt": -6, "maxTilt": 6, "tiltScheme": "bidirectional", "pretilt": 0},
        twin={"presets": presets},
    )
    engine, resolved = start_run(load_acquire_config(config))
    live = open_store(engine.plan.run_dir)
    recorder = record_run(engine, resolved, live)
    run_configured_session(engine, resolved)
    assert recorder.close()
    live_rows = dump(live)
    live_areas = _areas(live)
    # The series recorded live are a history a next session's predictor starts from.
    from tomopilot.archive.prediction_history import archive_history

    record_px = resolved.config.microscope.twin.presets.record
    history = archive_history(live, pixel_size_a=record_px.pixel_size_a)
    assert len(history) == 2
    assert all(len(h.points[0]) == 3 and len(h.points[1]) == 3 for h in history)  # start + 2
    live.close()
    quality = assess_session(engine.scope, sequential_plans(resolved, engine.plan), resolved)
    store = open_store(tmp_path / "a.sqlite")
    result = import_run(store, engine.plan.run_dir)
    assert (result.n_series, result.n_truth) == (2, result.n_exposures)
    with store.reader() as db:
        for area, judged in zip(("L1_t001_ts_001", "L1_t002_ts_001"), quality.targets, strict=True):
            series = db.query(TiltSeriesRow).filter_by(name=area).one()
            true_nm = [
                math.hypot(e.truth.true_error_x_nm, e.truth.true_error_y_nm)
                for e in series.exposures
            ]
            assert true_nm == pytest.approx(judged.tracking_nm, abs=1e-6)  # its own map
    # each area is its own row with its own target 1 and series, live and imported alike
    expected = {"L1_t001": [(1, ["L1_t001_ts_001"])], "L1_t002": [(1, ["L1_t002_ts_001"])]}
    assert {name: targets for name, (_, targets) in live_areas.items()} == expected
    assert {name: targets for name, (_, targets) in _areas(store).items()} == expected
    (x1, y1), (x2, y2) = live_areas["L1_t001"][0], live_areas["L1_t002"][0]
    assert (x2 - x1, y2 - y1) == pytest.approx((1.5, 0.5))  # the areas' stage positions
    store.close()
    # the live recorder looked up each area's own map too
    assert len(live_rows["ground_truth"]) == result.n_exposures
    assert [r[1:] for r in live_rows["ground_truth"]] == [
        r[1:] for r in dump(store)["ground_truth"]
    ]


def _areas(store: Store) -> dict[str, tuple[tuple[float, float], list[tuple[int, list[str]]]]]:
    """Each area's stage position and its targets with their series' names."""
    with store.reader() as db:
        out = {}
        for area in db.query(AreaRow).order_by(AreaRow.name):
            targets = []
            for target in sorted(area.targets, key=lambda t: t.number):
                series = db.query(TiltSeriesRow).filter_by(target_id=target.id)
                targets.append((target.number, sorted(s.name for s in series)))
            out[area.name] = ((area.stage_x_um or 0.0, area.stage_y_um or 0.0), targets)
        return out
