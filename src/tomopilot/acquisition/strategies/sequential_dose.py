"""The ``sequential`` strategy's dose: exposure by tilt and the per-target dose cap.

Exposure can follow 1/cos θ with a total dose spread over the series (Leginon's default); a
dose cap ends a target's branches before they pass it (each half gets half of what the cap
leaves after the start Record). The dose counted on a target is every image taken at it: the
engine's set-up images (its map and start Preview), the strategy's recentring and reference
Previews, the Preview (and View) between the halves, the tracking Views and the Records. The
Focus area's images lie beside it, and the eucentric-height measurement's images are the
microscope's own (tomopilot never sees them), so neither counts. Every Record, with its tracking
View (and the first of the − half with the Preview between the halves), is checked against the
cap before it is taken.
"""

from __future__ import annotations

import math

from tomopilot.acquisition.plan.sequential_settings import SequentialSettings
from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.plan.tilt_schemes import TiltStep
from tomopilot.acquisition.strategies.base import Toolkit
from tomopilot.acquisition.strategies.sequential_state import SequentialTarget
from tomopilot.instrument.types import LowDoseArea

# Doses are sums of floats: a Record that exactly fills the cap is within it.
_DOSE_TOLERANCE_E_A2 = 1e-9


def tilt_key(tilt_deg: float) -> float:
    """A tilt rounded the way the exposure table is keyed (−0.0 folded into 0.0)."""
    return round(tilt_deg, 6) + 0.0


def exposure_schedule(
    settings: AcquisitionSettings, options: SequentialSettings, toolkit: Toolkit
) -> dict[float, float]:
    """The Record's exposure (s) at every tilt of the scheme."""
    s = settings
    preset = toolkit.scope.optics.preset(LowDoseArea.RECORD)
    n_up = math.floor((s.max_tilt_deg - s.start_tilt_deg) / s.step_deg + 1e-6)
    n_down = math.floor((s.start_tilt_deg - s.min_tilt_deg) / s.step_deg + 1e-6)
    tilts = [tilt_key(s.start_tilt_deg + k * s.step_deg) for k in range(-n_down, n_up + 1)]
    times = options.exposure_times_s(
        tilts,
        dose_rate_e_a2_s=preset.dose_e_a2 / preset.exposure_s,
        preset_exposure_s=preset.exposure_s,
    )
    return dict(zip(tilts, times, strict=True))


def record_dose_rate(toolkit: Toolkit) -> float:
    """The Record preset's dose rate (e/Å²/s)."""
    preset = toolkit.scope.optics.preset(LowDoseArea.RECORD)
    return preset.dose_e_a2 / preset.exposure_s


def within_dose_cap(
    t: SequentialTarget, branch: str, cap_e_a2: float | None, dose_e_a2: float
) -> bool:
    """Whether ``dose_e_a2`` more on ``t`` keeps ``branch`` within its part of the cap.

    The start (the set-up's images at the target and the start Record) may use the whole cap;
    each half gets half of what the start left.
    """
    if cap_e_a2 is None:
        return True
    if branch == "start":
        return t.start_dose_e_a2 + dose_e_a2 <= cap_e_a2 + _DOSE_TOLERANCE_E_A2
    budget = (cap_e_a2 - t.start_dose_e_a2) / 2.0
    spent = t.branch_dose_e_a2.get(branch, 0.0)
    return spent + dose_e_a2 <= budget + _DOSE_TOLERANCE_E_A2


def record_dose_e_a2(
    exposures_s: dict[float, float], tilt_deg: float, toolkit: Toolkit
) -> float | None:
    """The dose of the Record at ``tilt_deg`` (None if the scheme has no such tilt)."""
    exposure = exposures_s.get(tilt_key(tilt_deg))
    return None if exposure is None else record_dose_rate(toolkit) * exposure


def over_dose_cap(
    t: SequentialTarget,
    step: TiltStep,
    cap_e_a2: float | None,
    step_deg: float,
    exposures_s: dict[float, float],
    toolkit: Toolkit | None,
    tracking_dose_e_a2: float = 0.0,
) -> bool:
    """Whether the next Record of this branch (and its tracking image's
    ``tracking_dose_e_a2``) would pass the branch's half of the cap (checked after a Record, so
    that a branch the cap ends is not tilted on; the start's next Records are the halves' first
    ones, which :func:`within_dose_cap` checks before they are taken)."""
    if cap_e_a2 is None or step.branch == "start":
        return False
    sign = 1.0 if step.branch == "+" else -1.0
    assert toolkit is not None
    record = record_dose_e_a2(exposures_s, step.tilt_deg + sign * step_deg, toolkit)
    if record is None:  # the branch's last tilt: nothing follows
        return False
    return not within_dose_cap(t, step.branch, cap_e_a2, tracking_dose_e_a2 + record)


def count_dose(t: SequentialTarget, branch: str, dose_e_a2: float) -> None:
    """An exposure's dose on the target: its total, and the start's or the branch's."""
    t.dose_e_a2 += dose_e_a2
    if branch == "start":
        t.start_dose_e_a2 += dose_e_a2
    else:
        t.branch_dose_e_a2[branch] = t.branch_dose_e_a2.get(branch, 0.0) + dose_e_a2
