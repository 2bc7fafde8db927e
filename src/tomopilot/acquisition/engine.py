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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tomopilot.acquisition.area_adjustments import adjust_area, reapply_adjustments
from tomopilot.acquisition.control import EngineControl, RunAborted
from tomopilot.acquisition.errors import AcquisitionError
from tomopilot.acquisition.events import (
    BranchAborted,
    ExposureLost,
    ExposureRecorded,
    RunFinished,
    RunStarted,
    SetupStep,
    TiltReached,
)
from tomopilot.acquisition.journal import (
    JournalState,
    RunJournal,
    replay_journal,
)
from tomopilot.acquisition.record_ctf import record_defocus_um
from tomopilot.acquisition.refine_heights import height_corrections
from tomopilot.acquisition.resume_run import (
    following_step,
    realign_after_resume,
    reopen_series_files,
    step_of,
)
from tomopilot.acquisition.saved_images import reference_images, ts_stem
from tomopilot.acquisition.settings import AcquisitionSettings
from tomopilot.acquisition.setup_area import (
    AreaSetup,
    prepare_start,
    reach_area,
    take_maps,
)
from tomopilot.acquisition.strategies import make_strategy
from tomopilot.acquisition.strategy import (
    ExposureRequest,
    Outcome,
    Strategy,
    TargetInfo,
    Toolkit,
)
from tomopilot.acquisition.target_defocus import defocus_per_target
from tomopilot.acquisition.tilt_schemes import TiltScheme, TiltStep
from tomopilot.acquisition.tilt_series_files import TiltSeriesFiles, section_from_image
from tomopilot.core.events import EventBus
from tomopilot.instrument.errors import (
    CameraTimeoutError,
    ImageShiftLimitError,
    InstrumentError,
    NoBeamError,
)
from tomopilot.instrument.protocol import Microscope
from tomopilot.instrument.types import Image, LowDoseArea
from tomopilot.targeting.targets import Target

_log = logging.getLogger(__name__)

CAMERA_RETRIES = 2
DEWAR_MARGIN_S = 15.0  # start a fill early if it is due within this (SerialEM can)


@dataclass
class RunPlan:
    """Everything a run needs that is not the microscope."""

    settings: AcquisitionSettings
    targets: list[Target]
    scheme: TiltScheme
    area_stage_um: tuple[float, float] | None
    strategy: str
    run_dir: Path
    root: str
    save_frames: bool = False
    frame_suffix: str = ".tif"
    geo_points_um: list[tuple[float, float]] = field(default_factory=list)

    def ts_stem(self, target: int) -> str:
        """Tilt-series file stem of a target (1-based)."""
        return ts_stem(self.root, target)


