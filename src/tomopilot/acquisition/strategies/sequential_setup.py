"""Around a sequential target's set-up: the recentring's report, the defocus–tilt calibration's
tilts and the drift wait with its warnings."""

from __future__ import annotations

import logging
import math

from tomopilot.acquisition.events import SetupStep
from tomopilot.acquisition.plan.sequential_settings import SequentialSettings
from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.strategies.base import Toolkit
from tomopilot.acquisition.strategies.sequential_steps import (
    DriftReading,
    Recentring,
    wait_for_drift,
)

_log = logging.getLogger(__name__)


def report_recentring(toolkit: Toolkit, target: int, done: Recentring) -> None:
    """A set-up event (typed, on the run's bus) for each target's stage recentring."""
    misses = ", ".join(f"{m:.3f}" for m in done.misses_um) or "none"
    if done.lost:
        detail = (
            f"target {target} not found on its map (no Preview, whole-chip Preview or "
            f"View matched it; misses before: {misses} µm): the stage's move is kept, "
            "unverified"
        )
        _log.warning(detail)
    else:
        wide = f", {done.widened} found in a wider field" if done.widened else ""
        detail = f"target {target} recentred by stage: misses {misses} µm{wide}"
        _log.info(detail)
    scope = toolkit.scope
    scope.events.emit(SetupStep(time_s=scope.clock.now_s(), step="recentre", detail=detail))


def calibration_tilts(settings: AcquisitionSettings, step_deg: float) -> list[float]:
    """The tilts of the defocus–tilt calibration: the scheme's range in ``step_deg`` steps
    from the start tilt, with both ends."""
    s, step = settings, step_deg
    n_up = math.floor((s.max_tilt_deg - s.start_tilt_deg) / step + 1e-6)
    n_down = math.floor((s.start_tilt_deg - s.min_tilt_deg) / step + 1e-6)
    tilts = [s.start_tilt_deg + k * step for k in range(-n_down, n_up + 1)]
    return sorted({*tilts, s.min_tilt_deg, s.max_tilt_deg})


def wait_and_report_drift(toolkit: Toolkit, options: SequentialSettings) -> DriftReading:
    """The drift manager's wait, with a warning when it measured nothing or did not settle."""
    o = options
    reading = wait_for_drift(
        toolkit,
        threshold_nm_s=o.drift_threshold_nm_s,
        interval_s=o.drift_interval_s,
        timeout_s=o.drift_timeout_s,
    )
    if not reading.measured:
        _log.warning(
            "drift not measured: the Focus-area images show no believable correlation "
            "(no texture, no beam?); going on"
        )
    elif not reading.settled:
        _log.warning(
            "drift still %.2f nm/s after %.0f s; going on", reading.rate_nm_s, reading.waited_s
        )
    return reading
