"""The dry run's estimate for ``sequential``: one area per target, Leginon's steps around each.

:func:`~tomopilot.acquisition.plan.estimate.estimate_duration` prices a parallel run: one
set-up, one pass over the tilts for all targets. A sequential session repeats the set-up and
the tilts for every target and adds the steps of Leginon's order (leginon.md §3) and ours:
the autofocus's scale (four readings at each set-up), the recentring's stage move and
Previews, a backlash release before each half, the drift manager's image pairs, a start
Preview per half, the pauses after tilts and Records, the Focus-area readings
(``focus_every``) and, once a session, the defocus–tilt table over the tilt range. What
depends on the specimen and stage is priced at its least: one recentring move and two
Previews, no wait beyond one drift interval, no reading taken again after a View.
"""

from __future__ import annotations

import math

from tomopilot.acquisition.plan.estimate import DurationEstimate, Timing, estimate_duration
from tomopilot.acquisition.plan.run_config import AcquireConfig, ResolvedRun
from tomopilot.acquisition.plan.sequential_settings import SequentialSettings
from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.plan.tilt_schemes import HalvesInTheirDirection, TiltScheme
from tomopilot.instrument.types import LowDoseArea

# Readings of the set-up's autofocus scale (two known lens changes, two readings each:
# setup/autofocus_scale.py), of each tilt of the defocus–tilt table, and of the start tilt's
# Focus-area reading (it sets the series' level).
SCALE_READINGS = 4
TABLE_READINGS = 2
START_READINGS = 2
RECENTRE_PREVIEWS = 2


def estimate_sequential(
    settings: AcquisitionSettings,
    options: SequentialSettings,
    scheme: TiltScheme,
    n_targets: int,
    timing: Timing,
    *,
    focus_s: float,
    levers: tuple[str, ...] = (),
    frames: bool = False,
    n_realign: int = 0,
) -> DurationEstimate:
    """Microscope time of a sequential session over ``n_targets`` (one area each), of which
    ``n_realign`` realign to their own View (``viewfile``) first.

    ``focus_s`` is one Focus-area image's exposure (the drift manager's pairs). The scheme is
    taken as the session runs it (with ``approach_from_below`` off, a bidirectional scheme's
    − half is tilted downwards)."""
    if scheme.kind == "bidirectional" and not options.approach_from_below:
        scheme = HalvesInTheirDirection(**scheme.model_dump())
    steps = scheme.steps()
    views = {True: len(steps), "auto": 1, False: 0}[options.track_with_view]
    one = estimate_duration(
        settings,
        scheme,
        1,
        timing,
        levers=levers,
        approach=True,
        frames=frames,
        start_views=int(options.backlash_release),
        tracking_views=views,
    )
    realign = estimate_duration(settings, scheme, 1, timing, realign=True).setup_s
    realign -= estimate_duration(settings, scheme, 1, timing).setup_s
    halves = 2 if any(s.branch == "-" for s in steps) else 1
    per_preview = timing.pre_exposure_s + timing.preview_s + timing.readout_s
    per_focus = timing.pre_exposure_s + focus_s + timing.readout_s
    area = SCALE_READINGS * timing.autofocus_s + halves * per_preview  # the start Previews
    if options.recentre_iterations > 0:
        area += timing.xy_move_s + RECENTRE_PREVIEWS * per_preview
    if options.backlash_release:
        one_degree = 1.0 / timing.tilt_speed_deg_s + timing.tilt_settle_s
        area += halves * options.backlash_steps * (one_degree + options.backlash_pause_s)
    drift_checks = {"off": 0, "half": halves, "every": halves + len(steps) - halves}
    area += drift_checks[options.drift_check] * (2 * per_focus + options.drift_interval_s)
    area += (len(steps) - 1) * max(0.0, options.tilt_pause_s - settings.delay_tilt_s)
    area += len(steps) * options.pause_after_record_s
    readings = 0
    if options.focus_every > 0:
        for branch in ("+", "-"):
            n = sum(1 for s in steps if s.branch == branch)
            readings += math.ceil(n / options.focus_every)
        readings += START_READINGS
    area += readings * timing.autofocus_s
    session = 0.0
    reach = max(abs(settings.min_tilt_deg), abs(settings.max_tilt_deg))
    if options.defocus_tilt_calibration and reach >= 20.0:
        span = settings.max_tilt_deg - settings.min_tilt_deg
        n_table = math.floor(span / options.calibration_step_deg + 1e-6) + 2
        session += n_table * (TABLE_READINGS * timing.autofocus_s + timing.tilt_settle_s)
        session += 2 * span / timing.tilt_speed_deg_s  # the sweep up and back to the start
    return DurationEstimate(
        setup_s=n_targets * (one.setup_s + area) + n_realign * realign + session,
        tilting_s=n_targets * one.tilting_s,
        exposures_s=n_targets * one.exposures_s,
        n_tilts=len(steps),
        n_records=n_targets * len(steps),
        tracking_views_s=n_targets * one.tracking_views_s,
    )


def session_estimate(
    config: AcquireConfig, resolved: ResolvedRun, levers: tuple[str, ...]
) -> DurationEstimate:
    """:func:`estimate_sequential` of a configured run (the dry run's and the bench's): its
    live targets (those with a ``viewfile`` realign to it), the twin's time costs,
    ``levers`` the run's time levers."""
    twin = config.microscope.twin
    live = [t for t in resolved.targets if not t.skip]
    return estimate_sequential(
        resolved.settings,
        config.sequential,
        resolved.scheme,
        len(live),
        Timing.from_twin(twin),
        focus_s=twin.presets.get(LowDoseArea.FOCUS).exposure_s,
        levers=levers,
        frames=config.save_frames,
        n_realign=sum(bool(t.view_file) for t in live),
    )
