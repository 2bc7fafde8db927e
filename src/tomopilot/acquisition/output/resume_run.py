"""Resuming a run from its journal: where it stopped, its files, and re-finding target 1.

The engine replays the journal (:func:`~tomopilot.acquisition.output.journal.replay_journal`); these
helpers turn that state into the step to continue from, reopen the tilt-series files to their
committed sections, and, as PACEtomo does, re-align target 1 with a Preview against its last
Record before the first new exposure.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from tomopilot.acquisition.errors import AcquisitionError
from tomopilot.acquisition.output.journal import JournalState
from tomopilot.acquisition.output.saved_images import image_from_file, reference_images
from tomopilot.acquisition.output.tilt_series_files import TiltSeriesFiles
from tomopilot.acquisition.plan.run_plan import RunPlan
from tomopilot.acquisition.plan.tilt_schemes import TiltScheme, TiltStep
from tomopilot.acquisition.setup.adjustments import reapply_adjustments
from tomopilot.acquisition.strategies.base import ExposureRequest, Strategy, Toolkit
from tomopilot.core.errors import TomopilotError
from tomopilot.instrument.protocol import Microscope
from tomopilot.instrument.types import LowDoseArea

_log = logging.getLogger(__name__)

# A Preview after a resume that finds the reference further than this is not believed (a
# correlation that locked onto something else); the strategy tracks on from its own state.
RECOVERY_LIMIT_UM = 2.0


def step_of(scheme: TiltScheme, index: int) -> TiltStep:
    """The step of the scheme with this index (as the journal names it)."""
    for step in scheme.steps():
        if step.index == index:
            return step
    raise AcquisitionError(f"the journal names step {index}, which the tilt scheme does not have")


def following_step(scheme: TiltScheme, index: int, ended: set[str]) -> TiltStep | None:
    """The first step after ``index`` on a branch that has not ended; None at the end."""
    for step in scheme.steps():
        if step.index > index and step.branch not in ended:
            return step
    return None


def reopen_series_files(plan: RunPlan, state: JournalState) -> dict[int, TiltSeriesFiles]:
    """Each target's tilt-series files, cut back to the sections the journal committed."""
    files: dict[int, TiltSeriesFiles] = {}
    for number in range(1, len(plan.targets) + 1):
        stem = plan.ts_stem(number)
        committed = state.sections.get(number, 0)
        if committed or (plan.run_dir / f"{stem}.mrc").exists():
            try:
                files[number] = TiltSeriesFiles.open_existing(
                    plan.run_dir, stem, n_committed=committed, frame_suffix=plan.frame_suffix
                )
            except (TomopilotError, OSError):
                if committed:
                    raise
    return files


def realign_after_resume(
    scope: Microscope,
    toolkit: Toolkit,
    strategy: Strategy,
    plan: RunPlan,
    step: TiltStep,
    state: JournalState,
) -> None:
    """At the interrupted tilt: a Preview aligned to the last Record taken there, the shift
    handed to the strategy.

    The reference is the Record of the first target committed at this step (target 1 unless
    its branch ended); the Preview is taken at the image shift and focus that Record was taken
    at, so what the alignment finds is what moved while the run was down (drift, a stage that
    settled), not where the strategy would put the next target.
    """
    commit = reference_commit(state, step)
    if commit is None or commit.get("image_shift_um") is None:
        return
    target = int(commit["target"])
    path = plan.run_dir / f"{plan.ts_stem(target)}.mrc"
    reference = image_from_file(path, int(commit["section"]), LowDoseArea.RECORD, scope)
    if reference is None:
        return
    shift_x, shift_y = (float(v) for v in commit["image_shift_um"])
    scope.optics.set_image_shift_um(shift_x, shift_y)
    if commit.get("focus_um") is not None:  # the same focus: a change of defocus moves features
        scope.optics.set_focus_um(float(commit["focus_um"]))
    preview = scope.camera.acquire(LowDoseArea.PREVIEW)
    found = toolkit.shift_um(reference, preview)
    if found is not None and math.hypot(*found[0]) < RECOVERY_LIMIT_UM:
        shift = (float(found[0][0]), float(found[0][1]))
        _log.info(
            "resume: target %d re-found %.3f, %.3f µm from its Record at %g°",
            int(commit["target"]),
            *shift,
            step.tilt_deg,
        )
        strategy.recover(step, shift)


def reference_commit(state: JournalState, step: TiltStep) -> dict[str, Any] | None:
    """The commit a resumed run re-aligns to: the lowest-numbered target committed at
    ``step`` (None when none was)."""
    here = [c for c in state.committed if int(c["step_index"]) == step.index]
    return min(here, key=lambda c: int(c["target"])) if here else None


def start_round_of(state: JournalState) -> dict[int, tuple[float | None, ExposureRequest]]:
    """refineGeo's input from the journal: each start Record's fitted defocus and request."""
    out: dict[int, tuple[float | None, ExposureRequest]] = {}
    for commit in state.committed:
        if commit.get("branch") != "start" or commit.get("target_defocus_um") is None:
            continue
        shift_x, shift_y = (float(v) for v in commit["image_shift_um"])
        request = ExposureRequest(
            image_shift_um=(shift_x, shift_y),
            focus_um=float(commit["focus_um"]),
            target_defocus_um=float(commit["target_defocus_um"]),
        )
        ctf = commit.get("ctf_um")
        out[int(commit["target"])] = (None if ctf is None else float(ctf), request)
    return out


def restore_strategy(
    strategy: Strategy, state: JournalState, plan: RunPlan, toolkit: Toolkit, scope: Microscope
) -> None:
    """The strategy as the last commit left it, with what the set-up measured.

    refineVec's and measureGeo's results go back into ``plan``; the strategy's state is restored
    with the reference images it names, reloaded from the files; a refineGeo correction journalled
    after the last commit is applied again.
    """
    reapply_adjustments(plan, state.pattern, state.geometry)  # measured, not configured
    source = state.last_commit or state.setup
    assert source is not None
    strategy.restore(source["state"], {}, toolkit)  # to learn which images it refers to
    references = reference_images(strategy.reference_keys(), state, plan.run_dir, plan.root, scope)
    strategy.restore(source["state"], references, toolkit)
    if state.heights_pending is not None:
        corrections = state.heights_pending["corrections_um"]
        strategy.correct_heights({int(k): float(v) for k, v in corrections.items()})
