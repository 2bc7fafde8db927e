"""The ``sequential`` strategy's dose: exposure by tilt and the per-target dose cap.

Exposure can follow 1/cos θ with a total dose spread over the series (Leginon's default); a
dose cap ends a target's branches before they pass it (each half gets half of what the cap
leaves after the start Record).
"""

from __future__ import annotations

import math

from tomopilot.acquisition.plan.sequential_settings import SequentialSettings
from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.plan.tilt_schemes import TiltStep
from tomopilot.acquisition.strategies.base import Toolkit
from tomopilot.acquisition.strategies.sequential_state import SequentialTarget
from tomopilot.instrument.types import LowDoseArea


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
    ``tracking_dose_e_a2``) would pass the branch's half of the cap."""
    if cap_e_a2 is None or step.branch == "start":
        return False
    budget = (cap_e_a2 - t.start_dose_e_a2) / 2.0
    spent = t.branch_dose_e_a2.get(step.branch, 0.0)
    sign = 1.0 if step.branch == "+" else -1.0
    exposure = exposures_s.get(tilt_key(step.tilt_deg + sign * step_deg))
    if exposure is None:  # the branch's last tilt: nothing follows
        return False
    assert toolkit is not None
    return spent + tracking_dose_e_a2 + record_dose_rate(toolkit) * exposure > budget


def count_dose(t: SequentialTarget, branch: str, dose_e_a2: float) -> None:
    """An exposure's dose on the target: its total, and the start's or the branch's."""
    t.dose_e_a2 += dose_e_a2
    if branch == "start":
        t.start_dose_e_a2 += dose_e_a2
    else:
        t.branch_dose_e_a2[branch] = t.branch_dose_e_a2.get(branch, 0.0) + dose_e_a2
