"""The sequential strategy's start reference: what the backlash release moved is found even when
the start Preview cannot be registered to the target's map (thin ice in a hole)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from acq_helpers import write_config

from tomopilot.acquisition.output.journal import replay_journal
from tomopilot.acquisition.plan.run_config import load_acquire_config
from tomopilot.acquisition.run import start_run
from tomopilot.acquisition.strategies import sequential_release as start_module

PRESETS = {
    "record": {"camera_area_px": [4096, 4096], "binning": 16},
    "preview": {"camera_area_px": [4096, 4096], "binning": 16, "exposure_s": 0.5},
}


def _start_miss_nm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, views: bool, wider: bool
) -> float:
    """The start Record's distance from the target (twin truth) when the start Preview's
    registration to the map is not believed; ``views``/``wider`` False: the Views around the
    release / the wider field's search made to find nothing."""
    tmp_path.mkdir()
    path = write_config(
        tmp_path,
        strategy="sequential",
        seed=4,
        targets=[{"SSX": 0.0, "SSY": 0.0}],
        settings={"minTilt": -3, "maxTilt": 3, "tiltScheme": "bidirectional", "pretilt": 0},
        # a goniometer whose release moves the specimen 0.2-0.3 um (side-entry-like steps)
        twin={"presets": PRESETS, "stage": {"step_error_sigma_um": 0.15}},
    )
    engine, _ = start_run(load_acquire_config(path))
    calls = {"n": 0}

    def register(toolkit: Any, reference: Any, image: Any) -> Any:
        # The start Preview, taken after the release, gives no believable peak (as on thin ice
        # in a hole); the recentring's Previews (sequential_steps) register as usual.
        calls["n"] += 1
        return None

    monkeypatch.setattr(start_module, "register_to_map", register)
    if not wider:
        monkeypatch.setattr(start_module, "locate_map_wider", lambda *a, **k: None)
    if not views:
        moved = start_module.moved_by_release
        monkeypatch.setattr(
            start_module, "moved_by_release", lambda *a, **k: (None, moved(*a, **k)[1])
        )
    assert engine.run().status == "finished"
    assert calls["n"] >= 1
    journal = replay_journal(engine.journal_path)
    truth = engine.scope.ground_truth
    point = truth.exposure(journal.maps[1]).specimen_centre_um
    start = journal.committed[0]
    assert start["branch"] == "start"
    return math.hypot(*truth.exposure(int(start["exposure_id"])).offset_nm(point))


def test_what_the_backlash_release_moved_is_found_when_the_preview_cannot_be_believed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leginon's backlash correction (a View before and after the release) finds the move; so
    does, without it, the search for the map in a wider field; without either the start Record
    (and so the whole series) stays where the release put the specimen."""
    misses = {}
    for views, wider in ((True, True), (False, True), (False, False)):
        misses[views, wider] = _start_miss_nm(
            tmp_path / f"{views}{wider}", monkeypatch, views=views, wider=wider
        )
        monkeypatch.undo()
    # what the release moved stays without both; a View's pixel (~11 nm) with either
    assert misses[False, False] > 100.0, misses
    assert misses[True, True] < 30.0, misses
    assert misses[False, True] < 30.0, misses
