"""A ``sequential`` session (one area per target) killed at exact points and resumed: the same
tilt series as the uninterrupted session, nothing lost or twice, the session's history (which
seeds the next targets' predictors) holding each finished series exactly once."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import mdocfile
import mrcfile
import numpy as np
import pytest
from acq_helpers import write_sequential_config
from test_kill_and_resume import _run_to_point, _start

from tomopilot.acquisition.output.journal import replay_journal
from tomopilot.acquisition.quality import area_journals, assess_run_dir
from tomopilot.acquisition.session import load_history
from tomopilot.geometry.tilt_predictor import SeriesRecord

# Two targets, ±6° in 3° steps: five Records each (start, +3, +6, −3, −6), 256² at 32 Å.
TARGETS = [{"SSX": 0.0, "SSY": 0.0}, {"SSX": 2.0, "SSY": 1.0}]
N_TILTS = 5

# Each kill in a new process (the pause hook counts in its own process): the point, and the
# area whose journal's last line is then of the given kind.
KILL_POINTS = (
    # target 1's +6° Record taken, not committed (start and +3° are)
    ("exposure:Record:3", 1, "started"),
    # the resume: +6° again and −3°, the first of the second half, committed
    ("after-journal:committed:2", 1, "committed"),
    # target 1 finished, its series not yet in the session's history
    ("after-journal:finished:1", 1, "finished"),
    # target 2: its start Record committed, the +3° Record's stack section written, the
    # commit not journalled
    ("before-journal:committed:2", 2, "started"),
)


def _config(folder: Path) -> Path:
    return write_sequential_config(folder, seed=5, max_tilt_deg=6, targets=TARGETS)


def _last_kind(run_dir: Path, area: int) -> str:
    lines = (run_dir / f"L1_t{area:03d}.journal.jsonl").read_text().splitlines()
    return str(json.loads(lines[-1])["kind"])


def _history(run_dir: Path) -> list[SeriesRecord]:
    return load_history(run_dir / "L1_predictions.json").series


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session run to its end without a kill (``tomopilot acquire``): its run folder."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    done = _start(_config(folder), resume=False)
    _, stderr = done.communicate(timeout=600)
    assert done.returncode == 0, stderr.decode()
    return folder / "run"


def test_a_sequential_session_killed_at_exact_points_resumes_to_the_same_series(
    uninterrupted: Path, tmp_path: Path
) -> None:
    reference_quality = assess_run_dir(uninterrupted)

    config = _config(tmp_path / "killed")
    run_dir = tmp_path / "killed" / "run"
    in_flight: list[tuple[int, int]] = []
    for number, (point, area, kind) in enumerate(KILL_POINTS):
        _run_to_point(config, number > 0, point)
        assert _last_kind(run_dir, area) == kind, point
        state = replay_journal(run_dir / f"L1_t{area:03d}.journal.jsonl")
        if state.in_flight is not None:
            in_flight.append((area, int(state.in_flight["step_index"])))
        if point == "after-journal:finished:1":  # killed before the history was written
            assert not _history(run_dir)
    final = _start(config, resume=True)
    _, stderr = final.communicate(timeout=600)
    assert final.returncode == 0, stderr.decode()

    # Every tilt of every target exactly once; lost = exactly the Records in flight.
    lost: list[tuple[int, int]] = []
    for area, path in area_journals(run_dir, "L1"):
        journal = replay_journal(path)
        assert journal.finished is not None and journal.finished["status"] == "finished"
        steps = [int(c["step_index"]) for c in journal.committed]
        assert sorted(steps) == list(range(N_TILTS)), (area, steps)
        lost += [(area, int(c["step_index"])) for c in journal.lost]
        stack = run_dir / f"L1_t{area:03d}_ts_001.mrc"
        with mrcfile.open(stack) as mrc:
            assert mrc.data.shape[0] == N_TILTS
        with contextlib.redirect_stdout(io.StringIO()):
            frame = mdocfile.read(f"{stack}.mdoc")
        tilts = sorted(float(c["tilt_deg"]) for c in journal.committed)
        np.testing.assert_allclose(np.sort(frame["TiltAngle"].to_numpy()), tilts, atol=0.05)
    assert [a for a, _ in area_journals(run_dir, "L1")] == [1, 2]
    assert sorted(lost) == sorted(in_flight) and len(in_flight) == 2
    # The history seeds later targets: each finished series in it once, as uninterrupted.
    assert len(_history(run_dir)) == len(_history(uninterrupted)) == 2
    rows = json.loads((run_dir / "L1_predictions.json").read_text())
    assert [row.get("area") for row in rows] == ["L1_t001", "L1_t002"]
    # The outcome: both series tracked and focused as well as without the kills.
    quality = assess_run_dir(run_dir)
    assert [t.target for t in quality.targets] == [1, 2]
    assert [t.n_exposures for t in quality.targets] == [N_TILTS, N_TILTS]
    track = quality.pooled()["tracking_rms_nm"]
    reference_track = reference_quality.pooled()["tracking_rms_nm"]
    assert track <= 1.25 * reference_track + 10.0, (track, reference_track)
    focus = quality.pooled()["defocus_rms_um"]
    reference_focus = reference_quality.pooled()["defocus_rms_um"]
    assert focus <= 1.25 * reference_focus + 0.05, (focus, reference_focus)


def test_each_area_journals_its_target_and_an_older_session_is_still_reported(
    uninterrupted: Path, tmp_path: Path
) -> None:
    """Each area's ``run`` line names the run's target it acquires; a session written before
    it did (the same files, the ``run`` lines without it) is reported the same."""
    runs = {area: replay_journal(path).run for area, path in area_journals(uninterrupted, "L1")}
    assert {area: (run or {}).get("area") for area, run in runs.items()} == {1: 1, 2: 2}
    older = tmp_path / "older"
    shutil.copytree(uninterrupted, older)
    for path in older.glob("L1_t*.journal.jsonl"):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert lines[0]["kind"] == "run"
        del lines[0]["area"]
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert [a for a, _ in area_journals(older, "L1")] == [1, 2]
    now, before = assess_run_dir(uninterrupted), assess_run_dir(older)
    assert [t.target for t in before.targets] == [t.target for t in now.targets] == [1, 2]
    assert before.pooled() == now.pooled()
