"""The ``sequential`` strategy on the twin: Leginon's order, tracking measured against the truth,
exposure schedules, and a kill mid-series resumed with nothing lost or duplicated."""

from __future__ import annotations

import contextlib
import math
import re
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pytest
import yaml
from acq_helpers import write_config
from typer.testing import CliRunner

from tomopilot.acquisition.output.journal import replay_journal
from tomopilot.acquisition.plan.run_config import load_acquire_config
from tomopilot.acquisition.plan.sequential_settings import SequentialSettings
from tomopilot.acquisition.quality import assess, assess_run_dir
from tomopilot.acquisition.run import start_run
from tomopilot.acquisition.session import load_history, run_session, sequential_plans
from tomopilot.acquisition.strategies.sequential_focus import (
    fit_focus_area_table,
    target_defocus_change_um,
)
from tomopilot.cli.main import app
from tomopilot.core.errors import ConfigError
from tomopilot.instrument import LowDoseArea

# One target, −24…+24° in 3° steps: 17 Records of 256² at 32 Å (a 0.8 µm field, as the
# benchmark's; Leginon's tracking needs the field to overlap from one tilt to the next).
SETTINGS = {"minTilt": -24, "maxTilt": 24, "tiltScheme": "bidirectional", "pretilt": 0}
PRESETS = {
    "record": {"camera_area_px": [4096, 4096], "binning": 16},
    "preview": {"camera_area_px": [4096, 4096], "binning": 16, "exposure_s": 0.5},
}


