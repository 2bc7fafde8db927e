"""From a twin grid to tilt series, unattended: ``tomopilot atlas run`` writes the target list,
``tomopilot acquire`` (strategy ``sequential``) takes a tilt series at every target through a
dewar refill and a stage jump, and nothing is lost."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import yaml
from acq_helpers import write_config
from typer.testing import CliRunner

from tomopilot.acquisition.output.journal import replay_journal
from tomopilot.acquisition.session import load_history
from tomopilot.cli.main import app
from tomopilot.instrument import LowDoseArea
from tomopilot.instrument.twin import TwinConfig, TwinMicroscope
from tomopilot.instrument.twin.specimen import GridSpecimen
from tomopilot.io.navigator import read_nav
from tomopilot.io.pacetomo_targets import read_targets_file
from tomopilot.targeting import load_targets, save_targets
from tomopilot.targeting.nav_items import nav_items

SEED = 4
# The same twin for the atlas and the acquisition (the acquisition does not render: it shows
# the mechanics of a session, not its tracking).
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


def _first_records_sit_in_their_holes(folder: Path, atlas_dir: Path, hole_um: float) -> None:
    """Three of the atlas's targets as a rendered sequential session (±3°): the first Record
    of each series lies in an intact hole, at its centre (the maps are centred within 10 nm;
    recentring by stage and the reference Preview take out the stage's errors)."""
    folder.mkdir()
    targets = load_targets(atlas_dir / "grid_tgts.txt")
    save_targets(
        folder / "grid_tgts.txt", targets.model_copy(update={"targets": targets.targets[:3]})
    )
    path = write_config(
        folder,
        strategy="sequential",
        seed=SEED,
        settings={"minTilt": -3, "maxTilt": 3, "tiltScheme": "bidirectional", "pretilt": 0},
        twin={k: v for k, v in TWIN.items() if k != "seed"},
    )
    config = yaml.safe_load(path.read_text())
    config["targets"] = {"file": str(folder / "grid_tgts.txt")}
    config["output"] = {"dir": str(folder / "run"), "root": "R1"}
    (folder / "run").mkdir()
    for k in range(1, 4):  # the targets' maps are read from the run folder
        shutil.copy(atlas_dir / f"grid_tgt_{k:03d}.mrc", folder / "run")
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["acquire", str(path)])
    assert result.exit_code == 0, result.output
    twin_config = TwinConfig.model_validate(config["microscope"]["twin"])
    replayed = TwinMicroscope(twin_config, command_log=folder / "run" / "twin_commands.jsonl")
    grid = replayed.specimen
    assert isinstance(grid, GridSpecimen)
    gaps = []
    for k in range(1, 4):
        journal = replay_journal(folder / "run" / f"R1_t{k:03d}.journal.jsonl")
        first = journal.committed[0]
        truth = replayed.ground_truth.exposure(int(first["exposure_id"]))
        sx, sy, _ = truth.specimen_centre_um
        holes = grid.holes((sx - 3, sx + 3, sy - 3, sy + 3))
        gap = np.hypot(holes.centres_um[:, 0] - sx, holes.centres_um[:, 1] - sy)
        assert holes.intact[int(np.argmin(gap))] and gap.min() < hole_um / 2
        gaps.append(float(gap.min()))
    assert max(gaps) < 0.1, gaps


