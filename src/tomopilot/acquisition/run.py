"""Wire a configuration into a running engine: microscope, plan, journal, files.

``start_run`` is what ``tomopilot acquire`` calls. On the twin, the microscope keeps a command log
in the run folder, so ``--resume`` after a crash finds it exactly where it was.
"""

from __future__ import annotations

from pathlib import Path

from tomopilot.acquisition.control import EngineControl
from tomopilot.acquisition.engine import AcquisitionEngine
from tomopilot.acquisition.output.side_files import (
    RunLogHandler,
    attach_run_log,
    write_settings_dump,
)
from tomopilot.acquisition.plan.run_config import AcquireConfig, ResolvedRun, resolve_run
from tomopilot.acquisition.plan.run_plan import RunPlan
from tomopilot.core.config import write_resolved_config
from tomopilot.core.events import EventBus
from tomopilot.instrument.protocol import Microscope
from tomopilot.instrument.twin import TwinMicroscope
from tomopilot.instrument.twin.microscope import as_microscope
from tomopilot.targeting.targets import TargetSet, save_targets

FRAME_SUFFIXES = {"tiff": ".tif", "mrc": ".mrc", "eer": ".eer"}


def run_folder(config: AcquireConfig) -> Path:
    """Where a configuration's run writes."""
    return Path(config.output.dir)


def open_microscope(
    config: AcquireConfig, run_dir: Path, events: EventBus | None = None
) -> Microscope:
    """The configured microscope; the twin logs its commands in the run folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    twin = TwinMicroscope(
        config.microscope.twin, events=events, command_log=run_dir / "twin_commands.jsonl"
    )
    return as_microscope(twin)


def make_plan(config: AcquireConfig, resolved: ResolvedRun, run_dir: Path) -> RunPlan:
    """The engine's plan from a resolved configuration."""
    return RunPlan(
        settings=resolved.settings,
        targets=resolved.targets,
        scheme=resolved.scheme,
        area_stage_um=resolved.area_stage_um,
        strategy=config.strategy,
        run_dir=run_dir,
        root=config.output.root,
        save_frames=config.save_frames,
        frame_suffix=FRAME_SUFFIXES.get(config.frames_format, ".tif"),
        geo_points_um=list(resolved.geo_points_um),
        sequential=config.sequential,
    )


def start_run(
    config: AcquireConfig,
    *,
    strategy: str | None = None,
    events: EventBus | None = None,
    control: EngineControl | None = None,
) -> tuple[AcquisitionEngine, ResolvedRun]:
    """Resolve, check and set up a run (nothing is exposed until ``engine.run()``)."""
    if strategy is not None:
        config = config.model_copy(update={"strategy": strategy})
    resolved = resolve_run(config)
    run_dir = run_folder(config)
    bus = events or EventBus()
    scope = open_microscope(config, run_dir, bus)
    plan = make_plan(config, resolved, run_dir)
    write_resolved_config(config, run_dir / f"{plan.root}_config.resolved.yaml")
    engine = AcquisitionEngine(scope, plan, events=bus, control=control)
    return engine, resolved


def attach_outputs(engine: AcquisitionEngine, resolved: ResolvedRun) -> RunLogHandler:
    """Write the run's side files (targets file, settings dump) and start its log."""
    plan = engine.plan
    stem = f"{plan.root}_tgts"
    targets_path = plan.run_dir / f"{stem}.txt"
    if not targets_path.exists():
        save_targets(targets_path, TargetSet(targets=list(resolved.targets)))
    write_settings_dump(plan.run_dir, stem, resolved.settings.model_dump(mode="json"))
    return attach_run_log(plan.run_dir, plan.root)
