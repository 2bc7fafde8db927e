"""How long a plan will keep the microscope busy, before anything is exposed (``--dry-run``).

The estimate adds the stage moves of the scheme (approach moves included), the settling and
script delays, and the per-exposure overheads of the camera to the exposures themselves. The
timing constants are the microscope's: on the twin they come from its configuration; for a
real microscope the defaults follow SerialEM and PACEtomo (reference/twin_magnitudes.md §1, §5).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.plan.tilt_schemes import TiltScheme
from tomopilot.instrument.twin import TwinConfig
from tomopilot.instrument.twin.housekeeping import DEWAR_POLL_S
from tomopilot.instrument.types import LowDoseArea


@dataclass(frozen=True)
class Timing:
    """Time costs of the microscope (seconds unless named)."""

    tilt_speed_deg_s: float = 30.0
    tilt_settle_s: float = 0.3
    image_shift_settle_s: float = 0.5
    pre_exposure_s: float = 0.4
    readout_s: float = 0.4
    sum_return_s: float = 0.3
    record_s: float = 1.0
    preview_s: float = 0.5
    eucentricity_s: float = 40.0
    autofocus_s: float = 6.0
    dewar_poll_s: float = DEWAR_POLL_S  # before every Record when checkDewar is on

    @classmethod
    def from_twin(cls, config: TwinConfig) -> Timing:
        """The twin's own time costs."""
        presets = config.presets
        return cls(
            tilt_speed_deg_s=config.stage.tilt_speed_deg_s,
            tilt_settle_s=config.stage.tilt_settle_s,
            image_shift_settle_s=config.optics.is_settle_s,
            pre_exposure_s=config.camera.pre_exposure_s,
            readout_s=config.camera.readout_s,
            sum_return_s=config.camera.sum_return_s,
            record_s=presets.get(LowDoseArea.RECORD).exposure_s,
            preview_s=presets.get(LowDoseArea.PREVIEW).exposure_s,
            eucentricity_s=config.housekeeping.eucentric_rough_s + 10.0,
            autofocus_s=config.housekeeping.autofocus_overhead_s
            + 2
            * (
                config.camera.pre_exposure_s
                + presets.get(LowDoseArea.FOCUS).exposure_s
                + config.camera.readout_s
            ),
        )


@dataclass(frozen=True)
class DurationEstimate:
    """The estimate and its parts (seconds)."""

    setup_s: float
    tilting_s: float
    exposures_s: float
    n_tilts: int
    n_records: int

    @property
    def total_s(self) -> float:
        """Everything."""
        return self.setup_s + self.tilting_s + self.exposures_s

    @property
    def minutes_per_tilt_series(self) -> float:
        """Total time over the number of tilt series."""
        n_series = max(1, self.n_records // max(1, self.n_tilts))
        return self.total_s / 60.0 / n_series


def estimate_duration(
    settings: AcquisitionSettings,
    scheme: TiltScheme,
    n_targets: int,
    timing: Timing,
    *,
    n_geo_points: int = 0,
    levers: Collection[str] = (),
    shots_per_tilt: int = 0,
    shot_s: float = 0.0,
) -> DurationEstimate:
    """Microscope time of a run that images ``n_targets`` at every tilt of ``scheme``.

    With measureGeo, each of ``n_geo_points`` costs one defocus measurement. ``levers`` are the
    time levers the run uses (``acquisition/time_levers.py``); ``shots_per_tilt`` extra
    exposures of ``shot_s`` each are taken at every tilt after the first (``fused``'s
    tracking spot).
    """
    per_preview = timing.pre_exposure_s + timing.preview_s + timing.readout_s
    setup = timing.eucentricity_s + timing.autofocus_s + n_targets * per_preview
    if settings.measure_geometry and n_geo_points >= 3:
        setup += n_geo_points * timing.autofocus_s
    if settings.preview_align:
        setup += n_targets * (per_preview + timing.image_shift_settle_s)
    tilting = 0.0
    position = scheme.start_deg
    steps = scheme.steps()
    for step in steps:
        for target in (step.approach_deg, step.tilt_deg):
            if target is None or target == position:
                continue
            tilting += abs(target - position) / timing.tilt_speed_deg_s + timing.tilt_settle_s
            position = target
        if "builtin_settling" not in levers:
            tilting += settings.delay_tilt_s
    delay_is = 0.0 if "builtin_settling" in levers else settings.delay_is_s
    poll = timing.dewar_poll_s if settings.check_dewar else 0.0  # before every Record's shift
    per_target = _cycle_s(timing, delay_is, timing.record_s, levers, before_shift_s=poll)
    exposures = len(steps) * n_targets * per_target
    if shots_per_tilt and len(steps) > 1:
        shot = _cycle_s(timing, 0.0, shot_s, levers)
        exposures += (len(steps) - 1) * shots_per_tilt * shot
    return DurationEstimate(
        setup_s=setup,
        tilting_s=tilting,
        exposures_s=exposures,
        n_tilts=len(steps),
        n_records=len(steps) * n_targets,
    )


def _cycle_s(
    timing: Timing,
    delay_s: float,
    exposure_s: float,
    levers: Collection[str],
    *,
    before_shift_s: float = 0.0,
) -> float:
    """One image shift, script delay and exposure, from one camera return to the next.

    ``before_shift_s`` is spent before the image shift (the dewar poll), ``delay_s`` after it.
    With ``early_return`` the camera hands back the sum after ``sum_return_s`` and reads out
    the rest while the image shift settles and the script waits; with ``settle_in_startup`` the
    settling (counted from the shift) overlaps the camera's start-up instead of coming before it.
    """
    settle = timing.image_shift_settle_s
    overlap = "settle_in_startup" in levers
    if "early_return" in levers:
        blocking = min(timing.sum_return_s, timing.readout_s)
        camera_free = timing.readout_s - blocking
    else:
        blocking, camera_free = timing.readout_s, 0.0
    script = before_shift_s + delay_s + (0.0 if overlap else settle)
    start = max(script, camera_free) + timing.pre_exposure_s
    if overlap:
        start = max(start, before_shift_s + settle)
    return blocking + start + exposure_s
