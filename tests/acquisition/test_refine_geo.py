"""refineGeo in a run: the targets' heights corrected from the start Records' Thon rings."""

from __future__ import annotations

from pathlib import Path

from acq_helpers import write_config

from tomopilot.acquisition.journal import replay_journal
from tomopilot.acquisition.run import start_run
from tomopilot.acquisition.run_config import load_acquire_config
from tomopilot.core.files import AppendOnlyJournal

TARGETS = [
    {"SSX": 0.0, "SSY": 0.0},
    {"SSX": 1.5, "SSY": 2.5},
    {"SSX": -1.5, "SSY": -2.5},
    {"SSX": 2.0, "SSY": -2.0},
    {"SSX": -2.0, "SSY": 2.0},
]


def test_refine_geo_recovers_the_heights_an_unknown_pretilt_gave(tmp_path: Path) -> None:
    settings = {
        "refineGeo": True,
        "doCtfFind": True,
        "pretilt": 0.0,  # the lamella's 12° pretilt is unknown to the run: every z₀ = 0
        "maxDefocus": -3.5,
        "minDefocus": -3.5,
        "minTilt": -3,
        "maxTilt": 3,
    }
    twin = {
        "specimen": {"kind": "lamella", "pretilt_deg": 12.0, "rotation_deg": 0.0},
        # 4 Å pixels: the Thon rings of a −3.5 µm Record lie below Nyquist
        "presets": {"record": {"camera_area_px": [1024, 1024], "binning": 2}},
    }
    config = write_config(tmp_path, targets=TARGETS, settings=settings, twin=twin)
    engine, _ = start_run(load_acquire_config(config), strategy="pace")
    engine.run()
    records = list(AppendOnlyJournal(engine.journal_path).records())
    heights = next(r for r in records if r["kind"] == "heights")["corrections_um"]
    truth = engine.scope.ground_truth
    start = {
        int(c["target"]): truth.exposure(int(c["exposure_id"]))
        for c in replay_journal(engine.journal_path).committed
        if c["step_index"] == 0
    }
    depth = {k: e.defocus_um - e.focus_um for k, e in start.items()}  # defocus = focus + z
    for target in range(2, len(TARGETS) + 1):
        true_height = depth[target] - depth[1]  # at 0° the lab and specimen heights agree
        assert abs(true_height) > 0.3  # the pretilt matters for these targets
        assert abs(heights[str(target)] - true_height) < 0.05
    assert heights["1"] == 0.0