def _config(folder: Path, seed: int = 5, **extra: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = write_config(
        folder,
        strategy="sequential",
        seed=seed,
        targets=[{"SSX": 0.0, "SSY": 0.0}],
        settings={**SETTINGS, **extra},
        twin={"presets": PRESETS},
    )
    return path


class _Killed(BaseException):
    """The process dies: nothing is cleaned up, no journal entry is written."""


def _run(path: Path, *, kill_after: int | None = None) -> Any:
    engine, _ = start_run(load_acquire_config(path))
    log: list[tuple[float, int, tuple[float, float], tuple[float, float]]] = []
    original = engine.strategy.observe

    def observe(target: int, step: Any, image: Any, request: Any) -> Any:
        outcome = original(target, step, image, request)
        log.append((step.tilt_deg, image.exposure_id, request.image_shift_um, outcome.alignment_um))
        if kill_after is not None and len(log) == kill_after:
            raise _Killed
        return outcome

    engine.strategy.observe = observe  # type: ignore[method-assign]
    tilt_to = engine.scope.stage.tilt_to
    engine.stage_tilts = []  # type: ignore[attr-defined]

    def tilt(tilt_deg: float, **kwargs: Any) -> None:
        engine.stage_tilts.append(tilt_deg)  # type: ignore[attr-defined]
        tilt_to(tilt_deg, **kwargs)

    engine.scope.stage.tilt_to = tilt  # type: ignore[method-assign]
    with contextlib.suppress(_Killed):
        engine.run(resume=kill_after is None and engine.journal_path.exists())
    return engine, log


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """One uninterrupted sequential series, shared by the tests below."""
    return _run(_config(tmp_path_factory.mktemp("whole")))


def test_sequential_series_in_leginon_order_tracks_the_target(whole_run: Any) -> None:
    engine, log = whole_run
    journal = replay_journal(engine.journal_path)
    assert journal.finished is not None and journal.finished["status"] == "finished"
    tilts = [float(c["tilt_deg"]) for c in journal.committed]
    assert tilts == [0.0, *np.arange(3.0, 25.0, 3.0), *np.arange(-3.0, -25.0, -3.0)]
    truth = engine.scope.ground_truth
    point = truth.exposure(journal.maps[1]).specimen_centre_um
    # The tracking correlation sees where the target really was: each measured offset within
    # 15 nm of the truth (relative to the start image, which defines the target).
    true_off = np.array([truth.exposure(e).offset_nm(point) for _, e, _, _ in log])
    measured = np.array([a for *_, a in log]) * 1e3
    error = (measured - measured[0]) - (true_off - true_off[0])
    assert np.sqrt(np.mean(np.sum(error**2, axis=1))) < 15.0
    # Leginon's order around the Records, read from the twin's exposures.
    areas = [(e.area, round(e.pose.tilt_deg, 1)) for e in truth.exposures]
    first_record = next(i for i, (a, _) in enumerate(areas) if a == "Record")
    before = [a for a, _ in areas[:first_record]]
    assert before.count("Focus") >= 2  # autofocus, then the drift manager's pair
    # map, recentring, drift manager, then the reference Preview (what drifted is taken out),
    # then the start tilt's tracking View (the Views' first reference)
    # with the start tilt's two Focus-area readings (focus_every, two exposures each) before it
    assert before[-7:] == ["Focus", "Preview"] + ["Focus"] * 4 + ["View"]
    assert before.count("Preview") >= 2
    # Between the halves: back at the start tilt, a Preview recentres, drift is measured.
    last_plus = max(i for i, (a, t) in enumerate(areas) if a == "Record" and t > 20)
    first_minus = next(i for i, (a, t) in enumerate(areas) if a == "Record" and t < -1)
    between = areas[last_plus + 1 : first_minus]
    assert ("Preview", 0.0) in [(a, round(t)) for a, t in between]
    assert sum(a == "Focus" for a, _ in between) >= 2
    # The backlash release went 5° below the start tilt, twice.
    assert sum(1 for t in engine.stage_tilts if math.isclose(t, -5.0)) >= 2


def test_sequential_beats_no_prediction_on_the_same_stage(whole_run: Any, tmp_path: Path) -> None:
    """The same stage (seed) acquired without any correction drifts off by far more."""
    seq, _ = whole_run
    (tmp_path / "none").mkdir()
    none_path = write_config(
        tmp_path / "none",
        strategy="none",
        seed=5,
        targets=[{"SSX": 0.0, "SSY": 0.0}],
        settings=SETTINGS,
        twin={"presets": PRESETS, "camera": {"render": False}},  # it never looks at pixels
    )
    plain, _ = start_run(load_acquire_config(none_path))
    plain.run()
    quality = {}
    for name, engine in (("seq", seq), ("none", plain)):
        journal = replay_journal(engine.journal_path)
        config = load_acquire_config(none_path)
        q = assess(engine.scope.ground_truth, journal, config, microscope_s=1.0)
        quality[name] = q.targets[0]
    assert quality["seq"].tracking_rms_nm < 0.5 * quality["none"].tracking_rms_nm
    assert quality["seq"].tracking_rms_nm < 120.0
    assert quality["seq"].defocus_rms_um < 0.35


def test_a_kill_mid_series_resumes_like_the_uninterrupted_run(
    whole_run: Any, tmp_path: Path
) -> None:
    whole, _ = whole_run
    path = _config(tmp_path / "killed")
    _run(path, kill_after=12)  # in the second half, before the commit
    resumed, _ = _run(path)
    a = replay_journal(whole.journal_path)
    b = replay_journal(resumed.journal_path)
    assert b.finished is not None and b.finished["status"] == "finished"
    keys = [(c["target"], c["step_index"]) for c in b.committed]
    assert len(keys) == len(set(keys)), "an exposure was committed twice"
    # The Record in flight when the process died is counted lost and taken again at its tilt.
    assert len(b.lost) <= 1
    assert set(keys) == {(c["target"], c["step_index"]) for c in a.committed}
    stack = resumed.plan.run_dir / "L1_ts_001.mrc"
    with mrcfile.open(stack) as mrc:
        assert mrc.data.shape[0] == len(b.committed)
    # The outcome matches: tracking of the resumed series as good as the uninterrupted one's.
    config = load_acquire_config(path)
    qa = assess(whole.scope.ground_truth, a, config, microscope_s=1.0).targets[0]
    qb = assess(resumed.scope.ground_truth, b, config, microscope_s=1.0).targets[0]
    assert qb.tracking_rms_nm < max(1.5 * qa.tracking_rms_nm, qa.tracking_rms_nm + 30.0)
    assert abs(qb.defocus_rms_um - qa.defocus_rms_um) < 0.15


def _with_tracking_views(path: Path) -> Path:
    data = yaml.safe_load(path.read_text())
    data["sequential"] = {"track_with_view": True}
    path.write_text(yaml.safe_dump(data))
    return path


def test_tracking_views_come_before_each_record_and_count_in_dose_and_time(
    whole_run: Any, tmp_path: Path
) -> None:
    """Leginon's tracking preset: a View before every Record, its dose on the target counted,
    its time booked as tracking exposure, each Record where its View put it, a dewar refill
    mid-series before a View, not between it and its Record; a killed run resumes with its
    Views reloaded."""
    path = _with_tracking_views(_config(tmp_path / "views"))
    # A refill forced mid-series (at the plain run's 9th Record: the series with Views is
    # slower, so somewhere in its + half).
    plain_truth = whole_run[0].scope.ground_truth
    refill_s = [e.time_s for e in plain_truth.exposures if e.area == "Record"][8]
    data = yaml.safe_load(path.read_text())
    data["microscope"]["twin"]["faults"] = [{"kind": "dewar_refill", "at_time_s": refill_s}]
    path.write_text(yaml.safe_dump(data))
    engine, _ = _run(path)
    journal = replay_journal(engine.journal_path)
    assert journal.finished is not None and journal.finished["status"] == "finished"
    truth = engine.scope.ground_truth
    first = next(i for i, e in enumerate(truth.exposures) if e.area == "Record")
    series = truth.exposures[first - 1 :]
    assert series[0].area == "View"
    records = [i for i, e in enumerate(series) if e.area == "Record"]
    assert len(records) == 17
    for i in records:  # the exposure before each Record is a View at the Record's tilt
        j = i - 1
        while series[j].area == "Focus":  # (but a Focus-area reading where the View found it)
            j -= 1
        assert series[j].area == "View"
        assert abs(series[j].pose.tilt_deg - series[i].pose.tilt_deg) < 0.05
    views = [e for e in series if e.area == "View"]
    scope = engine.scope
    view_dose = scope.optics.preset(LowDoseArea.VIEW).dose_e_a2
    record_dose = scope.optics.preset(LowDoseArea.RECORD).dose_e_a2
    assert view_dose < 0.02 * record_dose  # a View costs ~1 % of a Record
    target = engine.strategy.targets[1]
    # (its Previews at the target count too: the dose test below checks the whole account)
    previews = [e for e in series if e.area == "Preview"]
    preview_dose = scope.optics.preset(LowDoseArea.PREVIEW).dose_e_a2
    expected = 17 * record_dose + len(views) * view_dose + len(previews) * preview_dose
    assert target.dose_e_a2 >= expected * (1 - 1e-6)
    view_s = scope.optics.preset(LowDoseArea.VIEW).exposure_s
    assert engine.ledger.as_dict()["tracking_exposure"] >= len(views) * view_s - 1e-6
    # Tracking as good as without Views on this textured specimen (same stage, seed 5).
    config = load_acquire_config(path)
    plain_engine, _ = whole_run
    plain = replay_journal(plain_engine.journal_path)
    q_views = assess(truth, journal, config, microscope_s=1.0).targets[0]
    q_plain = assess(plain_engine.scope.ground_truth, plain, config, microscope_s=1.0).targets[0]
    assert q_views.tracking_rms_nm < max(1.5 * q_plain.tracking_rms_nm, 60.0)
    # Each Record where its View put it: its point within 20 nm of the start Record's (twin
    # truth; the target). The Views' chain alone (each View from the last) added a bias of
    # 8-9 nm a step here, 76 nm by ±24°; re-anchored on each Record's own tracking, one
    # step's worth is left (seen: 44.5 nm RMS, 76 max before; 8.7 and 12 after).
    point = truth.exposure(journal.maps[1]).specimen_centre_um
    offsets = np.array(
        [truth.exposure(int(c["exposure_id"])).offset_nm(point) for c in journal.committed]
    )
    misses = np.hypot(*(offsets[1:] - offsets[0]).T)
    assert misses.max() < 20.0 and np.sqrt(np.mean(misses**2)) < 15.0, misses
    # The refill came (forced: it begins at the next exposure, here a tracking View), and
    # the Record's View was taken after it: every fill that began before a Record ended
    # before that Record's View. (The engine's dewar check comes after the View: it waited
    # the fill out between the View and its Record, the View's measurement then stale by
    # the fill's 15 minutes and the drift burst it starts.)
    fills = [
        (float(e["time_s"]), float(e["until_s"]))  # type: ignore[arg-type]
        for e in truth.events
        if e["kind"] == "dewar_fill_started"
    ]
    assert fills and min(f for f, _ in fills) >= refill_s
    for i in records:
        view_s, record_s = series[i - 1].time_s, series[i].time_s
        assert all(until <= view_s for f, until in fills if f <= record_s), (view_s, fills)
    # Killed mid-series and resumed: the Views the next correlations need are reloaded.
    killed = _with_tracking_views(_config(tmp_path / "killed"))
    _run(killed, kill_after=12)
    resumed, _ = _run(killed)
    b = replay_journal(resumed.journal_path)
    assert b.finished is not None and b.finished["status"] == "finished"
    assert resumed.strategy.targets[1].view_references  # restored and used
    qb = assess(resumed.scope.ground_truth, b, config, microscope_s=1.0).targets[0]
    assert qb.tracking_rms_nm < max(1.5 * q_views.tracking_rms_nm, q_views.tracking_rms_nm + 30.0)


@pytest.mark.parametrize(
    ("seed", "cap", "n_records"),
    [
        (5, 40.0, 9),  # the halves end by the cap after 4 Records each
        (6, 20.0, 3),  # one Record per half: the − half's first one just fits after the Preview
        (5, 12.0, 1),  # the set-up and the start Record leave neither half a Record
    ],
)
def test_the_targets_dose_counts_every_image_taken_at_it_and_keeps_under_the_cap(
    tmp_path: Path, seed: int, cap: float, n_records: int
) -> None:
    """The strategy's dose per target holds every image taken at the target, from the engine's
    set-up on (its map and start Preview, the recentring and reference Previews, the Preview
    between the halves, the tracking Views, the Records), and every Record is checked against
    the cap before it is taken (the first of each half too), so the cap holds for the dose the
    twin really put there. Measured on main: the engine's map and start Preview (3 e/Å²) were
    not counted and the halves' first Records were taken unchecked: 17.6 e/Å² on the target
    under a 12 e/Å² cap (seed 5), 21.0 under 20 (seed 6), counted 15.0 and 18.0."""
    path = _config(tmp_path, seed=seed)
    data = yaml.safe_load(path.read_text())
    data["sequential"] = {"dose_cap_e_a2": cap}
    path.write_text(yaml.safe_dump(data))
    engine, _ = start_run(load_acquire_config(path))
    truth = engine.scope.ground_truth
    engine.run()
    journal = replay_journal(engine.journal_path)
    point = truth.exposure(journal.maps[1]).specimen_centre_um
    optics = engine.scope.optics

    def nominal(e: Any) -> float:  # the preset's dose for the exposure's time
        preset = optics.preset(LowDoseArea(e.area))
        return float(preset.dose_e_a2 * e.duration_s / preset.exposure_s)

    at_target = [e for e in truth.exposures if e.dose_fraction(np.array([point])) > 0]
    # The images tomopilot took (rendered) are counted; the microscope's own measurements at the
    # target are the eucentric height's two Views (the autofocus is beside it, on the axis)
    images = [e for e in at_target if e.rendered]
    measured = [e for e in at_target if not e.rendered]
    assert {e.area for e in images} == {"Preview", "View", "Record"}
    assert [e.area for e in measured] == ["View", "View"]
    assert journal.maps[1] in {e.exposure_id for e in images}  # the engine's map is one
    counted = engine.strategy.targets[1].dose_e_a2
    assert counted == pytest.approx(sum(nominal(e) for e in images), rel=1e-6)
    delivered = truth.dose_received(point, 0.0).total_e_a2  # every exposure, as the twin gave it
    assert delivered == pytest.approx(sum(e.dose_e_a2 for e in at_target), rel=1e-9)
    assert delivered <= cap
    assert counted <= cap
    assert len(journal.committed) == n_records


def test_the_dry_run_counts_every_tracking_view(tmp_path: Path) -> None:
    """The estimate counts a View cycle before every Record of every target with
    ``track_with_view: true``, the default (two targets, 17 tilts: 34), one per target at its
    start tilt with ``auto`` (where the Records track, as on this lamella, no more are taken),
    none with ``false``; each View cycle at least the View's exposure, readout and
    pre-exposure."""
    targets = [{"SSX": 0.0, "SSY": 0.0}, {"SSX": 3.0, "SSY": 1.0}]
    shown: dict[object, tuple[int, float, float]] = {}
    for mode in (False, True, "auto", None):
        folder = tmp_path / str(mode)
        folder.mkdir()
        path = write_config(
            folder,
            strategy="sequential",
            seed=5,
            targets=targets,
            settings=SETTINGS,
            twin={"presets": PRESETS},
        )
        if mode is not None:  # None: the default
            data = yaml.safe_load(path.read_text())
            data["sequential"] = {"track_with_view": mode}
            path.write_text(yaml.safe_dump(data))
        result = CliRunner().invoke(app, ["acquire", str(path), "--dry-run"])
        assert result.exit_code == 0, result.output
        total = re.search(r"exposures ([0-9.]+)\)", result.output)
        assert total is not None, result.output
        views = re.search(r"tracking Views: ([0-9]+), ([0-9.]+) s", result.output)
        count, seconds = (int(views.group(1)), float(views.group(2))) if views else (0, 0.0)
        shown[mode] = (count, seconds, float(total.group(1)))
    assert [shown[m][0] for m in (False, True, "auto")] == [0, 34, 2]
    assert shown[None] == shown[True]  # the default takes a View before every Record
    twin = load_acquire_config(path).microscope.twin
    cycle = twin.presets.get(LowDoseArea.VIEW).exposure_s + twin.camera.readout_s
    cycle += twin.camera.pre_exposure_s
    for mode in (True, "auto"):
        count, seconds, minutes = shown[mode]
        assert seconds >= count * cycle - 1e-6
        assert minutes - shown[False][2] == pytest.approx(seconds / 60, abs=0.11)  # rounded


def test_exposure_follows_one_over_cos_and_limits_are_explained() -> None:
    s = SequentialSettings(cos_exposure=True, total_dose_e_a2=120.0)
    tilts = list(np.arange(-60.0, 61.0, 1.0))
    times = s.exposure_times_s(tilts, dose_rate_e_a2_s=3.0)
    assert sum(t * 3.0 for t in times) == pytest.approx(120.0)
    assert times[0] / times[60] == pytest.approx(2.0)  # 1/cos 60°
    flat = SequentialSettings(total_dose_e_a2=120.0).exposure_times_s(tilts, dose_rate_e_a2_s=3.0)
    assert max(flat) == pytest.approx(min(flat))
    with pytest.raises(ConfigError, match="can receive"):
        SequentialSettings(total_dose_e_a2=5000.0, max_exposure_s=2).exposure_times_s(
            tilts, dose_rate_e_a2_s=3.0
        )


def test_a_session_runs_one_area_per_target_with_shared_history_and_a_cap(
    tmp_path: Path,
) -> None:
    """Three targets become three areas on one microscope; the second series is seeded by the
    first's (UCSF Tomo's history); a session cap stops before the third; resuming the session
    runs only what is left."""
    path = write_config(
        tmp_path,
        strategy="sequential",
        seed=2,
        targets=[{"SSX": 0.0, "SSY": 0.0}, {"SSX": 3.0, "SSY": 1.0}, {"SSX": -2.0, "SSY": 2.5}],
        settings={"minTilt": -6, "maxTilt": 6, "tiltScheme": "bidirectional"},
        twin={"presets": PRESETS, "camera": {"render": False}},
    )
    config = load_acquire_config(path)
    engine, resolved = start_run(config)
    plans = sequential_plans(resolved, engine.plan)
    assert [p.area_stage_um for p in plans] == [(0.0, 0.0), (3.0, 1.0), (-2.0, 2.5)]
    seen: list[int] = []

    def count(e: Any) -> None:
        seen.append(len(e.strategy.history.series))

    first = run_session(engine.scope, plans, root="L1", max_hours=1e-9, on_engine=count)
    assert first.stopped.startswith("session cap") and len(first.areas) == 1
    resumed = run_session(engine.scope, plans, root="L1", resume=True, on_engine=count)
    assert resumed.stopped == "finished" and len(resumed.areas) == 3
    assert seen == [0, 1, 1, 2]  # the finished area's series seeded the next ones
    history = load_history(plans[0].run_dir / "L1_predictions.json")
    assert len(history.series) == 3
    for plan in plans:
        journal = replay_journal(plan.run_dir / f"{plan.root}.journal.jsonl")
        assert journal.finished is not None and len(journal.committed) == 5


def test_tomopilot_acquire_runs_an_unattended_sequential_session(tmp_path: Path) -> None:
    """``tomopilot acquire`` with ``strategy: sequential``: ten targets become ten tilt series,
    one after the other, through a dewar refill and a stage jump, with nothing lost."""
    targets = [{"SSX": 2.5 * (k % 5), "SSY": 3.0 * (k // 5)} for k in range(10)]
    path = write_config(
        tmp_path,
        strategy="sequential",
        seed=11,
        targets=targets,
        settings={"minTilt": -6, "maxTilt": 6, "tiltScheme": "bidirectional"},
        twin={
            "presets": PRESETS,
            "camera": {"render": False},  # the mechanics of a session, not its tracking
            "faults": [
                {"kind": "dewar_refill", "at_time_s": 900.0},
                {"kind": "stage_jump", "at_move": 120, "magnitude_um": 0.3},
            ],
        },
    )
    data = yaml.safe_load(path.read_text())
    data["sequential"] = {"relocate_with_view": False}  # flat images: nothing to relocate
    path.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(app, ["acquire", str(path)])
    assert result.exit_code == 0, result.output
    assert "finished: 50 exposures, 0 lost" in result.output
    assert "one area per target" in result.output  # the ground-truth table of the session
    run_dir = tmp_path / "run"
    for k in range(1, 11):
        journal = replay_journal(run_dir / f"L1_t{k:03d}.journal.jsonl")
        assert journal.finished is not None and journal.finished["status"] == "finished"
        assert sorted(float(c["tilt_deg"]) for c in journal.committed) == [-6, -3, 0, 3, 6]
        with mrcfile.open(run_dir / f"L1_t{k:03d}_ts_001.mrc") as mrc:
            assert mrc.data.shape[0] == 5
    commands = (run_dir / "twin_commands.jsonl").read_text()
    assert "refill" in commands or "dewar" in commands
    assert len(load_history(run_dir / "L1_predictions.json").series) == 10


def test_the_series_is_focused_at_the_targets_own_focus_point(tmp_path: Path) -> None:
    """A target with a focus point (the atlas writes one on carbon beside each hole) is
    focused there, as Leginon focuses at the chosen focus target: the autofocus exposures are
    centred on that point, and none of their dose falls on the target."""
    focus_ss = (-2.0, 1.5)  # not where the Focus area sits by default (3 µm along the axis)
    path = write_config(
        tmp_path,
        strategy="sequential",
        seed=4,
        targets=[{"SSX": 0.0, "SSY": 0.0, "focusSSX": focus_ss[0], "focusSSY": focus_ss[1]}],
        # Flat images (the set-up's mechanics): no alignment to the map at the start tilt, so
        # the target stays where the map saw it.
        settings={
            "minTilt": -3,
            "maxTilt": 3,
            "tiltScheme": "bidirectional",
            "pretilt": 0,
            "previewAli": False,
        },
        twin={"presets": PRESETS, "camera": {"render": False}},
    )
    data = yaml.safe_load(path.read_text())
    data["sequential"] = {"relocate_with_view": False, "drift_check": "off"}
    path.write_text(yaml.safe_dump(data))
    engine, resolved = start_run(load_acquire_config(path))
    plans = sequential_plans(resolved, engine.plan)
    run_session(engine.scope, plans, root="L1")
    truth = engine.scope.ground_truth
    journal = replay_journal(plans[0].run_dir / f"{plans[0].root}.journal.jsonl")
    target_map = truth.exposure(journal.maps[1])
    target = target_map.specimen_centre_um
    first_record = next(e for e in truth.exposures if e.area == "Record")
    focus = [e for e in truth.exposures if e.area == "Focus" and e.time_s < first_record.time_s]
    focus = focus[:2]  # the beam-tilt pair of the autofocus (the calibration's pairs follow)
    half = min(first_record.field_shape) * first_record.pixel_size_a * 1e-4 / 2
    disk = np.array(target) + np.array(
        [[half * np.cos(a), half * np.sin(a), 0.0] for a in np.linspace(0, 2 * np.pi, 16)]
    )
    for exposure in focus:
        # The target seen from the focus beam's centre: minus the focus point's shift.
        seen_um = np.array(exposure.offset_nm(target)) / 1e3
        assert np.hypot(*(seen_um + np.array(focus_ss))) < 0.05
        # The target (its Record field) lies wholly outside the focus beam.
        assert exposure.dose_fraction(np.vstack([disk, target])) == 0.0
    # No focusing dose on the target.
    assert truth.dose_received(target, half).by_area.get("Focus", 0.0) == 0.0


def test_the_defocus_tilt_table_is_read_as_a_plane_turning_under_the_focus_area() -> None:
    """A table measured at a fixed place in the lab, 0.7 µm across the axis, on a 10° plane
    0.9 µm from the axis, with a run-out wobble: fitted as that plane (d/cos(θ+p) +
    u·tan(θ+p)), it gives back u and d, and a point of the plane 0.4 µm further across turns
    as u·sin θ + z·(cos θ − 1) plus the wobble: predicted to 30 nm up to 60°, where the
    table's own values (what Leginon puts on the target) are microns off. Points a run-away
    slide spoilt are not believed."""
    p, d, u = math.radians(10.0), 0.9, 0.7
    tilts = np.arange(-60.0, 61.0, 10.0)
    alpha = np.radians(tilts) + p

    def wobble(deg: float) -> float:
        return 0.05 * math.sin(3 * math.radians(deg))

    plane = d / np.cos(alpha) + u * np.tan(alpha)
    values = plane - (d / math.cos(p) + u * math.tan(p)) + [wobble(t) for t in tilts]
    table = dict(zip(tilts.tolist(), values.tolist(), strict=True))
    fit = fit_focus_area_table(table, 10.0)
    assert fit.lateral_um == pytest.approx(u, abs=0.03)
    assert fit.plane_um == pytest.approx(d, abs=0.03)
    # The point 0.4 µm further across, on the plane: its height at 0° and how it turns.
    u_t = u + 0.4
    z_t = d / math.cos(p) + u_t * math.tan(p)
    for tilt in (-55.0, -20.0, 5.0, 35.0, 60.0):
        t = math.radians(tilt)
        true = u_t * math.sin(t) + z_t * (math.cos(t) - 1) + wobble(tilt)
        got = target_defocus_change_um(fit, tilt, 0.0, lateral_um=0.4, height_um=z_t)
        assert got == pytest.approx(true, abs=0.03), tilt
    assert abs(table[60.0] - (u_t * math.sin(math.pi / 3) - z_t / 2)) > 1.0
    assert target_defocus_change_um(fit, 20.0, 20.0, lateral_um=0.4, height_um=z_t) == 0.0
    # A run-away slide put other parts of the specimen under the Focus area beyond 40°.
    slid = fit_focus_area_table({**table, 50.0: 6.3, 60.0: 28.9}, 10.0)
    assert 50.0 not in slid.tilts_deg and 60.0 not in slid.tilts_deg
    assert slid.lateral_um == pytest.approx(u, abs=0.1)
    assert slid.plane_um == pytest.approx(d, abs=0.1)


def test_a_sessions_targets_get_the_defocus_the_dry_run_lists(tmp_path: Path) -> None:
    """``stepDefocus`` cycles over a sequential session's targets as over a parallel run's (and
    as ``--dry-run`` lists them), a skipped target taking no level: each area's series is at its
    target's defocus (twin truth at every Record), and the report judges it against that."""
    path = write_config(
        tmp_path,
        strategy="sequential",
        seed=2,
        targets=[
            {"SSX": 0.0, "SSY": 0.0},
            {"SSX": 3.0, "SSY": 1.0, "skip": 1},
            {"SSX": -2.0, "SSY": 2.5},
            {"SSX": 2.0, "SSY": -2.0},
        ],
        settings={
            "minTilt": -3,
            "maxTilt": 3,
            "tiltScheme": "bidirectional",
            "minDefocus": -3,
            "maxDefocus": -4,
            "stepDefocus": 0.5,
        },
        twin={"presets": PRESETS, "camera": {"render": False}},
    )
    listed = CliRunner().invoke(app, ["acquire", str(path), "--dry-run"])
    assert listed.exit_code == 0, listed.output
    for level in ("-4.00", "-3.50", "-3.00"):
        assert level in listed.output
    config = load_acquire_config(path)
    engine, resolved = start_run(config)
    plans = sequential_plans(resolved, engine.plan)
    assert run_session(engine.scope, plans, root="L1").stopped == "finished"
    truth = engine.scope.ground_truth
    wanted = {"L1_t001": -4.0, "L1_t003": -3.5, "L1_t004": -3.0}
    assert [p.root for p in plans] == list(wanted)
    for plan in plans:
        journal = replay_journal(plan.run_dir / f"{plan.root}.journal.jsonl")
        true_defocus = [truth.exposure(int(c["exposure_id"])).defocus_um for c in journal.committed]
        # the autofocus's 2 % scale error and 0.04 µm noise, and the ±3° height changes
        np.testing.assert_allclose(true_defocus, wanted[plan.root], atol=0.2)
    quality = assess_run_dir(plans[0].run_dir)
    assert [t.target for t in quality.targets] == [1, 3, 4]
    assert max(t.defocus_rms_um for t in quality.targets) < 0.2
