"""refineGeo in a run: the targets' heights corrected from the start Records' Thon rings."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import mdocfile
import pytest
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


SETTINGS = {
    "refineGeo": True,
    "doCtfFind": True,
    "pretilt": 0.0,  # the lamella's 12° pretilt is unknown to the run: every z₀ = 0
    "maxDefocus": -3.5,
    "minDefocus": -3.5,
    "minTilt": -3,
    "maxTilt": 3,
}
TWIN = {
    "specimen": {"kind": "lamella", "pretilt_deg": 12.0, "rotation_deg": 0.0},
    # 4 Å pixels: the Thon rings of a −3.5 µm Record lie below Nyquist
    "presets": {"record": {"camera_area_px": [1024, 1024], "binning": 2, "exposure_s": 3.0}},
}


def test_refine_geo_recovers_the_heights_an_unknown_pretilt_gave(tmp_path: Path) -> None:
    config = write_config(tmp_path, targets=TARGETS, settings=SETTINGS, twin=TWIN)
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


class _Crash(BaseException):
    """The process dies."""


def test_refine_geo_runs_on_resume_when_the_run_stopped_before_it(tmp_path: Path) -> None:
    """Killed after the start round's last Record was saved and before refineGeo: the resumed
    run fits the heights from the journalled CTF fits, as the uninterrupted run would have."""
    config = write_config(tmp_path, targets=TARGETS, settings=SETTINGS, twin=TWIN)
    first, _ = start_run(load_acquire_config(config), strategy="pace")

    def die(*args: object) -> None:
        raise _Crash

    first._refine_heights = die  # type: ignore[method-assign]
    with pytest.raises(_Crash):
        first.run()
    assert not any(r["kind"] == "heights" for r in AppendOnlyJournal(first.journal_path).records())
    engine, _ = start_run(load_acquire_config(config), strategy="pace")
    assert engine.run(resume=True).status == "finished"
    records = list(AppendOnlyJournal(engine.journal_path).records())
    heights = [r["corrections_um"] for r in records if r["kind"] == "heights"]
    assert len(heights) == 1
    truth = engine.scope.ground_truth
    start = {
        int(c["target"]): truth.exposure(int(c["exposure_id"]))
        for c in replay_journal(engine.journal_path).committed
        if c["step_index"] == 0
    }
    depth = {k: e.defocus_um - e.focus_um for k, e in start.items()}
    for target in range(2, len(TARGETS) + 1):
        assert abs(heights[0][str(target)] - (depth[target] - depth[1])) < 0.05
