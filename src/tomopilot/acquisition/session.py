"""A session: many areas on one microscope, one after the other, any strategy per area.

The engine runs one area. A Leginon-style sequential session is many areas of one target each
(:func:`sequential_plans` splits a run's targets that way); a mixed session is just a list of
plans whose strategies differ. :func:`run_session` runs the plans in order on one microscope,
hands the ``sequential`` strategy the session's history of earlier series (UCSF Tomo seeds its
model from them), keeps that history in ``<root>_predictions.json`` so a resumed session has it,
hands on the defocus–tilt calibration the first area measured (``<root>_defocus_tilt.json``),
does the housekeeping due at a reference position between areas (energy-filter slit on an
interval, waiting out a dewar fill) and stops starting areas when the session-length cap is
reached. ``resume=True`` skips finished areas and continues the interrupted one from its
journal.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from tomopilot.acquisition.control import EngineControl
from tomopilot.acquisition.engine import AcquisitionEngine
from tomopilot.acquisition.output.journal import replay_journal
from tomopilot.acquisition.plan.run_config import ResolvedRun
from tomopilot.acquisition.plan.run_plan import RunPlan, RunSummary
from tomopilot.acquisition.plan.tilt_schemes import Branch, TiltController, TiltScheme, TiltStep
from tomopilot.acquisition.quality import RunQuality, assess
from tomopilot.acquisition.strategies.sequential import SequentialStrategy
from tomopilot.core.events import EventBus
from tomopilot.core.files import atomic_write_text
from tomopilot.geometry.tilt_predictor import SeriesRecord, SessionHistory
from tomopilot.instrument.protocol import Microscope
from tomopilot.targeting.targets import Target

_log = logging.getLogger(__name__)


@dataclass
class SessionSummary:
    """How a session ended: each area's summary in order, and why it stopped."""

    areas: list[tuple[str, RunSummary]] = field(default_factory=list)
    stopped: str = "finished"
    microscope_s: float = 0.0

    @property
    def n_exposures(self) -> int:
        """Records committed over every area."""
        return sum(s.n_exposures for _, s in self.areas)


class HalvesInTheirDirection(TiltScheme):
    """A bidirectional scheme whose − half is approached downwards, one move per tilt, as
    Leginon tilts it (after a backlash release from above, :mod:`.strategies.sequential`);
    the parallel strategies approach every negative tilt from below (two moves)."""

    def steps(self) -> list[TiltStep]:
        return [_downwards(s) for s in super().steps()]

    def controller(
        self, *, resume_after: int | None = None, ended_branches: Iterable[Branch] = ()
    ) -> TiltController:
        return _DownwardsController(
            self.steps(),
            step_deg=self.step_deg,
            slow_tilt=self.slow_tilt,
            resume_after=resume_after,
            ended_branches=ended_branches,
        )


class _DownwardsController(TiltController):
    """Hands out the − half's steps without an approach from below."""

    def next_step(self) -> TiltStep | None:
        step = super().next_step()
        return None if step is None else _downwards(step)


def _downwards(step: TiltStep) -> TiltStep:
    return replace(step, approach_deg=None) if step.branch == "-" else step


def sequential_plans(resolved: ResolvedRun, plan: RunPlan) -> list[RunPlan]:
    """One plan per target: its own area (target 1's stage position plus its shift), root
    ``<root>_tNNN``, the same settings, scheme and folder. Skipped targets get no area.
    With ``approach_from_below`` off, a bidirectional scheme's − half is approached
    downwards, one move per tilt (Leginon)."""
    ax, ay = plan.area_stage_um or (0.0, 0.0)
    options = plan.sequential
    scheme = plan.scheme
    if scheme.kind == "bidirectional" and not options.approach_from_below:
        scheme = HalvesInTheirDirection(**scheme.model_dump())
    plans = []
    for number, target in enumerate(resolved.targets, start=1):
        if target.skip:
            continue
        only = Target(
            ss_x_um=0.0,
            ss_y_um=0.0,
            stage_x_um=ax + target.ss_x_um,
            stage_y_um=ay + target.ss_y_um,
            tgt_file=target.tgt_file,
            view_file=target.view_file,
            focus_ss_x_um=target.focus_ss_x_um,
            focus_ss_y_um=target.focus_ss_y_um,
        )
        plans.append(
            replace(
                plan,
                targets=[only],
                area_stage_um=(ax + target.ss_x_um, ay + target.ss_y_um),
                root=f"{plan.root}_t{number:03d}",
                geo_points_um=[],
                scheme=scheme,
            )
        )
    return plans


def _history_path(run_dir: Path, root: str) -> Path:
    return run_dir / f"{root}_predictions.json"


def load_history(path: Path) -> SessionHistory:
    """The session's earlier series, or an empty history."""
    if not path.exists():
        return SessionHistory()
    return SessionHistory.from_json(json.loads(path.read_text(encoding="utf-8")))


def load_calibration(path: Path) -> dict[float, float] | None:
    """The session's defocus–tilt calibration (tilt → defocus change, µm), if measured."""
    if not path.exists():
        return None
    return {float(t): float(v) for t, v in json.loads(path.read_text(encoding="utf-8"))}


