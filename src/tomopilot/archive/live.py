"""Start recording a run that is about to begin (what ``tomopilot acquire`` calls)."""

from __future__ import annotations

from pathlib import Path

from tomopilot.acquisition.engine import AcquisitionEngine
from tomopilot.acquisition.plan.run_config import ResolvedRun
from tomopilot.archive.apply_events import SessionInfo
from tomopilot.archive.recorder import Recorder
from tomopilot.archive.truth import live_truth_source
from tomopilot.instrument.types import LowDoseArea
from tomopilot.store import Store


def session_info(engine: AcquisitionEngine, resolved: ResolvedRun) -> SessionInfo:
    """The run's name, folder, targets and area geometry, from its plan."""
    plan = engine.plan
    try:
        beam_um: float | None = engine.scope.optics.preset(LowDoseArea.RECORD).beam_diameter_um
    except Exception:  # a backend without presets still records
        beam_um = None
    return SessionInfo(
        run_dir=str(Path(plan.run_dir).resolve()),
        name=plan.root,
        targets_um=[t.ss_um for t in resolved.targets],
        skipped={n for n, t in enumerate(resolved.targets, start=1) if t.skip},
        area_stage_um=plan.area_stage_um,
        pretilt_deg=plan.settings.pretilt_deg,
        rotation_deg=plan.settings.rotation_deg,
        beam_diameter_um=beam_um,
        n_tilts=plan.scheme.n_tilts,
        is_twin=live_truth_source(engine.microscope, engine.journal_path) is not None,
    )


def record_run(engine: AcquisitionEngine, resolved: ResolvedRun, store: Store) -> Recorder:
    """A recorder subscribed to ``engine``'s events (close it after the run)."""
    recorder = Recorder(
        store,
        session_info(engine, resolved),
        truth=live_truth_source(engine.microscope, engine.journal_path),
    )
    recorder.attach(engine.events)
    return recorder
