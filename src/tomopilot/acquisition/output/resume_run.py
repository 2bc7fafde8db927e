"""Resuming a run from its journal: where it stopped, its files, and re-finding target 1.

The engine replays the journal (:func:`~tomopilot.acquisition.output.journal.replay_journal`); these
helpers turn that state into the step to continue from, reopen the tilt-series files to their
committed sections, and, as PACEtomo does, re-align target 1 with a Preview against its last
Record before the first new exposure.
"""

from __future__ import annotations

import math

from tomopilot.acquisition.errors import AcquisitionError
from tomopilot.acquisition.output.journal import JournalState, last_section_on_branch
from tomopilot.acquisition.output.saved_images import image_from_file, reference_images
from tomopilot.acquisition.output.tilt_series_files import TiltSeriesFiles
from tomopilot.acquisition.plan.run_plan import RunPlan
from tomopilot.acquisition.plan.tilt_schemes import TiltScheme, TiltStep
from tomopilot.acquisition.setup.adjustments import reapply_adjustments
from tomopilot.acquisition.strategies.base import Strategy, Toolkit
from tomopilot.core.errors import TomopilotError
from tomopilot.instrument.protocol import Microscope
from tomopilot.instrument.types import LowDoseArea


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
    """At the interrupted tilt: a Preview of target 1 aligned to its last Record, the shift
    handed to the strategy."""
    section = last_section_on_branch(state, 1, step.branch)
    if section is None:
        return
    path = plan.run_dir / f"{plan.ts_stem(1)}.mrc"
    reference = image_from_file(path, section, LowDoseArea.RECORD, scope)
    request = strategy.prepare(1, step) if step.branch == "start" else None
    if request is not None:
        scope.optics.set_image_shift_um(*request.image_shift_um)
    preview = scope.camera.acquire(LowDoseArea.PREVIEW)
    if reference is None:
        return
    found = toolkit.shift_um(reference, preview)
    if found is not None and math.hypot(*found[0]) < 2.0:
        strategy.recover(step, (float(found[0][0]), float(found[0][1])))


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
