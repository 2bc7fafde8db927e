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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from tomopilot.acquisition.control import EngineControl
from tomopilot.acquisition.engine import AcquisitionEngine
from tomopilot.acquisition.output.journal import replay_journal
from tomopilot.acquisition.plan.run_config import ResolvedRun
from tomopilot.acquisition.plan.run_plan import RunPlan, RunSummary, area_root
from tomopilot.acquisition.plan.target_defocus import defocus_per_target
from tomopilot.acquisition.plan.tilt_schemes import HalvesInTheirDirection
from tomopilot.acquisition.quality import RunQuality, assess_areas
from tomopilot.acquisition.setup.reach_area import has_saved_view
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


def sequential_plans(resolved: ResolvedRun, plan: RunPlan) -> list[RunPlan]:
    """One plan per target: its own area (target 1's stage position plus its shift), root
    ``<root>_tNNN``, the same settings (but the target's defocus, ``stepDefocus`` cycling
    over the targets as in a parallel run), scheme and folder. Skipped targets get no area.
    With ``approach_from_below`` off, a bidirectional scheme's − half is approached
    downwards, one move per tilt (Leginon)."""
    ax, ay = plan.area_stage_um or (0.0, 0.0)
    options = plan.sequential
    scheme = plan.scheme
    if scheme.kind == "bidirectional" and not options.approach_from_below:
        scheme = HalvesInTheirDirection(**scheme.model_dump())
    levels = defocus_per_target(
        plan.settings, len(resolved.targets), {i for i, t in enumerate(resolved.targets) if t.skip}
    )
    plans = []
    for number, (target, level) in enumerate(zip(resolved.targets, levels, strict=True), start=1):
        if target.skip or level is None:
            continue
        # The area's one target gets the defocus the whole run's cycle gives it (stepDefocus
        # across the targets, as the dry run lists them).
        settings = plan.settings.model_copy(
            update={"max_defocus_um": level, "min_defocus_um": level}
        )
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
                settings=settings,
                targets=[only],
                area_stage_um=(ax + target.ss_x_um, ay + target.ss_y_um),
                root=area_root(plan.root, number),
                area=number,
                geo_points_um=[],
                scheme=scheme,
            )
        )
    return plans


def _history_path(run_dir: Path, root: str) -> Path:
    return run_dir / f"{root}_predictions.json"


def load_history(path: Path) -> SessionHistory:
    """The session's earlier series, or an empty history."""
    return _load_history(path)[0]


def _load_history(path: Path) -> tuple[SessionHistory, list[str | None]]:
    """The session's earlier series and, for each, the area (root) it came from (None for a
    series seeded from elsewhere, an archive say)."""
    if not path.exists():
        return SessionHistory(), []
    data = json.loads(path.read_text(encoding="utf-8"))
    areas = [None if d.get("area") is None else str(d["area"]) for d in data]
    return SessionHistory.from_json(data), areas


def _write_history(path: Path, history: SessionHistory, areas: Sequence[str | None]) -> None:
    """One file holds the series and the areas they came from, so an area's series enters the
    history exactly once, whatever instant a kill lands at."""
    rows = [
        {**record.to_json(), **({} if area is None else {"area": area})}
        for record, area in zip(history.series, areas, strict=True)
    ]
    atomic_write_text(path, json.dumps(rows))


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
    history, series_areas = _load_history(history_path)
    calibration_path = run_dir / f"{root}_defocus_tilt.json"
    calibration = load_calibration(calibration_path)
    if not history.series and seed:
        history, series_areas = SessionHistory(list(seed)), [None] * len(seed)
        _write_history(history_path, history, series_areas)
    recorded = {area for area in series_areas if area is not None}
    legacy = run_dir / f"{root}_predictions_areas.json"  # sessions before the areas were kept
    if legacy.exists():  # in the history file itself
        recorded |= {str(r) for r in json.loads(legacy.read_text(encoding="utf-8"))}
    start_s = scope.clock.now_s()
    last_slit_s = start_s
    stage_offset_um = (0.0, 0.0)  # the stage's creep, measured by the last area's recentring
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
            # An area that realigns to its View starts on its target: the creep is taken out.
            realigns = bool(plan.targets) and has_saved_view(plan.targets[0], plan.run_dir)
            engine.strategy.stage_offset_um = (0.0, 0.0) if realigns else stage_offset_um
        if on_engine is not None:
            on_engine(engine)
        result = engine.run(resume=resume and not fresh)
        summary.areas.append((plan.root, result))
        strategy = engine.strategy
        if isinstance(strategy, SequentialStrategy) and not strategy.targets:
            # The area had finished before a kill (this process did not run it): its last
            # commit's state holds its series and calibration, which a kill right after its
            # end could have kept from the session's files.
            _restore_from_journal(strategy, journal)
        if isinstance(strategy, SequentialStrategy):
            stage_offset_um = strategy.stage_offset_um
        if isinstance(strategy, SequentialStrategy) and calibration is None:
            calibration = strategy.calibration
            if calibration is not None:
                atomic_write_text(calibration_path, json.dumps(sorted(calibration.items())))
        if (
            isinstance(strategy, SequentialStrategy)
            and plan.root not in recorded
            and result.status == "finished"
        ):
            for record in strategy.finished_series():
                history.add_series(record)
                series_areas.append(plan.root)
            recorded.add(plan.root)
            _write_history(history_path, history, series_areas)
        if result.status == "aborted":
            summary.stopped = "aborted"
            break
    summary.microscope_s = scope.clock.now_s() - start_s
    return summary


def _restore_from_journal(strategy: SequentialStrategy, journal: Path) -> None:
    """The strategy as its area's last commit left it (its series, its calibration)."""
    state = replay_journal(journal) if journal.exists() else None
    if state is not None and state.last_commit is not None:
        strategy.restore(state.last_commit["state"], {})


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
    areas = []
    for plan in plans:
        if plan.area is None:
            raise ValueError(f"plan {plan.root} is not an area of a session (no target number)")
        areas.append((plan.area, plan.run_dir / f"{plan.root}.journal.jsonl"))
    return assess_areas(truth, areas, resolved.config)