@dataclass
class RunSummary:
    """How a run ended."""

    status: str
    n_exposures: int
    lost: int
    microscope_s: float
    sections: dict[int, int] = field(default_factory=dict)


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
        self.scope = scope
        self.plan = plan
        self.events = events or scope.events
        self.control = control or EngineControl()
        self.toolkit = Toolkit(scope, plan.settings)
        self.strategy: Strategy = make_strategy(plan.strategy, plan.settings)
        plan.run_dir.mkdir(parents=True, exist_ok=True)
        self.journal_path = plan.run_dir / f"{plan.root}.journal.jsonl"
        self.journal = RunJournal(self.journal_path)
        self.files: dict[int, TiltSeriesFiles] = {}
        self.prior_dose: dict[int, float] = {}
        self.n_exposures = 0
        self.n_lost = 0
        self._start_s = scope.clock.now_s()
        self.targets = self._target_infos()
        self._start_round: dict[int, tuple[Image, ExposureRequest]] = {}
        self._frames: NDArray[np.float32] | None = None

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
        try:
            if state is not None and state.setup is not None:
                next_step, next_target = self._resume(state)
                done = next_step is None and state.last_commit is not None
                status = "finished" if done else self._loop(next_step, next_target)
            else:
                self._fresh_setup(state)
                status = self._loop(None, 1)
        except RunAborted:
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
            )
        self.events.emit(
            RunStarted(
                time_s=scope.clock.now_s(),
                run_dir=str(plan.run_dir),
                strategy=plan.strategy,
                n_targets=len(plan.targets),
                n_tilts=plan.scheme.n_tilts,
                resumed=previous is not None,
            )
        )
        reach_area(scope, plan.targets, plan.area_stage_um, plan.run_dir, self._setup_event)
        for kind, record in adjust_area(scope, plan, self._setup_event).items():
            self.journal.write(kind, **record)
        self.targets = self._target_infos()  # refineVec may have moved them
        setup = take_maps(scope, plan.targets, s, plan.run_dir, plan.root)
        for number, exposure in setup.map_exposures.items():
            self.journal.write("map", target=number, exposure_id=exposure)
        self._setup_event("maps", f"{len(setup.maps)} target maps")
        setup = prepare_start(scope, plan.targets, s, plan.scheme.start_deg, setup, self.toolkit)
        self._setup_event("start tilt", f"F0 = {setup.focus0_um:.2f} µm")
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
            focus0_um=setup.focus0_um,
            start_is_um={str(k): list(v) for k, v in setup.start_is_um.items()},
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
            self._tilt(step, recovering=first and resume_step is not None)
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
        scope, s = self.scope, self.plan.settings
        at_start = math.isclose(scope.stage.position().tilt_deg, step.tilt_deg, abs_tol=1e-3)
        if step.branch == "start" and not recovering and at_start:
            return  # the set-up approached the start tilt already
        if step.approach_deg is not None or recovering:
            approach = (
                step.approach_deg if step.approach_deg is not None else step.tilt_deg - s.step_deg
            )
            limit = scope.stage.limits.tilt_deg
            scope.stage.tilt_to(max(-limit, min(limit, approach)))
        scope.stage.tilt_to(step.tilt_deg)
        if s.delay_tilt_s > 0:
            scope.clock.sleep(s.delay_tilt_s)

    def _expose_target(self, info: TargetInfo, step: TiltStep, n_steps: int) -> None:
        target = info.index
        if info.skip or target in self.control.skipped_targets():
            return
        if not self.strategy.alive(target, step.branch):
            return
        request = self.strategy.prepare(target, step)
        try:
            self._apply(request)
        except ImageShiftLimitError as exc:
            self._abort_branch(target, step, f"image shift limit: {exc}")
            return
        image = self._record(target, step, request)
        if image is None:
            return
        outcome = self.strategy.observe(target, step, image, request)
        if step.branch == "start" and self.plan.settings.refine_geometry:
            self._start_round[target] = (outcome.retake or image, request)
        if outcome.retake is not None:  # the strategy took the Record again (trackTwice)
            image = outcome.retake
            self._frames = None  # the retake is a plain Record: no frames are saved for it
            if outcome.specimen_shift_um is not None:
                request = replace(request, image_shift_um=outcome.specimen_shift_um)
        section = self._save(target, step, image, request, outcome)
        self.events.emit(
            ExposureRecorded(
                time_s=self.scope.clock.now_s(),
                target=target,
                tilt_deg=step.tilt_deg,
                section=section,
                image_shift_x_um=request.image_shift_um[0],
                image_shift_y_um=request.image_shift_um[1],
                focus_um=request.focus_um,
                alignment_x_um=outcome.alignment_um[0],
                alignment_y_um=outcome.alignment_um[1],
                mean_counts=image.mean_counts,
                dose_e_a2=image.dose_e_a2,
                exposure_id=image.exposure_id,
                step_index=step.index,
                n_steps=n_steps,
            )
        )
        if outcome.aborted:
            self._branch_event(target, step, outcome.aborted)

    def _apply(self, request: ExposureRequest) -> None:
        scope, s = self.scope, self.plan.settings
        if s.check_dewar:
            status = scope.housekeeping.dewar_status()
            if status.filling:
                waited = scope.housekeeping.wait_for_dewar()
                _log.info("waited %.0f s for a dewar fill", waited)
            elif status.seconds_until_next_fill < DEWAR_MARGIN_S:
                # A fill would start during the exposure: start it now and wait it out.
                scope.housekeeping.refill_dewar()
                _log.info("started a dewar fill early to protect the exposure")
        scope.optics.set_image_shift_um(*request.image_shift_um)
        scope.optics.set_focus_um(request.focus_um)
        if s.delay_is_s > 0:
            scope.clock.sleep(s.delay_is_s)

    def _record(self, target: int, step: TiltStep, request: ExposureRequest) -> Image | None:
        self.journal.write("started", target=target, step_index=step.index, tilt_deg=step.tilt_deg)
        failures = 0
        while True:
            try:
                if self.plan.save_frames:
                    with self.toolkit.conditions(
                        LowDoseArea.RECORD,
                        exposure_s=request.exposure_s,
                        magnification=request.magnification,
                    ):
                        movie = self.scope.camera.acquire_movie(LowDoseArea.RECORD)
                    self._frames = movie.frames
                    return movie.image
                self._frames = None
                return self.toolkit.record(request.exposure_s, magnification=request.magnification)
            except (CameraTimeoutError, NoBeamError) as exc:
                failures += 1
                _log.warning(
                    "target %d at %g°: %s (attempt %d)", target, step.tilt_deg, exc, failures
                )
                if failures > CAMERA_RETRIES:
                    self._lost(target, step, str(exc))
                    return None

    def _lost(self, target: int, step: TiltStep, reason: str) -> None:
        self.n_lost += 1
        self.journal.write(
            "lost", target=target, step_index=step.index, tilt_deg=step.tilt_deg, reason=reason
        )
        self.events.emit(
            ExposureLost(
                time_s=self.scope.clock.now_s(),
                target=target,
                tilt_deg=step.tilt_deg,
                reason=reason,
            )
        )

    def _files(self, target: int, image: Image) -> TiltSeriesFiles:
        if target not in self.files:
            matrix = self.toolkit.camera_matrix(image)
            rotation = math.degrees(math.atan2(matrix[1, 0], matrix[0, 0]))
            self.files[target] = TiltSeriesFiles(
                self.plan.run_dir,
                self.plan.ts_stem(target),
                pixel_size_a=image.pixel_size_a,
                shape_yx=(int(image.data.shape[0]), int(image.data.shape[1])),
                dtype=np.float32,
                voltage_kv=300.0,
                tilt_axis_deg=rotation - 90.0,
                binning=image.binning,
                created=image.datetime,
                frame_suffix=self.plan.frame_suffix,
            )
        return self.files[target]

    def _save(
        self,
        target: int,
        step: TiltStep,
        image: Image,
        request: ExposureRequest,
        outcome: Outcome,
    ) -> int:
        files = self._files(target, image)
        matrix = self.toolkit.camera_matrix(image)
        rotation = math.degrees(math.atan2(matrix[1, 0], matrix[0, 0]))
        s = self.plan.settings
        extended = s.extended_mdoc
        ctf = outcome.ctf_defocus_um
        if ctf is None and (s.do_ctffind or s.do_ctfplotter):  # every Record's CTF, as PACEtomo
            ctf = record_defocus_um(image, request.focus_um)
        plotter = s.do_ctfplotter  # the key PACEtomo writes names the program it ran
        section = section_from_image(
            image,
            target_defocus_um=request.target_defocus_um,
            prior_record_dose_e_a2=self.prior_dose.get(target, 0.0),
            rotation_angle_deg=rotation,
            navigator_label=f"{self.plan.root} target {target:03d}",
            specimen_shift_um=outcome.specimen_shift_um if extended else None,
            eucentric_offset_um=outcome.eucentric_offset_um if extended else None,
            ctf_find_um=ctf if extended and not plotter else None,
            ctfplotter_um=ctf if extended and plotter else None,
        )
        index = files.append(image.data, section, self._frames, frame_seed=image.exposure_id)
        self.prior_dose[target] = self.prior_dose.get(target, 0.0) + image.dose_e_a2
        self.n_exposures += 1
        self.journal.write(
            "committed",
            target=target,
            step_index=step.index,
            tilt_deg=step.tilt_deg,
            branch=step.branch,
            section=index,
            exposure_id=image.exposure_id,
            prior_dose={str(k): v for k, v in self.prior_dose.items()},
            state=self.strategy.state(),
        )
        return index

    def _refine_heights(self, step: TiltStep) -> None:
        """refineGeo after the start round (see :mod:`~tomopilot.acquisition.refine_heights`)."""
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
            )
        )

    def _end_dead_branches(self, controller: Any, step: TiltStep) -> None:
        """A branch ends once no target (target 1's quirk aside) is alive on it."""
        for branch in ("+", "-"):
            if not controller.is_alive(branch):
                continue
            alive = [
                t.index for t in self.targets if not t.skip and self.strategy.alive(t.index, branch)
            ]
            alive = [i for i in alive if i != 1 or self.plan.strategy != "pace" or len(alive) == 1]
            if not alive or (alive == [1] and self._target1_flagged(branch)):
                controller.end_branch(branch)
                self.journal.write("ended", branch=branch, tilt_deg=step.tilt_deg)

    def _target1_flagged(self, branch: str) -> bool:
        state = self.strategy.state().get("targets", {}).get("1", {})
        key = {"+": "plus", "-": "minus"}[branch]
        data = state.get(key) if isinstance(state, dict) else None
        return bool(data and data.get("skip"))

    def _housekeeping_after_round(self) -> None:
        scope, s = self.scope, self.plan.settings
        if s.cold_feg and scope.housekeeping.flash_advised():
            scope.housekeeping.flash_feg()
        if s.slit_interval_min > 0:
            last = getattr(self, "_last_zlp_s", self._start_s)
            if scope.clock.now_s() - last >= s.slit_interval_min * 60:
                scope.housekeeping.refine_zlp()
                self._last_zlp_s = scope.clock.now_s()

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
        self.events.emit(
            RunStarted(
                time_s=self.scope.clock.now_s(),
                run_dir=str(plan.run_dir),
                strategy=plan.strategy,
                n_targets=len(plan.targets),
                n_tilts=plan.scheme.n_tilts,
                resumed=True,
            )
        )
        self.files = reopen_series_files(plan, state)
        self.prior_dose = dict(state.prior_dose)
        self.n_exposures = len(state.committed)
        self.n_lost = len(state.lost) + (1 if state.in_flight else 0)
        reapply_adjustments(plan, state.pattern, state.geometry)  # measured, not configured
        self.targets = self._target_infos()
        source = state.last_commit or state.setup
        assert source is not None
        strategy_state = source["state"]
        self.strategy.restore(strategy_state, {}, self.toolkit)
        self.strategy.restore(strategy_state, self._load_references(state), self.toolkit)
        if state.heights_pending is not None:  # refineGeo ran after the last commit
            corrections = state.heights_pending["corrections_um"]
            self.strategy.correct_heights({int(k): float(v) for k, v in corrections.items()})
        if state.last_commit is None:
            return None, 1
        last_step = step_of(plan.scheme, int(state.last_commit["step_index"]))
        last_target = int(state.last_commit["target"])
        self._recover(last_step, state)
        if last_target >= len(self.targets):
            following = following_step(plan.scheme, last_step.index, state.ended_branches)
            return following, 1
        return last_step, last_target + 1

    def _load_references(self, state: JournalState) -> dict[str, Image]:
        """Reload the reference images named in the strategy state from the files."""
        return reference_images(
            self.strategy.reference_keys(), state, self.plan.run_dir, self.plan.root, self.scope
        )

    def _recover(self, step: TiltStep, state: JournalState) -> None:
        """Back to the interrupted tilt; a Preview of target 1 aligned to its last Record."""
        self._tilt(step, recovering=True)
        realign_after_resume(self.scope, self.toolkit, self.strategy, self.plan, step, state)

    # -- the end ----------------------------------------------------------------------------
    def _finish(self, status: str) -> None:
        if status == "finished":
            for files in self.files.values():
                files.finish(sort_by_tilt=self.plan.settings.sort_by_tilt)
        minutes = (self.scope.clock.now_s() - self._start_s) / 60.0
        self.journal.write("finished", status=status, time_s=self.scope.clock.now_s())
        self.events.emit(
            RunFinished(
                time_s=self.scope.clock.now_s(),
                status=status,
                n_exposures=self.n_exposures,
                microscope_minutes=minutes,
                lost_exposures=self.n_lost,
            )
        )

    def _summary(self, status: str, state: JournalState) -> RunSummary:
        return RunSummary(
            status=status,
            n_exposures=len(state.committed),
            lost=len(state.lost),
            microscope_s=self.scope.clock.now_s() - self._start_s,
            sections=dict(state.sections),
        )


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


__all__ = ["AcquisitionEngine", "AcquisitionError", "InstrumentError", "RunPlan", "RunSummary"]
