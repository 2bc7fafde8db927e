"""What a run has put on record: its tilt-series files, the journal's commits and losses.

:class:`RunRecords` owns the side of the engine that writes: each target's stack and mdoc
(opened at its first exposure), the dose each target has had, the count of exposures taken and
lost, and the strategy's held images (fused's Views) saved as reference files. Each saved
exposure is made durable in its files first and committed to the journal after, so a crash
between the two leaves an exposure the resume truncates away rather than one it believes in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tomopilot.acquisition.events import ExposureLost, ExposureRecorded
from tomopilot.acquisition.output.journal import JournalState, RunJournal
from tomopilot.acquisition.output.record_output import (
    camera_rotation_deg,
    open_series,
    record_section,
)
from tomopilot.acquisition.output.resume_run import reopen_series_files
from tomopilot.acquisition.output.saved_images import save_held_images
from tomopilot.acquisition.output.tilt_series_files import TiltSeriesFiles
from tomopilot.acquisition.plan.run_plan import RunPlan
from tomopilot.acquisition.plan.tilt_schemes import TiltStep
from tomopilot.acquisition.strategies.base import (
    ExposureRequest,
    HoldsImages,
    Outcome,
    Strategy,
    Toolkit,
)
from tomopilot.core.events import EventBus
from tomopilot.instrument.types import Image, Movie


class RunRecords:
    """The files and journal entries of one run (see the module docstring)."""

    def __init__(
        self,
        plan: RunPlan,
        toolkit: Toolkit,
        journal: RunJournal,
        events: EventBus,
        strategy: Strategy,
    ) -> None:
        self.plan = plan
        self.toolkit = toolkit
        self.journal = journal
        self.events = events
        self.strategy = strategy
        self.files: dict[int, TiltSeriesFiles] = {}
        self.prior_dose: dict[int, float] = {}
        self.n_exposures = 0
        self.n_lost = 0
        self.held: dict[str, dict[str, Any]] = {}  # files of the strategy's held images
        #: extra fields for every commit record (the engine's time ledger so far)
        self.checkpoint: Callable[[], dict[str, Any]] = dict

    def restore(self, state: JournalState) -> None:
        """Continue from a journal: files repaired to its commits, counts and doses as they were."""
        self.files = reopen_series_files(self.plan, state)
        self.prior_dose = dict(state.prior_dose)
        self.held = dict(state.views)
        self.n_exposures = len(state.committed)
        self.n_lost = len(state.lost) + (1 if state.in_flight else 0)

    def lost(self, target: int, step: TiltStep, reason: str, time_s: float) -> None:
        """Book an exposure that was not taken (journal and event)."""
        self.n_lost += 1
        self.journal.write(
            "lost", target=target, step_index=step.index, tilt_deg=step.tilt_deg, reason=reason
        )
        self.events.emit(
            ExposureLost(time_s=time_s, target=target, tilt_deg=step.tilt_deg, reason=reason)
        )

    def save(
        self,
        target: int,
        step: TiltStep,
        image: Image,
        request: ExposureRequest,
        outcome: Outcome,
        ctf_um: float | None,
        movie: Movie | None,
    ) -> int:
        """Write one exposure (movie, stack section, mdoc section), then commit it; its section."""
        plan = self.plan
        if target not in self.files:
            stem = plan.ts_stem(target)
            self.files[target] = open_series(
                plan.run_dir, stem, image, self.toolkit, plan.frame_suffix
            )
        section = record_section(
            image,
            request,
            outcome,
            ctf_um,
            settings=plan.settings,
            prior_dose_e_a2=self.prior_dose.get(target, 0.0),
            rotation_deg=camera_rotation_deg(self.toolkit, image),
            label=f"{plan.root} target {target:03d}",
        )
        index = self.files[target].append(
            image.data,
            section,
            None if movie is None else movie.frames,
            frame_seed=image.exposure_id,
            frames_file=None if movie is None else movie.source_path,
        )
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
            image_shift_um=list(request.image_shift_um),
            focus_um=request.focus_um,
            target_defocus_um=request.target_defocus_um,
            ctf_um=ctf_um,
            prior_dose={str(k): v for k, v in self.prior_dose.items()},
            state=self.strategy.state(),
            views=self.save_held_images(),
            **self.checkpoint(),
        )
        return index

    def save_held_images(self) -> dict[str, dict[str, Any]]:
        """Save the strategy's new held images (fused's Views); the table the journal keeps."""
        if isinstance(self.strategy, HoldsImages):
            images = self.strategy.held_images()
            self.held = save_held_images(images, self.held, self.plan.run_dir, self.plan.root)
        return self.held

    def recorded_event(
        self,
        time_s: float,
        target: int,
        step: TiltStep,
        n_steps: int,
        section: int,
        image: Image,
        request: ExposureRequest,
        outcome: Outcome,
        ctf_um: float | None,
    ) -> ExposureRecorded:
        """The event of a saved exposure, for monitors and the archive."""
        return ExposureRecorded(
            time_s=time_s,
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
            branch=step.branch,
            stage_x_um=image.stage.x_um,
            stage_y_um=image.stage.y_um,
            stage_z_um=image.stage.z_um,
            target_defocus_um=request.target_defocus_um,
            predicted_dz_um=request.predicted_dz_um,
            measured_defocus_um=ctf_um,
            prior_dose_e_a2=self.prior_dose.get(target, 0.0) - image.dose_e_a2,
            exposure_s=image.exposure_s,
            pixel_size_a=image.pixel_size_a,
            stack=self.files[target].stack_path.name,
            area=self.plan.root,
        )

    def finish_series(self) -> None:
        """Close every series, sorted by tilt if the settings ask (PACEtomo's sortByTilt)."""
        for files in self.files.values():
            files.finish(sort_by_tilt=self.plan.settings.sort_by_tilt)
