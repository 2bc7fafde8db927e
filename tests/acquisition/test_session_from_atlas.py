"""From a twin grid to tilt series, unattended: ``tomopilot atlas run`` writes the target list,
``tomopilot acquire`` (strategy ``sequential``) takes a rendered ±45° tilt series at every
target through a forced dewar refill and a stage jump, and nothing is lost.

Every Record stays on its target (the twin's truth): the strategy tracks on Views (Leginon's
tracking preset), which hold the hole's edge: a View before every Record (``track_with_view:
true``, the default; ``auto`` chooses the same here: each hole's start Record does not
correlate with the Preview taken just before it, for in the holes' ice the twin draws no
specimen-locked texture: a fresh realisation each exposure, the few particles too faint at a
Record's dose). On Records alone
(``track_with_view: false``) 49 of the 60 tilted Records drifted more than 0.1 µm from where
their series started, up to 1.5 µm by ±45° (the Record is 0.41 µm wide); with the Views, as
with ``true``, at most 0.21 µm, 55 of 60 within 0.1 µm (main 9e2237e; since the predictor's
early height, target 5's − half leaves its hole after two stage jumps: docs/atlas.md,
"Tracking on Views").

Every series starts at its hole's centre: the atlas keeps a View of each target (the hole and
its edge, ``viewfile``), and each area realigns to it before its Preview map, whose hole's ice
holds nothing to register once the stage has crept more than the Preview's half field.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import mdocfile
import mrcfile
import numpy as np
import yaml
from acq_helpers import write_config
from numpy.typing import NDArray
from typer.testing import CliRunner

from tomopilot.acquisition.output.journal import replay_journal
from tomopilot.acquisition.plan.run_config import load_acquire_config
from tomopilot.acquisition.quality import assess
from tomopilot.acquisition.session import load_history
from tomopilot.cli.main import app
from tomopilot.instrument import LowDoseArea
from tomopilot.instrument.twin import TwinConfig, TwinMicroscope
from tomopilot.instrument.twin.specimen import GridSpecimen
from tomopilot.io.navigator import read_nav
from tomopilot.io.pacetomo_targets import read_targets_file
from tomopilot.targeting.nav_items import nav_items

SEED = 4
TILT_REACH_DEG = 45
TILT_STEP_DEG = 15
REFILL_AT_S = 900.0
JUMP_AT_MOVE = 150
JUMP_UM = 0.3
DEFOCUS_BOUND_UM = 1.0  # |true − intended| of every Record (seen: up to 0.67 µm at ±45°)
# Each Record's point from its series' first Record's (the target): all within this (seen: up
# to 0.21 µm with tracking Views, auto or true; 1.53 µm without), and most within ON_TARGET_UM
# (seen: 55 of 60 tilted Records with Views; 11 of 60 without).
OFF_TARGET_BOUND_UM = 0.3
ON_TARGET_UM = 0.1
ON_TARGET_FRACTION = 0.8
# Each series' first Record from its hole's centre (twin truth): all within START_BOUND_UM and
# nearly all within START_NEAR_UM (seen: 10 of 10 within 0.094 µm; other seeds of this twin
# within 0.101 µm, the farthest the target a dewar fill came between its recentring and its
# first Record).
START_BOUND_UM = 0.15
START_NEAR_UM = 0.1
START_NEAR_FRACTION = 0.9
# The same twin for the atlas and the acquisition.
TWIN: dict[str, Any] = {
    "seed": SEED,
    "specimen": {"kind": "grid", "mesh_diameter_um": 420.0},
    "presets": {
        "record": {"camera_area_px": [2048, 2048], "binning": 8},
        # A Preview 0.8 µm wide (a K3's whole chip at Record magnification is about 1.1 µm):
        # aligned to its map it measures a miss up to about 0.4 µm, more than the stage's
        # first move under a target errs by. Half as wide (2048 px binned 8, 0.41 µm) it
        # measured misses up to about 0.2 µm only; beyond, it found a spurious peak near
        # zero, and whether a series started 0.3-0.6 µm off its hole's centre depended on the
        # stage's errors and drift at the moment, so on any change of the timeline.
        "preview": {"camera_area_px": [4096, 4096], "binning": 16, "exposure_s": 0.5},
        "view": {"camera_area_px": [2048, 2048], "binning": 8},
        "search": {"camera_area_px": [4096, 4096], "binning": 16},
    },
}


def _read_mdoc(path: Path) -> Any:  # mdocfile chats on stdout
    with contextlib.redirect_stdout(io.StringIO()):
        return mdocfile.read(path)


def _unattended_session(
    tmp_path: Path, run_dir: Path, n_targets: int, hole_um: float, seed: int = SEED
) -> list[float]:
    """``tomopilot acquire`` (sequential) over every target of the atlas, rendered, through a
    forced dewar refill and a stage jump; then the outputs read back with mrcfile and mdocfile
    and every Record judged against the twin's truth. Returns each series' start's distance
    from its hole's centre (µm)."""
    path = write_config(
        tmp_path,
        strategy="sequential",
        seed=seed,
        settings={
            "minTilt": -TILT_REACH_DEG,
            "maxTilt": TILT_REACH_DEG,
            "step": TILT_STEP_DEG,
            "tiltScheme": "bidirectional",
            "pretilt": 0,
        },
        twin={
            **{k: v for k, v in TWIN.items() if k != "seed"},
            "faults": [
                {"kind": "dewar_refill", "at_time_s": REFILL_AT_S},
                {"kind": "stage_jump", "at_move": JUMP_AT_MOVE, "magnitude_um": JUMP_UM},
            ],
        },
    )
    config = yaml.safe_load(path.read_text())
    config["targets"] = {"file": str(run_dir / "grid_tgts.txt")}
    config["output"] = {"dir": str(run_dir), "root": "G1"}
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["acquire", str(path)])
    assert result.exit_code == 0, result.output
    tilts = np.arange(-TILT_REACH_DEG, TILT_REACH_DEG + 1, TILT_STEP_DEG, dtype=float)
    assert f"finished: {len(tilts) * n_targets} exposures, 0 lost" in result.output

    acquired = TwinConfig.model_validate(config["microscope"]["twin"])
    replayed = TwinMicroscope(acquired, command_log=run_dir / "twin_commands.jsonl")
    truth = replayed.ground_truth
    grid = replayed.specimen
    assert isinstance(grid, GridSpecimen)
    acquire_config = load_acquire_config(path)
    record_ids: list[int] = []
    record_times: list[float] = []
    start_gaps: list[float] = []
    off_target_um: list[np.ndarray] = []
    for k in range(1, n_targets + 1):
        root = f"G1_t{k:03d}"
        journal = replay_journal(run_dir / f"{root}.journal.jsonl")
        assert journal.finished is not None and journal.finished["status"] == "finished"
        assert not journal.lost
        committed = journal.committed
        assert sorted(float(c["tilt_deg"]) for c in committed) == list(tilts)  # once each
        record_ids += [int(c["exposure_id"]) for c in committed]
        # The stack and its mdoc, read with the field's readers: one section per tilt.
        stack = run_dir / f"{root}_ts_001.mrc"
        with mrcfile.open(stack) as mrc:
            n_sections = mrc.data.shape[0]
            assert np.isfinite(mrc.data).all() and float(mrc.data.std()) > 0  # rendered
        frame = _read_mdoc(f"{stack}.mdoc")
        assert n_sections == len(frame) == len(tilts)
        np.testing.assert_allclose(np.sort(frame["TiltAngle"].to_numpy()), tilts, atol=0.05)
        # Each series starts in an intact hole (at its centre: asserted by the caller), and
        # every Record is taken at the intended defocus.
        first = truth.exposure(int(committed[0]["exposure_id"]))
        sx, sy, _ = first.specimen_centre_um
        holes = grid.holes((sx - 3, sx + 3, sy - 3, sy + 3))
        gap = np.hypot(holes.centres_um[:, 0] - sx, holes.centres_um[:, 1] - sy)
        assert holes.intact[int(np.argmin(gap))] and gap.min() < hole_um / 2
        start_gaps.append(float(gap.min()))
        (quality,) = assess(truth, journal, acquire_config, microscope_s=1.0).targets
        assert max(abs(e) for e in quality.defocus_error_um) < DEFOCUS_BOUND_UM
        record_times += [truth.exposure(int(c["exposure_id"])).time_s for c in committed]
        points = np.array(
            [truth.exposure(int(c["exposure_id"])).specimen_centre_um[:2] for c in committed]
        )
        off_target_um.append(np.hypot(*(points - points[0]).T))
    assert len(record_ids) == len(set(record_ids))  # no exposure twice
    # Every Record on its target: its point from the series' first Record's (twin truth).
    tilted = np.concatenate([o[1:] for o in off_target_um])
    assert tilted.max() < OFF_TARGET_BOUND_UM, off_target_um
    assert np.mean(tilted < ON_TARGET_UM) >= ON_TARGET_FRACTION, off_target_um
    # The refill came when forced (at the next dewar check), with Records before and after it
    # and none during it (the engine waits a fill out); the jump came mid-session.
    events = {str(e["kind"]): e for e in truth.events}
    assert {"dewar_fill_started", "stage_jump"} <= set(events), events
    fill = events["dewar_fill_started"]
    start_s, until_s = float(fill["time_s"]), float(fill["until_s"])  # type: ignore[arg-type]
    assert REFILL_AT_S <= start_s < REFILL_AT_S + 300.0
    assert min(record_times) < start_s and max(record_times) > until_s
    assert not [t for t in record_times if start_s <= t <= until_s]
    jump_s = float(events["stage_jump"]["time_s"])  # type: ignore[arg-type]
    assert min(record_times) < jump_s < max(record_times)
    assert len(load_history(run_dir / "G1_predictions.json").series) == n_targets
    return start_gaps


