"""The engine on the twin: consistent files, events, faults, and a dry-run that tells the time."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import mdocfile
import mrcfile
import numpy as np
import pytest
from acq_helpers import write_config
from typer.testing import CliRunner

from tomopilot.acquisition.events import (
    BranchAborted,
    ExposureLost,
    ExposureRecorded,
    TiltReached,
)
from tomopilot.acquisition.output.journal import replay_journal
from tomopilot.acquisition.plan.estimate import Timing, estimate_duration
from tomopilot.acquisition.plan.run_config import load_acquire_config
from tomopilot.acquisition.quality import assess_run_dir
from tomopilot.acquisition.run import start_run
from tomopilot.cli.main import app
from tomopilot.instrument.twin import FaultSpec


def _read_mdoc(path: Path):  # mdocfile chats on stdout
    with contextlib.redirect_stdout(io.StringIO()):
        return mdocfile.read(path)


def _run(config_path: Path, strategy: str | None = None):
    config = load_acquire_config(config_path)
    engine, resolved = start_run(config, strategy=strategy)
    records: list[ExposureRecorded] = []
    aborted: list[BranchAborted] = []
    lost: list[ExposureLost] = []
    engine.events.subscribe(ExposureRecorded, records.append)
    engine.events.subscribe(BranchAborted, aborted.append)
    engine.events.subscribe(ExposureLost, lost.append)
    summary = engine.run()
    return engine, resolved, summary, records, aborted, lost


def test_a_run_writes_stacks_and_mdocs_with_the_applied_values(tmp_path: Path) -> None:
    config = write_config(tmp_path, settings={"sortByTilt": False})
    engine, resolved, summary, records, _, _ = _run(config)
    assert summary.status == "finished"
    n_tilts = resolved.scheme.n_tilts
    assert summary.n_exposures == 3 * n_tilts == len(records)
    journal = replay_journal(engine.journal_path)
    for target in (1, 2, 3):
        stem = engine.plan.run_dir / f"L1_ts_{target:03d}.mrc"
        with mrcfile.open(stem) as mrc:
            assert mrc.data.shape[0] == n_tilts
            assert mrc.voxel_size.x == pytest.approx(16.0)
        frame = _read_mdoc(Path(f"{stem}.mdoc"))
        mine = [r for r in records if r.target == target]
        assert len(frame) == len(mine) == journal.sections[target]
        np.testing.assert_allclose(frame["TiltAngle"], [r.tilt_deg for r in mine], atol=0.01)
        np.testing.assert_allclose(frame["Defocus"], [r.focus_um for r in mine], atol=1e-4)
        shifts = np.stack(frame["ImageShift"].to_numpy())
        np.testing.assert_allclose(shifts[:, 0], [r.image_shift_x_um for r in mine], atol=1e-4)
        doses = frame["ExposureDose"].to_numpy()
        np.testing.assert_allclose(
            frame["PriorRecordDose"], np.concatenate([[0], np.cumsum(doses)[:-1]]), atol=1e-3
        )
        assert all(isinstance(v, str) for v in frame["DateTime"])
        rawtlt = np.loadtxt(engine.plan.run_dir / f"L1_ts_{target:03d}.rawtlt")
        np.testing.assert_allclose(rawtlt, [r.tilt_deg for r in mine], atol=0.006)  # stack order


def test_sort_by_tilt_keeps_the_unsorted_mdoc(tmp_path: Path) -> None:
    engine, _, _, records, _, _ = _run(write_config(tmp_path))
    mdoc = engine.plan.run_dir / "L1_ts_002.mrc.mdoc"
    tilts = _read_mdoc(mdoc)["TiltAngle"].to_numpy()
    assert np.all(np.diff(tilts) > 0)
    unsorted = _read_mdoc(engine.plan.run_dir / "unsorted" / "L1_ts_002.mrc.mdoc")["TiltAngle"]
    np.testing.assert_allclose(unsorted, [r.tilt_deg for r in records if r.target == 2], atol=0.01)


def test_the_dry_run_estimate_is_close_to_the_microscope_time(tmp_path: Path) -> None:
    config_path = write_config(tmp_path)
    config = load_acquire_config(config_path)
    _, resolved, summary, _, _, _ = _run(config_path)
    estimate = estimate_duration(
        resolved.settings, resolved.scheme, 3, Timing.from_twin(config.microscope.twin)
    )
    assert estimate.total_s == pytest.approx(summary.microscope_s, rel=0.1)
    result = CliRunner().invoke(app, ["acquire", str(config_path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "estimated microscope time" in result.output


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"startTilt": 2}, "not a multiple of step"), ({"maxTilt": 75}, "stage")],
)
def test_impossible_settings_are_refused_before_any_exposure(
    tmp_path: Path, settings: dict[str, float], message: str
) -> None:
    config = write_config(tmp_path, settings=settings)
    result = CliRunner().invoke(app, ["acquire", str(config)])
    assert result.exit_code == 1
    assert message in result.output
    assert not (tmp_path / "run" / "twin_commands.jsonl").exists()


def test_pace_tracks_the_non_tracking_targets_on_a_quiet_stage(tmp_path: Path) -> None:
    quiet = {"step_error_sigma_um": 0.0, "jump_probability": 0.0, "branch_start_jump_um": 0.0}
    engine, _, _, _, _, _ = _run(write_config(tmp_path, twin={"stage": quiet}))
    quality = assess_run_dir(engine.plan.run_dir)
    for target in quality.targets[1:]:
        assert target.tracking_max_nm < 60.0
    assert quality.pooled()["defocus_rms_um"] < 0.4


def test_a_dark_image_ends_that_branch_only(tmp_path: Path) -> None:
    # exposures 0–2 are maps, 3–5 previews, 6–7 autofocus; Records start at 8.
    config = write_config(
        tmp_path,
        settings={"minCounts": 2.0},
        twin={"faults": [{"kind": "dark_image", "at_exposure": 15}]},
    )
    _, _, summary, records, aborted, _ = _run(config)
    assert summary.status == "finished"
    assert len(aborted) == 1
    ended = aborted[0]
    later = [r for r in records if r.target == ended.target and r.step_index > 6]
    branch_tilts = [r.tilt_deg for r in later if np.sign(r.tilt_deg) == np.sign(ended.tilt_deg)]
    assert not [t for t in branch_tilts if abs(t) > abs(ended.tilt_deg)]
    others = {r.target for r in records if r.tilt_deg == 9.0}
    assert others >= {1, 2, 3} - {ended.target}


def test_a_camera_time_out_is_retried_then_reported(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, twin={"faults": [{"kind": "camera_timeout", "at_exposure": 12, "count": 5}]}
    )
    _, _, summary, records, _, lost = _run(config)
    assert summary.status == "finished"
    assert len(lost) == 1 and "did not return" in lost[0].reason
    assert summary.lost == 1
    assert len(records) == summary.n_exposures


def test_a_dewar_refill_mid_run_is_waited_out(tmp_path: Path) -> None:
    # Where the fill falls is taken from the run's own timeline (an uninterrupted run of the
    # same configuration), not from a fixed clock time: how long the set-up and each Record
    # take depends on the microscope's time costs, which the test must not depend on.
    def run(name: str, first_fill_s: float):
        folder = tmp_path / name
        folder.mkdir()
        hk = {"dewar_first_fill_s": first_fill_s, "dewar_refill_duration_s": 300.0}
        engine, _, summary, _, _, _ = _run(write_config(folder, twin={"housekeeping": hk}))
        assert summary.status == "finished"
        return engine.scope.ground_truth  # type: ignore[attr-defined]

    plain = run("plain", 1e9)  # no fill within the run
    starts = sorted(e.time_s for e in plain.exposures if e.area == "Record")
    ends = sorted(e.time_s + e.duration_s for e in plain.exposures if e.area == "Record")
    middle = len(starts) // 2
    fill_s = (ends[middle - 1] + starts[middle]) / 2  # between two Records, mid-run
    truth = run("fill", fill_s)
    assert truth.time_by_activity_s["dewar_wait"] > 250.0  # most of the 300 s fill waited out
    fills = [e for e in truth.events if e["kind"] == "dewar_fill_started"]
    assert len(fills) == 1
    records = sorted(e.time_s for e in truth.exposures if e.area == "Record")
    assert len(records) == len(starts)  # nothing lost, nothing taken twice
    fill = fills[0]
    before = [t for t in records if t < fill["time_s"]]
    assert 0 < len(before) < len(records)  # it really fell between Records
    assert all(not (fill["time_s"] <= t < fill["until_s"]) for t in records)
    assert records[len(before)] >= fill["until_s"]  # the next Record waited for its end


def test_a_stage_jump_is_recovered_by_tracking(tmp_path: Path) -> None:
    quiet = {"step_error_sigma_um": 0.0, "jump_probability": 0.0, "branch_start_jump_um": 0.0}
    config = load_acquire_config(write_config(tmp_path, twin={"stage": quiet}))
    engine, _ = start_run(config)
    scope = engine.scope

    def jump_before_the_fourth_tilt(event: TiltReached) -> None:
        if event.step_index == 2:  # the jump happens on the next stage move
            scope.inject_fault(FaultSpec(kind="stage_jump", at_move=0, magnitude_um=0.15))  # type: ignore[attr-defined]

    engine.events.subscribe(TiltReached, jump_before_the_fourth_tilt)
    engine.run()
    quality = assess_run_dir(engine.plan.run_dir)
    for target in quality.targets:
        assert target.tracking_nm[-1] < 60.0  # back on target by the end
    assert max(quality.targets[0].tracking_nm) > 100.0  # the jump did happen


def test_an_aborted_run_continues_on_resume(tmp_path: Path) -> None:
    """Ctrl-C (an abort) stops after the exposure in flight; --resume finishes the run."""
    path = write_config(tmp_path, settings={"sortByTilt": False})
    engine, resolved = start_run(load_acquire_config(path))

    def abort_after_seven(event: ExposureRecorded) -> None:
        if event.exposure_id and len(replay_journal(engine.journal_path).committed) == 7:
            engine.control.abort()

    engine.events.subscribe(ExposureRecorded, abort_after_seven)
    assert engine.run().status == "aborted"
    assert len(replay_journal(engine.journal_path).committed) == 7
    again, _ = start_run(load_acquire_config(path))
    assert again.run().status == "aborted"  # without --resume it only reports
    summary = again.run(resume=True)
    assert summary.status == "finished"
    journal = replay_journal(again.journal_path)
    n_tilts = resolved.scheme.n_tilts
    keys = [(c["target"], c["step_index"]) for c in journal.committed]
    assert len(keys) == len(set(keys)) == 3 * n_tilts  # nothing lost, nothing twice
    for target in (1, 2, 3):
        stack = again.plan.run_dir / f"L1_ts_{target:03d}.mrc"
        with mrcfile.open(stack) as mrc:
            assert mrc.data.shape[0] == n_tilts == len(_read_mdoc(Path(f"{stack}.mdoc")))
