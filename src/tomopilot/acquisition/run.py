"""Wire a configuration into a running engine: microscope, plan, journal, files.

``start_run`` is what ``tomopilot acquire`` calls. On the twin, the microscope keeps a command log
in the run folder, so ``--resume`` after a crash finds it exactly where it was. With
``microscope: {backend: serialem}`` it drives SerialEM through its Python module; the run then
ends with :func:`close_microscope`, which restores what tomopilot changed on the microscope.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tomopilot.acquisition.control import EngineControl
from tomopilot.acquisition.engine import AcquisitionEngine
from tomopilot.acquisition.output.side_files import (
    RunLogHandler,
    attach_run_log,
    write_settings_dump,
)
from tomopilot.acquisition.plan.run_config import (
    AcquireConfig,
    MicroscopeConfig,
    ResolvedRun,
    resolve_run,
)
from tomopilot.acquisition.plan.run_plan import RunPlan
from tomopilot.core.config import write_resolved_config
from tomopilot.core.events import EventBus
from tomopilot.instrument.protocol import Microscope
from tomopilot.instrument.serialem import SerialEMOptions, open_serialem, resolve_address
from tomopilot.instrument.serialem.microscope import as_microscope as serialem_as_microscope
from tomopilot.instrument.twin import TwinMicroscope
from tomopilot.instrument.twin.microscope import as_microscope
from tomopilot.instrument.twin_serialem import make_module
from tomopilot.targeting.targets import TargetSet, save_targets

FRAME_SUFFIXES = {"tiff": ".tif", "mrc": ".mrc", "eer": ".eer"}


def run_folder(config: AcquireConfig) -> Path:
    """Where a configuration's run writes."""
    return Path(config.output.dir)


def open_microscope(
    micro: MicroscopeConfig,
    run_dir: Path,
    events: EventBus | None = None,
    *,
    serialem_module: Any | None = None,
) -> Microscope:
    """The configured microscope; the twin logs its commands in the run folder.

    ``backend: serialem`` connects to SerialEM (``serialem_module`` overrides the module the
    configuration names, e.g. a test double with the module's interface).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    if micro.backend == "serialem":
        return open_serialem_microscope(micro, run_dir, events, module=serialem_module)
    twin = TwinMicroscope(micro.twin, events=events, command_log=run_dir / "twin_commands.jsonl")
    return as_microscope(twin)


def open_serialem_microscope(
    micro: MicroscopeConfig,
    run_dir: Path,
    events: EventBus | None = None,
    *,
    module: Any | None = None,
) -> Microscope:
    """SerialEM as the run's microscope (its Python module, or the twin serving its interface)."""
    settings = micro.serialem
    options = SerialEMOptions(
        xy_limit_um=settings.stage_xy_limit_um,
        z_limit_um=settings.stage_z_limit_um,
        xy_backlash_um=settings.xy_backlash_um,
        tilt_backlash_deg=settings.tilt_backlash_deg,
        beam_diameter_um=settings.beam_diameter_um,
        dewar_poll_s=settings.dewar_poll_s,
        voltage_kv=settings.voltage_kv,
        cs_mm=settings.cs_mm,
    )
    exposure_ids = None
    if module is None and settings.module == "twin":
        module, exposure_ids = twin_serialem_module(micro, run_dir, events)
        optics = micro.twin.optics  # the twin behind the module is the microscope
        options.voltage_kv, options.cs_mm = optics.voltage_kv, optics.cs_mm
    scope = open_serialem(
        resolve_address(micro.host, micro.port), module=module, options=options, events=events
    )
    if exposure_ids is not None:
        scope.set_exposure_ids(exposure_ids)
    return serialem_as_microscope(scope)


def twin_serialem_module(
    micro: MicroscopeConfig, run_dir: Path, events: EventBus | None
) -> tuple[Any, Callable[[], int]]:
    """SerialEM's interface served by the twin, in this process; and the twin's exposure ids.

    The twin keeps its command log in the run folder, as on the direct backend, so ``--resume``
    finds it where it was and ``tomopilot report`` judges the run against its ground truth.
    """
    # the twin reports on its own bus: the backend reports the run's events
    twin = TwinMicroscope(micro.twin, command_log=run_dir / "twin_commands.jsonl")
    module = make_module(
        twin,
        directory=run_dir,
        properties={"MaximumTiltAngle": twin.stage.limits.tilt_deg},
    )
    truth = twin.ground_truth

    def last_exposure_id() -> int:
        return next((t.exposure_id for t in reversed(truth.exposures) if t.rendered), -1)

    return module, last_exposure_id


def close_microscope(scope: Microscope) -> list[str]:
    """Give the microscope back: a real one restores what tomopilot changed (see its docs)."""
    close = getattr(scope, "close", None)
    if callable(close):
        result = close()
        return list(result) if isinstance(result, list) else []
    return []


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
    serialem_module: Any | None = None,
) -> tuple[AcquisitionEngine, ResolvedRun]:
    """Resolve, check and set up a run (nothing is exposed until ``engine.run()``).

    With ``backend: serialem`` the microscope is connected first and the plan is checked against
    its limits; call :func:`close_microscope` on ``engine.scope`` when the run is over.
    """
    if strategy is not None:
        config = config.model_copy(update={"strategy": strategy})
    run_dir = run_folder(config)
    bus = events or EventBus()
    if config.microscope.backend == "twin":
        resolved = resolve_run(config)
        scope = open_microscope(config.microscope, run_dir, bus)
    else:  # check the plan against the connected microscope's own limits
        scope = open_microscope(config.microscope, run_dir, bus, serialem_module=serialem_module)
        try:
            limits = (scope.stage.limits.tilt_deg, scope.optics.image_shift_limit_um)
            resolved = resolve_run(config, limits=limits)
        except BaseException:
            close_microscope(scope)
            raise
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
