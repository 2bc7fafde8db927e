"""The acquisition engine: runs a plan on a microscope with a strategy, and survives crashes.

For every tilt of the scheme the engine tilts the stage (approaching from below so backlash is
taken up the same way each time), then for every live target in order asks the strategy for the
image shift and focus, waits out a dewar fill, records, saves the image to the target's stack and
mdoc, journals the commit with the strategy's state, and lets the strategy learn from the image.
It emits typed events and never prints. ``run(resume=True)`` continues a run from its journal:
files are repaired to the committed exposures, the strategy state is restored, the stage goes
back to the interrupted tilt and target 1 is re-aligned before the next target, as PACEtomo does.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any

from tomopilot.acquisition.branch_ends import dead_branches
from tomopilot.acquisition.control import EngineControl, RunAborted
from tomopilot.acquisition.errors import AcquisitionError
from tomopilot.acquisition.events import (
    BranchAborted,
    RunFinished,
    RunStarted,
    SetupStep,
    TiltReached,
)
from tomopilot.acquisition.exposure_steps import apply_request, record_with_retries
from tomopilot.acquisition.housekeeping_ops import after_round
from tomopilot.acquisition.output.journal import (
    JournalState,
    RunJournal,
    replay_journal,
)
from tomopilot.acquisition.output.pause_hook import pause_hook_from_env
from tomopilot.acquisition.output.resume_run import (
    following_step,
    realign_after_resume,
    restore_strategy,
    start_round_of,
    step_of,
)
from tomopilot.acquisition.output.run_records import RunRecords
from tomopilot.acquisition.plan.run_plan import RunPlan, RunSummary
from tomopilot.acquisition.plan.target_defocus import defocus_per_target
from tomopilot.acquisition.plan.tilt_schemes import TiltStep
from tomopilot.acquisition.record_ctf import record_ctf_um
from tomopilot.acquisition.run_time import RunTime
from tomopilot.acquisition.setup.adjustments import adjust_area
from tomopilot.acquisition.setup.reach_area import (
    AreaSetup,
    prepare_start,
    reach_area,
    take_maps,
)
from tomopilot.acquisition.setup.refine_geo import height_corrections
from tomopilot.acquisition.strategies import make_strategy
from tomopilot.acquisition.strategies.base import (
    BranchEnded,
    ExposureRequest,
    Strategy,
    TargetInfo,
    Toolkit,
)
from tomopilot.acquisition.tilting import shift_before_tilt, tilt_to_step
from tomopilot.acquisition.time_ledger import TimeLedger, ledgered, unwrap
from tomopilot.acquisition.time_levers import levers_for, switch_levers
from tomopilot.core.events import EventBus
from tomopilot.instrument.errors import ImageShiftLimitError, InstrumentError, OperatorStop
from tomopilot.instrument.protocol import Microscope
from tomopilot.instrument.twin import TwinMicroscope
from tomopilot.instrument.types import Image, Movie

_log = logging.getLogger(__name__)


class AcquisitionEngine:
    """Execute a :class:`RunPlan` on a :class:`~tomopilot.instrument.Microscope`."""

    def __init__(
        self,
        scope: Microscope,
        plan: RunPlan,
        *,
        events: EventBus | None = None,
        control: EngineControl | None = None,
    ) -> None:
        self.ledger = TimeLedger()
        #: the microscope itself (a twin's ground truth, a backend's ``close``, type checks)
        self.microscope: Microscope = unwrap(scope)
        #: the same microscope, every command's time booked in :attr:`ledger`
        self.scope = ledgered(scope, self.ledger)
        self.plan = plan
        self.events = events or scope.events
        self.control = control or EngineControl()
        self.toolkit = Toolkit(self.scope, plan.settings, save_frames=plan.save_frames)
        self.strategy: Strategy = make_strategy(plan.strategy, plan.settings, plan.sequential)
        plan.run_dir.mkdir(parents=True, exist_ok=True)
        self.journal_path = plan.run_dir / f"{plan.root}.journal.jsonl"
        on_twin = isinstance(self.microscope, TwinMicroscope)  # a test hook: twin only
        self.journal = RunJournal(self.journal_path, pause_hook_from_env(on_twin, scope.events))
        self.records = RunRecords(plan, self.toolkit, self.journal, self.events, self.strategy)
        self.time = RunTime(scope.clock, self.ledger)
        self.records.checkpoint = self.time.point  # every commit keeps the ledger so far
        self.levers: tuple[str, ...] = ()  # time levers in use (time_levers.py)
        self._last_zlp_s = self.time.start_s
        self.targets = self._target_infos()
        self._start_round: dict[int, tuple[float | None, ExposureRequest]] = {}
        self._frames: Movie | None = None
        self._recovered_at: int | None = None  # the step a resume re-aligned at

    def _target_infos(self) -> list[TargetInfo]:
        plan = self.plan
        levels = defocus_per_target(
            plan.settings, len(plan.targets), {i for i, t in enumerate(plan.targets) if t.skip}
        )
        return [
            TargetInfo(
                index=i + 1,
                ss_um=t.ss_um,
                defocus_um=_or(levels[i], plan.settings.max_defocus_um),
                skip=t.skip,
            )
            for i, t in enumerate(plan.targets)
        ]

    # -- entry point ------------------------------------------------------------------------
    def run(self, *, resume: bool = False) -> RunSummary:
        """Run (or continue) the plan; returns how it ended."""
        state = replay_journal(self.journal_path) if self.journal_path.exists() else None
        if state is not None and state.finished is not None:
            status = str(state.finished.get("status", "finished"))
            if status != "aborted" or not resume:  # an aborted run continues on --resume
                return self._summary(status, state)
        if state is not None and state.run is not None and not resume:
            raise AcquisitionError(
                f"{self.journal_path} holds a previous run; use --resume to continue it"
            )
        if state is not None and state.finished is not None:  # an aborted run, continued
            self.time.continue_from(state.finished.get("time_ledger_s") or {})
        elif state is not None and state.ledger is not None:  # a crashed run, resumed
            self.time.continue_from(state.ledger, since_s=state.ledger_time_s)
        self.levers = switch_levers(self.scope, levers_for(self.plan.strategy, self.plan.settings))
        try:
            if state is not None and state.setup is not None:
                next_step, next_target = self._resume(state)
                done = next_step is None and state.last_commit is not None
                status = "finished" if done else self._loop(next_step, next_target)
            else:
                self._fresh_setup(state)
                status = self._loop(None, 1)
        except (RunAborted, OperatorStop):  # a STOP at the microscope ends it resumably too
            status = "aborted"
        self._finish(status)
        return self._summary(status, replay_journal(self.journal_path))

    # -- set-up -----------------------------------------------------------------------------
    def _fresh_setup(self, previous: JournalState | None) -> None:
        plan, scope, s = self.plan, self.scope, self.plan.settings
        if previous is None or previous.run is None:
            self.journal.write(
                "run",
                strategy=plan.strategy,
                n_targets=len(plan.targets),
                root=plan.root,
                start_s=scope.clock.now_s(),
                **({} if plan.area is None else {"area": plan.area}),
            )
        self._started(resumed=previous is not None)
        realigned = reach_area(
            scope,
            plan.targets,
            plan.area_stage_um,
            plan.run_dir,
            self._setup_event,
            view_tilt_deg=s.tilt_targets_deg,
        )
        for kind, record in adjust_area(scope, plan, self._setup_event).items():
            self.journal.write(kind, **record)
        self.targets = self._target_infos()  # refineVec may have moved them
        setup = take_maps(scope, plan.targets, s, plan.run_dir, plan.root, realigned)
        for number, exposure in setup.map_exposures.items():
            self.journal.write("map", target=number, exposure_id=exposure)
        self._setup_event("maps", f"{len(setup.maps)} target maps")
        # The autofocus's scale: read and taken out for sequential, whose per-tilt focus
        # readings divide by it (pace and fused keep one plain autofocus: not yet measured
        # what it does to them).
        setup = prepare_start(
            scope,
            plan.targets,
            s,
            plan.scheme.start_deg,
            setup,
            self.toolkit,
            calibrate_autofocus=plan.strategy == "sequential",
        )
        self._setup_event("start tilt", f"F0 = {setup.focus0_um:.2f} µm")
        self.toolkit.setup_dose_e_a2 = dict(setup.dose_e_a2)
        self.toolkit.view_maps = dict(setup.views)
        self.strategy.setup(
            self.targets,
            plan.scheme.start_deg,
            setup.focus0_um,
            setup.start_is_um,
            self.toolkit,
            self._map_references(setup),
        )
        self.journal.write(
            "setup",
            state=self.strategy.state(),
            views=self.records.save_held_images(),
            focus0_um=setup.focus0_um,
            start_is_um={str(k): list(v) for k, v in setup.start_is_um.items()},
            **self.time.point(),
        )

    def _started(self, *, resumed: bool) -> None:
        plan = self.plan
        stage = plan.area_stage_um or (None, None)
        self.events.emit(
            RunStarted(
                time_s=self.scope.clock.now_s(),
                run_dir=str(plan.run_dir),
                strategy=plan.strategy,
                n_targets=len(plan.targets),
                n_tilts=plan.scheme.n_tilts,
                resumed=resumed,
                area=plan.root,
                area_stage_x_um=stage[0],
                area_stage_y_um=stage[1],
                targets_ss_um=tuple(t.ss_um for t in plan.targets),
            )
        )

    def _map_references(self, setup: AreaSetup) -> dict[str, Image]:
        return {f"map:{k}": v for k, v in setup.maps.items()}

    def _setup_event(self, step: str, detail: str) -> None:
        _log.info("set-up: %s (%s)", step, detail)
        self.events.emit(SetupStep(time_s=self.scope.clock.now_s(), step=step, detail=detail))

    # -- the tilt loop ----------------------------------------------------------------------
    def _loop(self, resume_step: TiltStep | None, next_target: int) -> str:
        plan = self.plan
        ended = set(replay_journal(self.journal_path).ended_branches)
        controller = plan.scheme.controller(
            resume_after=None if resume_step is None else resume_step.index - 1,
            ended_branches=ended,  # type: ignore[arg-type]
        )
        n_steps = plan.scheme.n_tilts
        first = True
        while (step := controller.next_step()) is not None:
            self.control.checkpoint()
            if not (first and step.index == self._recovered_at):  # the resume tilted there
                shift_before_tilt(self.scope, self.strategy, step, self.levers)
                self._tilt(step, recovering=False)
            self.events.emit(
                TiltReached(
                    time_s=self.scope.clock.now_s(),
                    tilt_deg=step.tilt_deg,
                    step_index=step.index,
                    n_steps=n_steps,
                    branch=step.branch,
                )
            )
            start_target = next_target if first else 1
            first = False
            for info in self.targets[start_target - 1 :]:
                self.control.checkpoint()
                self._expose_target(info, step, n_steps)
            if step.branch == "start" and plan.settings.refine_geometry:
                self._refine_heights(step)
            self._end_dead_branches(controller, step)
            self._housekeeping_after_round()
        return "finished"

    def _tilt(self, step: TiltStep, *, recovering: bool) -> None:
        tilt_to_step(self.scope, step, self.plan.settings, self.levers, recovering=recovering)

    def _expose_target(self, info: TargetInfo, step: TiltStep, n_steps: int) -> None:
        target = info.index
        if info.skip or target in self.control.skipped_targets():
            return
        if not self.strategy.alive(target, step.branch):
            return
        try:
            request = self.strategy.prepare(target, step)
        except BranchEnded as exc:  # e.g. the next exposure would pass a dose cap
            self._abort_branch(target, step, exc.reason)
            return
        try:
            self._apply(request)
        except ImageShiftLimitError as exc:
            self._abort_branch(target, step, f"image shift limit: {exc}")
            return
        image = self._record(target, step, request)
        if image is None:
            return
        outcome = self.strategy.observe(target, step, image, request)
        if outcome.retake is not None:  # the strategy took the Record again (trackTwice)
            image = outcome.retake
            self._replaced_movie(target, step)
            self._frames = outcome.retake_movie  # its own movie when the run saves frames
            if outcome.specimen_shift_um is not None:
                request = replace(request, image_shift_um=outcome.specimen_shift_um)
        ctf = record_ctf_um(image, request, outcome, self.plan.settings)
        if step.branch == "start" and self.plan.settings.refine_geometry:
            self._start_round[target] = (ctf, request)
        section = self.records.save(target, step, image, request, outcome, ctf, self._frames)
        self.events.emit(
            self.records.recorded_event(
                self.scope.clock.now_s(),
                target,
                step,
                n_steps,
                section,
                image,
                request,
                outcome,
                ctf,
            )
        )
        if outcome.aborted:
            self._branch_event(target, step, outcome.aborted)

    def _replaced_movie(self, target: int, step: TiltStep) -> None:
        """Name the movie of a Record a retake replaced: it is not in the series."""
        replaced = self._frames
        if replaced is not None and replaced.source_path is not None:
            _log.info(
                "target %d at %g°: the retaken Record's frames stay outside the series at %s",
                target,
                step.tilt_deg,
                replaced.source_path,
            )

    def _apply(self, request: ExposureRequest) -> None:
        apply_request(self.scope, request, self.plan.settings, self.levers)

    def _record(self, target: int, step: TiltStep, request: ExposureRequest) -> Image | None:
        self.journal.write("started", target=target, step_index=step.index, tilt_deg=step.tilt_deg)
        taken = record_with_retries(
            self.toolkit,
            request,
            save_frames=self.plan.save_frames,
            what=f"target {target} at {step.tilt_deg:g}°",
            lost=lambda reason: self._lost(target, step, reason),
        )
        if taken is None:
            return None
        image, self._frames = taken
        return image

    def _lost(self, target: int, step: TiltStep, reason: str) -> None:
        self.records.lost(target, step, reason, self.scope.clock.now_s())

    def _refine_heights(self, step: TiltStep) -> None:
        """refineGeo after the start round (see :mod:`~tomopilot.acquisition.setup.refine_geo`)."""
        corrections, account = height_corrections(
            self._start_round, self.targets, self.plan.settings, step.tilt_deg
        )
        self._start_round.clear()
        if corrections is not None:
            self.strategy.correct_heights(corrections)
            self.journal.write(
                "heights", corrections_um={str(k): v for k, v in corrections.items()}
            )
        self._setup_event("refine geometry", account)

    def _abort_branch(self, target: int, step: TiltStep, reason: str) -> None:
        self.strategy.abort(target, step.branch, reason)
        self._branch_event(target, step, reason)

    def _branch_event(self, target: int, step: TiltStep, reason: str) -> None:
        _log.info(
            "target %d: branch %s ends at %g° (%s)", target, step.branch, step.tilt_deg, reason
        )
        self.events.emit(
            BranchAborted(
                time_s=self.scope.clock.now_s(),
                target=target,
                branch=step.branch,
                tilt_deg=step.tilt_deg,
                reason=reason,
                area=self.plan.root,
            )
        )

    def _end_dead_branches(self, controller: Any, step: TiltStep) -> None:
        for branch in dead_branches(controller, self.targets, self.strategy, self.plan.strategy):
            controller.end_branch(branch)
            self.journal.write("ended", branch=branch, tilt_deg=step.tilt_deg)

    def _housekeeping_after_round(self) -> None:
        self._last_zlp_s = after_round(self.scope, self.plan.settings, self._last_zlp_s)

    # -- resume -----------------------------------------------------------------------------
    def _resume(self, state: JournalState) -> tuple[TiltStep | None, int]:
        plan = self.plan
        self.journal.write("resumed", time_s=self.scope.clock.now_s(), in_flight=state.in_flight)
        if state.in_flight is not None:
            lost = state.in_flight
            self._lost(
                int(lost["target"]),
                step_of(plan.scheme, int(lost["step_index"])),
                "in flight when the run stopped",
            )
        self._started(resumed=True)
        self.records.restore(state)
        restore_strategy(self.strategy, state, plan, self.toolkit, self.scope)
        self.targets = self._target_infos()  # refineVec may have moved them
        if state.last_commit is None:
            return None, 1
        last_step = step_of(plan.scheme, int(state.last_commit["step_index"]))
        last_target = int(state.last_commit["target"])
        if plan.settings.refine_geometry and not state.heights_done:
            self._start_round = start_round_of(state)
            if last_step.branch == "start" and last_target >= len(self.targets):
                self._refine_heights(last_step)  # the run stopped between the round and refineGeo
        self._recover(last_step, state)
        if last_target >= len(self.targets):
            following = following_step(plan.scheme, last_step.index, state.ended_branches)
            return following, 1
        return last_step, last_target + 1

    def _recover(self, step: TiltStep, state: JournalState) -> None:
        """Back to the last tilt with a commit; a Preview aligned to the Record taken there.

        The stage is tilted back (approaching from below, as PACEtomo does) only when it is not
        at that tilt any more: after a crash of the software alone the microscope kept its
        state, and a needless tilt would only add a settling error.
        """
        if not math.isclose(self.scope.stage.position().tilt_deg, step.tilt_deg, abs_tol=0.05):
            self._tilt(step, recovering=True)
        self._recovered_at = step.index
        realign_after_resume(self.scope, self.toolkit, self.strategy, self.plan, step, state)

    # -- the end ----------------------------------------------------------------------------
    def _finish(self, status: str) -> None:
        if status == "finished":
            self.records.finish_series()
        minutes = self.time.session_s() / 60.0
        self.journal.write(
            "finished", status=status, time_s=self.scope.clock.now_s(), **self.time.close()
        )
        self.events.emit(
            RunFinished(
                time_s=self.scope.clock.now_s(),
                status=status,
                n_exposures=self.records.n_exposures,
                microscope_minutes=minutes,
                lost_exposures=self.records.n_lost,
            )
        )

    def _summary(self, status: str, state: JournalState) -> RunSummary:
        finished = state.finished or {}
        return RunSummary(
            status=status,
            n_exposures=len(state.committed),
            lost=len(state.lost),
            microscope_s=self.time.session_s(),
            sections=dict(state.sections),
            time_by_activity_s=dict(finished.get("time_ledger_s") or {}),
        )


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


__all__ = ["AcquisitionEngine", "AcquisitionError", "InstrumentError", "RunPlan", "RunSummary"]
