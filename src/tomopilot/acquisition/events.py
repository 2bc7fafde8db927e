"""Typed events the acquisition engine emits; the CLI and web page render them."""

from __future__ import annotations

from dataclasses import dataclass

from tomopilot.core.events import Event


@dataclass(frozen=True, kw_only=True)
class RunStarted(Event):
    """A run began (or resumed)."""

    run_dir: str
    strategy: str
    n_targets: int
    n_tilts: int
    resumed: bool = False
    area: str = ""
    """The area's name: the run's root (a session's areas are ``<root>_tNNN``)."""
    area_stage_x_um: float | None = None
    area_stage_y_um: float | None = None
    targets_ss_um: tuple[tuple[float, float], ...] = ()
    """Each target's specimen shift from the area's centre, in target order."""


@dataclass(frozen=True, kw_only=True)
class SetupStep(Event):
    """A setup step finished (eucentricity, target maps, autofocus, target alignment)."""

    step: str
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class TiltReached(Event):
    """The stage reached the next tilt of the scheme."""

    tilt_deg: float
    step_index: int
    n_steps: int
    branch: str


@dataclass(frozen=True, kw_only=True)
class ExposureRecorded(Event):
    """A Record was taken, saved and committed to the journal."""

    target: int
    tilt_deg: float
    section: int
    image_shift_x_um: float
    image_shift_y_um: float
    focus_um: float
    alignment_x_um: float
    alignment_y_um: float
    mean_counts: float
    dose_e_a2: float
    exposure_id: int
    step_index: int
    n_steps: int
    branch: str = ""
    stage_x_um: float | None = None
    stage_y_um: float | None = None
    stage_z_um: float | None = None
    target_defocus_um: float | None = None
    predicted_dz_um: float | None = None
    measured_defocus_um: float | None = None
    """The Record's own CTF fit, when the run fits one."""
    prior_dose_e_a2: float | None = None
    exposure_s: float | None = None
    pixel_size_a: float | None = None
    stack: str = ""
    """The stack file's name in the run folder (``section`` counts from 0 in it)."""
    area: str = ""
    """The area the target belongs to (:attr:`RunStarted.area`)."""


@dataclass(frozen=True, kw_only=True)
class TargetSkipped(Event):
    """A target will not be imaged any more."""

    target: int
    reason: str


@dataclass(frozen=True, kw_only=True)
class BranchAborted(Event):
    """One branch of one target's tilt series ended early."""

    target: int
    branch: str
    tilt_deg: float
    reason: str
    area: str = ""


@dataclass(frozen=True, kw_only=True)
class ExposureLost(Event):
    """An exposure did not complete (a crash in flight, or a camera that kept failing)."""

    target: int
    tilt_deg: float
    reason: str


@dataclass(frozen=True, kw_only=True)
class RunStateChanged(Event):
    """Paused, resumed, aborting."""

    state: str


@dataclass(frozen=True, kw_only=True)
class RunFinished(Event):
    """The run ended."""

    status: str
    n_exposures: int
    microscope_minutes: float
    lost_exposures: int = 0