def test_atlas_to_ten_sequential_tilt_series_unattended(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    atlas_yaml = tmp_path / "atlas.yaml"
    atlas_yaml.write_text(
        yaml.safe_dump(
            {
                "microscope": {"twin": TWIN},
                "atlas": {"extent_um": 450.0, "squares": 3, "targets_per_square": 4},
                "presets": {"Grid": {"binning": 16}, "Square": {"binning": 4}},
            }
        )
    )
    result = CliRunner().invoke(app, ["atlas", "run", str(atlas_yaml), "--out", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "Squares, best first" in result.output

    # The files: the montage, its Navigator (map, squares, targets with focus points) and
    # the targets file with a Preview map per target.
    with mrcfile.open(run_dir / "grid_atlas.mrc") as mrc:
        assert mrc.data.shape == (4, 256, 256)
    items = nav_items(read_nav(run_dir / "grid_atlas.nav"))
    assert sum(i.is_map for i in items) == 1
    data = read_targets_file(run_dir / "grid_tgts.txt")
    n_targets = len(data.targets)
    assert n_targets >= 10
    labels = {i.label for i in items}
    assert {f"T{k:03d}" for k in range(1, n_targets + 1)} <= labels
    assert {f"F{k:03d}" for k in range(1, n_targets + 1)} <= labels
    for k in range(1, n_targets + 1):
        assert (run_dir / f"grid_tgt_{k:03d}.mrc").exists()
    # Each target carries its focus point (the Navigator's F item) for the series' autofocus,
    # off the target so that focusing puts no dose on it.
    by_label = {i.label: i.stage_xyz_um for i in items}
    for k, target in enumerate(data.targets, start=1):
        focus = np.subtract(by_label[f"F{k:03d}"][:2], by_label[f"T{k:03d}"][:2])
        written = (float(target.get("focusSSX") or "nan"), float(target.get("focusSSY") or "nan"))
        assert np.allclose(written, focus, atol=1e-3)
        assert np.hypot(*focus) > 1.5

    # Going to each target puts the beam in an intact hole of the grid (twin truth).
    scope = TwinMicroscope(TwinConfig.model_validate(TWIN))
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

    # Rendered, the first three series start where their Preview maps put them: in the hole.
    _first_records_sit_in_their_holes(tmp_path / "rendered", run_dir, grid.config.hole_diameter_um)

    # The session: every target one tilt series, through a dewar refill and a stage jump.
    path = write_config(
        tmp_path,
        strategy="sequential",
        seed=SEED,
        settings={"minTilt": -6, "maxTilt": 6, "tiltScheme": "bidirectional", "pretilt": 0},
        twin={
            **{k: v for k, v in TWIN.items() if k != "seed"},
            "camera": {"render": False},
            "faults": [
                {"kind": "dewar_refill", "at_time_s": 900.0},
                {"kind": "stage_jump", "at_move": 150, "magnitude_um": 0.3},
            ],
        },
    )
    config = yaml.safe_load(path.read_text())
    config["targets"] = {"file": str(run_dir / "grid_tgts.txt")}
    config["output"] = {"dir": str(run_dir), "root": "G1"}
    config["sequential"] = {"relocate_with_view": False}  # flat images: nothing to relocate
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["acquire", str(path)])
    assert result.exit_code == 0, result.output
    assert f"finished: {5 * n_targets} exposures, 0 lost" in result.output
    for k in range(1, n_targets + 1):
        journal = replay_journal(run_dir / f"G1_t{k:03d}.journal.jsonl")
        assert journal.finished is not None and journal.finished["status"] == "finished"
        assert sorted(float(c["tilt_deg"]) for c in journal.committed) == [-6, -3, 0, 3, 6]
    # The twin, rebuilt from its command log, says the refill and the jump happened.
    acquired = TwinConfig.model_validate(config["microscope"]["twin"])
    replayed = TwinMicroscope(acquired, command_log=run_dir / "twin_commands.jsonl")
    happened = {str(event["kind"]) for event in replayed.ground_truth.events}
    assert {"dewar_fill_started", "stage_jump"} <= happened, happened
    assert len(load_history(run_dir / "G1_predictions.json").series) == n_targets


def test_a_bad_atlas_configuration_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "atlas.yaml"
    bad.write_text(yaml.safe_dump({"atlas": {"squares": 0}}))
    result = CliRunner().invoke(app, ["atlas", "run", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "atlas.squares" in result.output and "atlas.yaml" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()  # nothing written
