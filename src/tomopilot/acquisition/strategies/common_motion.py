"""The common-motion predictor of ``fused``: what the stage will do at the next tilt.

Each branch keeps a short history of the common increments measured at its last tilts
(``[tilt, x, y, z]`` in µm, x along the tilt axis). Before any target has been imaged at a
tilt, the common motion is predicted from that history alone.
"""

from __future__ import annotations

import math
import statistics

import numpy as np

SMOOTH_STEPS = 3
SMOOTH_SIGMAS = 1.0
TREND_ONSET_DEG = 36.0
TREND_SIGMAS = 3.0
TREND_SIGNIFICANT_UM = 0.1
TREND_NOISE_FLOOR_UM = 0.03
TREND_DAMPING = 0.6
TREND_MAX_UM = 3.0


def branch_noise_um(history: list[list[float]]) -> float:
    """Robust size of a branch's step-to-step common motion (settling noise)."""
    values = [abs(v) for e in history for v in e[1:3]]
    if not values:
        return TREND_NOISE_FLOOR_UM
    return max(TREND_NOISE_FLOOR_UM, 1.4826 * statistics.median(values))


def predict_common_motion(history: list[list[float]], tilt_deg: float) -> list[float]:
    """Common motion (x, y, z) expected at ``tilt_deg`` before any target has shown it.

    The branch history holds the common increment measured at each of its last tilts.
    Below ``TREND_ONSET_DEG`` the increments are settling noise, one-off jumps and a slowly
    varying run-out: the median of the last three (a jump is ignored) is predicted when it
    stands out of the noise, else nothing. Beyond the onset a branch can run away (PACE23:
    0.6–2.5 µm per step past 40°), ramping up over a few steps: a significant last
    increment across the axis (y) persists and, when the step before was significant in the
    same direction too (not a one-off jump), its growth is extrapolated, damped. A run-away
    is the goniometer failing to rotate cleanly, so it moves the specimen across the axis;
    a large increment along the axis (x) is a jump of the holder and is not extrapolated.
    """
    if not history:
        return [0.0, 0.0, 0.0]
    noise = branch_noise_um(history)
    beyond = abs(tilt_deg) >= TREND_ONSET_DEG
    out = []
    for i in (1, 2):
        values = [e[i] for e in history]
        recent = values[-SMOOTH_STEPS:]
        smooth = statistics.median(recent) if len(recent) == SMOOTH_STEPS else 0.0
        guess = smooth if abs(smooth) > SMOOTH_SIGMAS * noise else 0.0
        last = values[-1]
        significant = max(TREND_SIGMAS * noise, TREND_SIGNIFICANT_UM)
        if beyond and i == 2 and abs(last) > significant:
            guess = last
            previous = values[-2] if len(values) > 1 else 0.0
            if abs(previous) > significant and previous * last > 0:
                growth = max(0.0, (last - previous) * math.copysign(1.0, last))
                guess += math.copysign(TREND_DAMPING * growth, last)
        out.append(float(np.clip(guess, -TREND_MAX_UM, TREND_MAX_UM)))
    out.append(0.0)
    return out