def _atlas_to_series(tmp_path: Path, seed: int, min_targets: int) -> NDArray[np.float64]:
    """``tomopilot atlas run`` on the twin grid of ``seed``, its files checked, then the
    unattended session over its targets (:func:`_unattended_session`); each series' start's
    distance from its hole's centre (µm)."""
    twin = {**TWIN, "seed": seed}
    run_dir = tmp_path / "run"
    atlas_yaml = tmp_path / "atlas.yaml"
    atlas_yaml.write_text(
        yaml.safe_dump(
            {
                "microscope": {"twin": twin},
                "atlas": {"extent_um": 450.0, "squares": 3, "targets_per_square": 4},
                "presets": {"Grid": {"binning": 16}, "Square": {"binning": 4}},
            }
        )
    )
    result = CliRunner().invoke(app, ["atlas", "run", str(atlas_yaml), "--out", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "Squares, best first" in result.output

    # The files: the montage, its Navigator (map, squares, targets with focus points) and
    # the targets file with a Preview map and a View per target.
    with mrcfile.open(run_dir / "grid_atlas.mrc") as mrc:
        assert mrc.data.shape == (4, 256, 256)
    items = nav_items(read_nav(run_dir / "grid_atlas.nav"))
    assert sum(i.is_map for i in items) == 1
    data = read_targets_file(run_dir / "grid_tgts.txt")
    n_targets = len(data.targets)
    assert n_targets >= min_targets
    labels = {i.label for i in items}
    assert {f"T{k:03d}" for k in range(1, n_targets + 1)} <= labels
    assert {f"F{k:03d}" for k in range(1, n_targets + 1)} <= labels
    view_side = TWIN["presets"]["view"]["camera_area_px"][0] // TWIN["presets"]["view"]["binning"]
    for k, target in enumerate(data.targets, start=1):
        assert (run_dir / f"grid_tgt_{k:03d}.mrc").exists()
        assert target.get("viewfile") == f"grid_tgt_{k:03d}_view.mrc"  # PACEtomo's name
        with mrcfile.open(run_dir / f"grid_tgt_{k:03d}_view.mrc") as mrc:
            assert mrc.data.shape == (view_side, view_side)  # the View preset's field
    # Each target carries its focus point (the Navigator's F item) for the series' autofocus,
    # off the target so that focusing puts no dose on it.
    by_label = {i.label: i.stage_xyz_um for i in items}
    for k, target in enumerate(data.targets, start=1):
        focus = np.subtract(by_label[f"F{k:03d}"][:2], by_label[f"T{k:03d}"][:2])
        written = (float(target.get("focusSSX") or "nan"), float(target.get("focusSSY") or "nan"))
        assert np.allclose(written, focus, atol=1e-3)
        assert np.hypot(*focus) > 1.5

    # Going to each target puts the beam in an intact hole of the grid (twin truth).
    scope = TwinMicroscope(TwinConfig.model_validate(twin))
    grid = scope.specimen
    assert isinstance(grid, GridSpecimen)
    in_hole = 0
    for target in data.targets:
        x, y = float(target.get("stageX") or "nan"), float(target.get("stageY") or "nan")
        scope.stage.move_to(x_um=x, y_um=y)
        image = scope.camera.acquire(LowDoseArea.RECORD)
        sx, sy, _ = scope.ground_truth.exposure(image.exposure_id).specimen_centre_um
        holes = grid.holes((sx - 3, sx + 3, sy - 3, sy + 3))
        gap = np.hypot(holes.centres_um[:, 0] - sx, holes.centres_um[:, 1] - sy)
        k = int(np.argmin(gap))
        in_hole += bool(holes.intact[k] and gap[k] < grid.config.hole_diameter_um / 2)
    assert in_hole >= 0.8 * n_targets

    # The session: every target one rendered tilt series, through a dewar refill and a stage
    # jump, judged against the twin's truth.
    return np.asarray(
        _unattended_session(tmp_path, run_dir, n_targets, grid.config.hole_diameter_um, seed)
    )


def test_atlas_to_ten_sequential_tilt_series_unattended(tmp_path: Path) -> None:
    start_gaps = _atlas_to_series(tmp_path, SEED, 10)
    # Each series starts at its hole's centre: every area realigns to its View (the hole's
    # edge) before its Preview map, wherever the stage crept to (seen: all 10 within 0.094 µm;
    # 0.62 and 0.49 µm for two targets whose featureless maps matched nothing, without Views).
    assert start_gaps.max() < START_BOUND_UM, start_gaps
    assert np.mean(start_gaps < START_NEAR_UM) >= START_NEAR_FRACTION, start_gaps


def test_a_run_away_branch_over_grid_holes_stays_on_its_hole(tmp_path: Path) -> None:
    """Twin seed 1's grid: its goniometer runs away on the + branch, and from 30° to 45° the
    target slides ~1 µm across the axis, about half the holes' pitch seen at 45° (2.1 µm). A
    View there shows the target hole at one edge and its neighbour at the other, and no peak
    is believed; before the half-step retry every target's +45° Record stood 1.26-1.48 µm
    off. Now the View is retried from half the step (the slide halved): every Record within
    the bounds above (seen: within 0.08 µm; seeds 2, 3, 5, 6 of this twin pass too)."""
    start_gaps = _atlas_to_series(tmp_path, 1, 5)  # seed 1's mesh holds 7 targets
    assert start_gaps.max() < START_BOUND_UM, start_gaps


def test_a_bad_atlas_configuration_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "atlas.yaml"
    bad.write_text(yaml.safe_dump({"atlas": {"squares": 0}}))
    result = CliRunner().invoke(app, ["atlas", "run", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "atlas.squares" in result.output and "atlas.yaml" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()  # nothing written
