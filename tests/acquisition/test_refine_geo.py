"""refineGeo in a run: the targets' heights corrected from the start Records' Thon rings."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import mdocfile
from acq_helpers import write_config

from tomopilot.acquisition.output.journal import replay_journal
from tomopilot.acquisition.plan.run_config import load_acquire_config
from tomopilot.acquisition.run import start_run
from tomopilot.core.files import AppendOnlyJournal


def _read_mdoc(path: Path):  # type: ignore[no-untyped-def]  # mdocfile chats on stdout
    with contextlib.redirect_stdout(io.StringIO()):
        return mdocfile.read(path)


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
    # every Record's fitted defocus is in its mdoc, under the key of the program PACEtomo
    # would have run (doCtfPlotter is on by default)
    for target, exposure in start.items():
        mdoc = _read_mdoc(engine.plan.run_dir / f"L1_ts_{target:03d}.mrc.mdoc")
        assert "CtfFind" not in mdoc and mdoc["Ctfplotter"].notna().all()
        at_start = float(mdoc[mdoc["TiltAngle"] == 0.0].iloc[0]["Ctfplotter"])
        assert abs(at_start - exposure.defocus_um) < 0.05