def run_session(
    scope: Microscope,
    plans: Sequence[RunPlan],
    *,
    root: str,
    events: EventBus | None = None,
    resume: bool = False,
    max_hours: float | None = None,
    slit_interval_min: float = 0.0,
    on_engine: Callable[[AcquisitionEngine], None] | None = None,
    control: EngineControl | None = None,
    seed: Sequence[SeriesRecord] = (),
) -> SessionSummary:
    """Run ``plans`` in order on ``scope`` (see module docstring).

    ``max_hours`` caps the session: no area starts after that much microscope time (an area
    under way finishes). ``on_engine`` sees each engine before it runs (progress, benchmarks).
    ``seed``: earlier series (from an archive, say) a session without series of its own starts
    its predictor from; they are kept in its history file, so a resumed session has them too.
    """
    summary = SessionSummary()
    if not plans:
        return summary
    run_dir = plans[0].run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    history_path = _history_path(run_dir, root)
    history = load_history(history_path)
    calibration_path = run_dir / f"{root}_defocus_tilt.json"
    calibration = load_calibration(calibration_path)
    if not history.series and seed:
        history = SessionHistory(list(seed))
        atomic_write_text(history_path, json.dumps(history.to_json()))
    recorded = (
        {str(r) for r in json.loads(_areas_done(run_dir, root).read_text())}
        if (_areas_done(run_dir, root).exists())
        else set()
    )
    start_s = scope.clock.now_s()
    last_slit_s = start_s
    for plan in plans:
        elapsed_h = (scope.clock.now_s() - start_s) / 3600.0
        journal = plan.run_dir / f"{plan.root}.journal.jsonl"
        fresh = not journal.exists()
        if max_hours is not None and elapsed_h >= max_hours and fresh:
            summary.stopped = f"session cap of {max_hours:g} h reached"
            _log.info("%s; %s and later areas not started", summary.stopped, plan.root)
            break
        if fresh:
            scope.housekeeping.wait_for_dewar()
            if (
                slit_interval_min > 0
                and scope.clock.now_s() - last_slit_s >= 60 * slit_interval_min
            ):
                scope.housekeeping.refine_zlp()
                last_slit_s = scope.clock.now_s()
        engine = AcquisitionEngine(scope, plan, events=events, control=control)
        if isinstance(engine.strategy, SequentialStrategy):
            engine.strategy.history = history
            engine.strategy.calibration = calibration
        if on_engine is not None:
            on_engine(engine)
        result = engine.run(resume=resume and not fresh)
        summary.areas.append((plan.root, result))
        if isinstance(engine.strategy, SequentialStrategy) and calibration is None:
            calibration = engine.strategy.calibration
            if calibration is not None:
                atomic_write_text(calibration_path, json.dumps(sorted(calibration.items())))
        if (
            isinstance(engine.strategy, SequentialStrategy)
            and plan.root not in recorded
            and result.status == "finished"
            and engine.strategy.targets
        ):
            for record in engine.strategy.finished_series():
                history.add_series(record)
            recorded.add(plan.root)
            atomic_write_text(history_path, json.dumps(history.to_json()))
            atomic_write_text(_areas_done(run_dir, root), json.dumps(sorted(recorded)))
        if result.status == "aborted":
            summary.stopped = "aborted"
            break
    summary.microscope_s = scope.clock.now_s() - start_s
    return summary


def _areas_done(run_dir: Path, root: str) -> Path:
    return run_dir / f"{root}_predictions_areas.json"


def run_configured_session(
    engine: AcquisitionEngine,
    resolved: ResolvedRun,
    *,
    events: EventBus | None = None,
    control: EngineControl | None = None,
    resume: bool = False,
    seed: Sequence[SeriesRecord] = (),
) -> RunSummary:
    """``tomopilot acquire`` with the ``sequential`` strategy: the run's targets as a session of
    one area each, with the configured session cap; one summary for the whole session.
    ``seed``: earlier series to start the predictor from (see :func:`run_session`)."""
    config = resolved.config
    plans = sequential_plans(resolved, engine.plan)
    session = run_session(
        engine.scope,
        plans,
        root=config.output.root,
        events=events,
        resume=resume,
        max_hours=config.sequential.session_hours,
        slit_interval_min=resolved.settings.slit_interval_min,
        control=control,
        seed=seed,
    )
    status = "aborted" if session.stopped == "aborted" else "finished"
    return RunSummary(
        status=status,
        n_exposures=session.n_exposures,
        lost=sum(s.lost for _, s in session.areas),
        microscope_s=session.microscope_s,
    )


def assess_session(
    scope: Microscope, plans: Sequence[RunPlan], resolved: ResolvedRun
) -> RunQuality:
    """The twin's ground-truth judgement of every area of a session, areas numbered 1, 2, …"""
    truth = scope.ground_truth  # type: ignore[attr-defined]
    targets = []
    n_exposures = n_lost = 0
    start = end = None
    for number, plan in enumerate(plans, start=1):
        path = plan.run_dir / f"{plan.root}.journal.jsonl"
        if not path.exists():
            continue
        journal = replay_journal(path)
        if not journal.maps:
            continue
        if journal.run is not None:
            start = float(journal.run["start_s"]) if start is None else start
        if journal.finished is not None:
            end = float(journal.finished.get("time_s", 0.0))
        quality = assess(truth, journal, resolved.config, microscope_s=1.0)
        n_exposures += quality.n_exposures
        n_lost += quality.n_lost
        targets += [replace(t, target=number) for t in quality.targets]
    minutes = ((end or 0.0) - (start or 0.0)) / 60.0
    per_series = minutes / max(1, len(targets))
    return RunQuality(
        targets=[replace(t, minutes=per_series) for t in targets],
        microscope_minutes=minutes,
        n_exposures=n_exposures,
        n_lost=n_lost,
    )
