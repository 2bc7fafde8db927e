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
from tomopilot.instrument.twin.optics import image_shift_delay_s
from tomopilot.instrument.twin.stage import Z_SETTLE_S, Z_SPEED_UM_S
from tomopilot.instrument.types import LowDoseArea

# Targets sit microns apart: every jump between them is on the flat end of the IS delay table.
_TARGET_JUMP_UM = 1.0
# Set-up moves: a realignment's correction and the image-shift reset move the stage by about a
# micron; the rough eucentricity moves z by a few.
_SHORT_MOVE_UM = 1.0
_EUCENTRIC_DZ_UM = 5.0
# The X,Y-positioning routine (targeting/realign.py): View images until the correction is below
# 20 nm (two typically, three at most), one stage move with backlash between them, the move that
# resets the image shift, and one View to align the result to the map.
_REALIGN_VIEWS = 2
_REALIGN_MOVES = 3


@dataclass(frozen=True)
class Timing:
    """Time costs of the microscope (seconds unless named)."""

    tilt_speed_deg_s: float = 30.0
    tilt_settle_s: float = 0.3
    image_shift_settle_s: float = 0.5  # a jump between targets (SerialEM's IS delay table)
    settle_startup_s: float = 0.25  # start-up built into that delay (StartupForISDelays)
    pre_exposure_s: float = 0.4
    readout_s: float = 0.4
    sum_return_s: float = 0.3
    record_s: float = 1.0
    preview_s: float = 0.5
    view_s: float = 1.0
    xy_move_s: float = 2.8  # a short stage move: its settling dominates (SEM-P: 2.0 + 0.8 s)
    eucentricity_s: float = 40.0  # the rough routine with its two Views and z move
    autofocus_s: float = 6.0
    dewar_poll_s: float = DEWAR_POLL_S  # before every Record when checkDewar is on

    @classmethod
    def from_twin(cls, config: TwinConfig) -> Timing:
        """The twin's own time costs."""
        presets = config.presets
        record = presets.get(LowDoseArea.RECORD)
        record_pixel_nm = record.unbinned_pixel_size_a * record.binning / 10.0
        view_s = presets.get(LowDoseArea.VIEW).exposure_s
        return cls(
            tilt_speed_deg_s=config.stage.tilt_speed_deg_s,
            tilt_settle_s=config.stage.tilt_settle_s,
            image_shift_settle_s=image_shift_delay_s(
                (_TARGET_JUMP_UM, 0.0), record_pixel_nm, config.optics
            ),
            settle_startup_s=config.optics.is_settle_startup_s,
            pre_exposure_s=config.camera.pre_exposure_s,
            readout_s=config.camera.readout_s,
            sum_return_s=config.camera.sum_return_s,
            record_s=record.exposure_s,
            preview_s=presets.get(LowDoseArea.PREVIEW).exposure_s,
            view_s=view_s,
            xy_move_s=_SHORT_MOVE_UM / config.stage.xy_speed_um_s + config.stage.xy_settle_s,
            eucentricity_s=config.housekeeping.eucentric_rough_s
            + 2 * (config.camera.pre_exposure_s + view_s + config.camera.readout_s)
            + _EUCENTRIC_DZ_UM / Z_SPEED_UM_S
            + Z_SETTLE_S,
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
    tracking_views_s: float = 0.0  # part of exposures_s: the tracking Views' cycles
    recovery_s: float = 0.0  # part of exposures_s: the given recovery Views and retakes
    per_loss_s: float = 0.0  # what one loss of target 1 costs pace: a View and a retake

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
    approach: bool = False,
    realign: bool = False,
    start_views: int = 0,
    focus_checks: int = 0,
    tracking_views: int = 0,
    frames: bool = False,
    recovery_views: int = 0,
    retakes: int = 0,
) -> DurationEstimate:
    """Microscope time of a run that images ``n_targets`` at every tilt of ``scheme``.

    With measureGeo, each of ``n_geo_points`` costs one defocus measurement. ``levers`` are the
    time levers the run uses (``acquisition/time_levers.py``); ``shots_per_tilt`` extra
    exposures of ``shot_s`` each are taken at every tilt after the first (``fused``'s
    tracking spot). The set-up moves the stage to the area first (``approach``, with backlash
    correction: two moves), realigns to target 1's saved View (``realign``: the X,Y-positioning
    routine's Views and moves) and takes ``start_views`` Views of its own (``fused``'s wide View
    of target 1). Views other strategies take when they lose a target are not foreseeable here.
    ``focus_checks`` defocus measurements (``fused``'s focus check) cost an autofocus each.
    ``tracking_views`` Views taken before Records (``sequential``'s tracking preset) cost a
    View cycle each (image shift, exposure, readout).
    ``recovery_views`` and ``retakes`` are ``pace``'s when target 1's Record loses it: a View at
    the lost Record's image shift (no shift to settle), and a Record retaken centred. How often
    that happens depends on the specimen's contrast and the stage, not on the plan, so a dry
    run gives none and reports ``per_loss_s``, what one loss costs (both).
    ``early_return`` shortens only Records that save their frames (``frames``): SerialEM
    returns early only from a shot that saves or aligns dose-fractionation frames.
    """
    single_shot = [lever for lever in levers if lever != "early_return"]
    record_levers = levers if frames else single_shot
    per_preview = timing.pre_exposure_s + timing.preview_s + timing.readout_s
    per_view = timing.pre_exposure_s + timing.view_s + timing.readout_s
    setup = timing.eucentricity_s + timing.autofocus_s + n_targets * per_preview
    if approach:
        setup += 2 * timing.xy_move_s
    if realign:
        setup += (_REALIGN_VIEWS + 1) * per_view + _REALIGN_MOVES * timing.xy_move_s
    setup += start_views * _cycle_s(timing, 0.0, timing.view_s, single_shot)
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
    poll = timing.dewar_poll_s if settings.check_dewar else 0.0  # after every Record's shift
    per_target = _cycle_s(timing, poll + delay_is, timing.record_s, record_levers)
    exposures = len(steps) * n_targets * per_target
    if shots_per_tilt and len(steps) > 1:
        # With settle_in_startup the engine sets the shot's image shift before the stage tilts
        # (tilting.shift_before_tilt): the tilt's own time counts towards its settling.
        tilt_s = scheme.step_deg / timing.tilt_speed_deg_s + timing.tilt_settle_s
        ahead = tilt_s if "settle_in_startup" in levers else 0.0
        shot = _cycle_s(timing, 0.0, shot_s, single_shot, settling_ahead_s=ahead)
        exposures += (len(steps) - 1) * shots_per_tilt * shot
    exposures += focus_checks * timing.autofocus_s
    views_s = tracking_views * _cycle_s(timing, 0.0, timing.view_s, single_shot)
    relocation_view = per_view  # at the image shift of the Record that lost the target
    retake = _cycle_s(timing, 0.0, timing.record_s, record_levers)
    recovery = recovery_views * relocation_view + retakes * retake
    return DurationEstimate(
        setup_s=setup,
        tilting_s=tilting,
        exposures_s=exposures + views_s + recovery,
        n_tilts=len(steps),
        n_records=len(steps) * n_targets,
        tracking_views_s=views_s,
        recovery_s=recovery,
        per_loss_s=relocation_view + retake,
    )


