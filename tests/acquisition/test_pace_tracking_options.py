"""PACEtomo's tracking options on the twin: trackTwice and trackMag."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import mdocfile
import mrcfile
import numpy as np
import pytest
from acq_helpers import write_config

from tomopilot.acquisition.events import ExposureRecorded, TiltReached
from tomopilot.acquisition.output.journal import branch_of, replay_journal
from tomopilot.acquisition.plan.run_config import load_acquire_config
from tomopilot.acquisition.quality import assess_run_dir
from tomopilot.acquisition.run import start_run
from tomopilot.instrument.twin import FaultSpec

QUIET = {"step_error_sigma_um": 0.0, "jump_probability": 0.0, "branch_start_jump_um": 0.0}
JUMP_STEP = 3  # the stage jumps on its move to this step of the scheme


def _read_mdoc(path: Path):  # type: ignore[no-untyped-def]  # mdocfile chats on stdout
    with contextlib.redirect_stdout(io.StringIO()):
        return mdocfile.read(path)


def _jump_run(folder: Path, track_twice: bool):  # type: ignore[no-untyped-def]
    folder.mkdir()
    settings = {"trackTwice": track_twice, "alignLimit": 0.1, "sortByTilt": False}
    config = load_acquire_config(write_config(folder, settings=settings, twin={"stage": QUIET}))
    engine, _ = start_run(config, strategy="pace")
    scope = engine.scope

    def jump_before_the_fourth_tilt(event: TiltReached) -> None:
        if event.step_index == JUMP_STEP - 1:  # on the next stage move
            scope.inject_fault(FaultSpec(kind="stage_jump", at_move=0, magnitude_um=0.18))  # type: ignore[attr-defined]

    records: list[ExposureRecorded] = []
    engine.events.subscribe(TiltReached, jump_before_the_fourth_tilt)
    engine.events.subscribe(ExposureRecorded, records.append)
    engine.run()
    return engine, records


def test_track_twice_retakes_target_1_after_a_jump(tmp_path: Path) -> None:
    plain, _ = _jump_run(tmp_path / "plain", track_twice=False)
    twice, records = _jump_run(tmp_path / "twice", track_twice=True)
    miss = assess_run_dir(plain.plan.run_dir).targets[0].tracking_nm
    kept = assess_run_dir(twice.plan.run_dir).targets[0].tracking_nm
    jumped = [k for k, nm in enumerate(miss) if nm > 120.0]
    # The jump (0.18 µm, on the stage move to step 3) moves the whole goniometer, so both
    # branches: on a quiet stage each branch's first Record of target 1 after it misses by the
    # jump, and only that one (pace re-centres the branch on it). sortByTilt is off: sections
    # are in the order taken.
    after = [
        c
        for c in replay_journal(plain.journal_path).committed
        if c["target"] == 1 and c["step_index"] >= JUMP_STEP
    ]
    first_per_branch = {
        branch: min(int(c["section"]) for c in after if branch_of(c) == branch)
        for branch in ("+", "-")
    }
    assert jumped == sorted(first_per_branch.values())
    # each misses by the jump (0.18 µm, almost all in-plane) give or take the tracking error the
    # Record had before it (under 25 nm on this quiet stage)
    assert all(150.0 < miss[k] < 210.0 for k in jumped)
    assert all(kept[k] < 40.0 for k in jumped)  # the retakes, re-centred, replaced them
    # one extra Record per retake on the twin, none extra in the files: they hold the retakes
    truth = twice.scope.ground_truth
    n_records = sum(1 for e in truth.exposures if e.area == "Record")
    journal = replay_journal(twice.journal_path)
    assert n_records == len(journal.committed) + len(jumped)
    assert len(records) == len(journal.committed)
    mdoc = _read_mdoc(twice.plan.run_dir / "L1_ts_001.mrc.mdoc")
    with mrcfile.open(twice.plan.run_dir / "L1_ts_001.mrc") as mrc:
        assert mrc.data.shape[0] == len(mdoc) == len(kept)
    for k in jumped:
        section = next(c for c in journal.committed if c["target"] == 1 and c["section"] == k)
        retake = truth.exposure(int(section["exposure_id"]))
        row = mdoc[mdoc["ZValue"] == k].iloc[0]
        shift = [float(v) for v in str(row["SpecimenShift"]).split()]
        # the mdoc holds the image shift the retake was taken at, not the first shot's
        first = [e for e in truth.exposures if e.area == "Record"]
        first_shot = first[[e.exposure_id for e in first].index(retake.exposure_id) - 1]
        moved = np.subtract(retake.image_shift_true_um, first_shot.image_shift_true_um)
        assert float(np.hypot(*moved)) > 0.1  # re-centred by the jump
        assert shift == pytest.approx(list(retake.image_shift_true_um), abs=0.05)
        event = next(r for r in records if r.exposure_id == retake.exposure_id)
        assert shift == pytest.approx([event.image_shift_x_um, event.image_shift_y_um], abs=1e-3)
    # the other targets got both shifts before they were imaged
    others = assess_run_dir(twice.plan.run_dir).targets[1:]
    assert all(t.tracking_nm[k] < 60.0 for t in others for k in jumped)


def test_track_mag_records_target_1_at_its_own_magnification(tmp_path: Path) -> None:
    config = load_acquire_config(
        write_config(tmp_path, settings={"trackMag": 26500}, twin={"stage": QUIET})
    )
    engine, _ = start_run(config, strategy="pace")
    engine.run()
    run_dir = engine.plan.run_dir
    with mrcfile.open(run_dir / "L1_ts_001.mrc") as mrc:
        assert mrc.voxel_size.x == pytest.approx(32.0)  # 2 Å × 53000/26500 × binning 8
    with mrcfile.open(run_dir / "L1_ts_002.mrc") as mrc:
        assert mrc.voxel_size.x == pytest.approx(16.0)
    assert set(_read_mdoc(run_dir / "L1_ts_001.mrc.mdoc")["Magnification"]) == {26500}
    assert set(_read_mdoc(run_dir / "L1_ts_002.mrc.mdoc")["Magnification"]) == {53000}
    quality = assess_run_dir(run_dir)
    assert max(quality.targets[0].tracking_nm) < 150.0  # tracking at the other pixel works
    assert all(max(t.tracking_nm) < 150.0 for t in quality.targets[1:])


def test_a_retake_whose_peak_cannot_be_believed_leaves_the_tracking_as_it_was(
    tmp_path: Path,
) -> None:
    """trackTwice's retake of target 1 comes out dark (a camera fault): its correlation
    cannot be believed, so it says nothing of where the target is. The first Record's
    correction (which centred the retake) stands, and that Record stays the reference; the
    dark image must not become the reference (with a made-up offset), or target 1 is never
    found again on that branch and the run-out piles up on every target."""
    settings = {
        "trackTwice": True,
        "alignLimit": 0.1,
        "sortByTilt": False,
        "minTilt": -15,
        "maxTilt": 15,
    }
    config = load_acquire_config(write_config(tmp_path, settings=settings, twin={"stage": QUIET}))
    engine, _ = start_run(config, strategy="pace")
    scope = engine.scope
    core = scope.wrapped._core  # type: ignore[attr-defined]  # the twin inside the ledger
    branches: dict[int, str] = {}

    def jump_then_a_dark_retake(event: TiltReached) -> None:
        branches[event.step_index] = event.branch
        if event.step_index == JUMP_STEP - 1:  # the stage jumps on its move to -3°
            scope.inject_fault(FaultSpec(kind="stage_jump", at_move=0, magnitude_um=0.18))  # type: ignore[attr-defined]
        if event.step_index == JUMP_STEP:  # target 1's first Record, then its retake: dark
            fault = FaultSpec(kind="dark_image", at_exposure=core.n_exposures + 1)
            scope.inject_fault(fault)  # type: ignore[attr-defined]

    engine.events.subscribe(TiltReached, jump_then_a_dark_retake)
    assert engine.run().status == "finished"
    truth = engine.scope.ground_truth
    committed = replay_journal(engine.journal_path).committed
    dark = [c for c in committed if truth.exposure(int(c["exposure_id"])).dark]
    # the dark exposure is target 1's retake at -3°, in the series in place of the first
    assert [(c["target"], c["step_index"]) for c in dark] == [(1, JUMP_STEP)]
    assert branches[JUMP_STEP] == "-"
    quality = assess_run_dir(engine.plan.run_dir)
    later = {  # each target's sections on the negative branch's later tilts (-6° to -15°)
        index: sorted(
            int(c["section"])
            for c in committed
            if c["target"] == index and branches[int(c["step_index"])] == "-"
            if int(c["step_index"]) > JUMP_STEP
        )
        for index in (1, 2, 3)
    }
    assert all(len(sections) == 4 for sections in later.values())
    # target 1 stays tracked: on the code that took the dark retake as the reference, centred,
    # these missed by 20, 41, 61, 74 nm (tracking lost); here 1-16 nm
    first = quality.targets[0].tracking_nm
    assert max(first[k] for k in later[1]) < 30.0, first
    # and hands its correction on: the others missed by 9-22 nm there, 1-6 nm here
    for index, other in zip((2, 3), quality.targets[1:], strict=True):
        assert max(other.tracking_nm[k] for k in later[index]) < 12.0, other.tracking_nm