def _cycle_s(
    timing: Timing,
    delay_s: float,
    exposure_s: float,
    levers: Collection[str],
    *,
    settling_ahead_s: float = 0.0,
) -> float:
    """One image shift, script delay and exposure, from one camera return to the next.

    ``delay_s`` is spent after the image shift (the dewar poll, a script delay). With
    ``early_return`` the camera hands back the sum after ``sum_return_s`` and reads out the rest
    while the image shift settles and the script waits; with ``settle_in_startup`` the settling
    (counted from the shift) overlaps the camera's start-up instead of coming before it. Either
    way the beam comes on no earlier than the settling plus the start-up SerialEM takes as built
    into it (``settle_startup_s``) after the shift; ``settling_ahead_s`` of it passed before
    the cycle began (the shift was set before the stage tilted).
    """
    settle = timing.image_shift_settle_s
    overlap = "settle_in_startup" in levers
    if "early_return" in levers:
        blocking = min(timing.sum_return_s, timing.readout_s)
        camera_free = timing.readout_s - blocking
    else:
        blocking, camera_free = timing.readout_s, 0.0
    script = delay_s + (0.0 if overlap else settle)
    start = max(script, camera_free) + timing.pre_exposure_s
    # The beam comes on no earlier than the settling and the start-up built into it.
    start = max(start, settle + timing.settle_startup_s - settling_ahead_s)
    return blocking + start + exposure_s
