"""Where the beam really is while the image-shift deflectors settle.

After an image shift the image does not jump to its new place: it arrives with a transient that
decays over a fraction of a second (eddy currents and hysteresis in the deflector coils and pole
pieces). SerialEM's image-shift delay table is the time after which it treats that transient as
gone, and a shot waits for it only when the program set an image-shift time-out (a script's
``SetImageShift`` / ``ImageShiftByMicrons`` with the settling multiplier ``#D``; SerialEM's own
routines always set one). A Record whose beam comes on earlier sees the rest of the transient:
the image is displaced by the part not yet arrived and blurred by the part that arrives during
the exposure.

The twin keeps every shift's transient, a lag of ``is_settle_lag_fraction`` of the move that
decays with the time constant ``is_settle_tau_s`` and is gone (exactly) once SerialEM's criterion
is met, the table's delay plus the start-up it takes as built in (``image_shift_delay_s`` +
``is_settle_startup_s``). The magnitudes, both of them tied to SerialEM's own numbers:

- τ = 0.36 s: the table reads 0 s at 0.1 µm and 0.4 s at 0.3 µm, a three times larger lag
  settled to the same level 0.4 s later, so τ = 0.4 s / ln 3 = 0.36 s; SerialEM's older
  ``DelayPerMagDoubling`` default (0.25 s per halving of the pixel, the wait for a lag half as
  large) gives 0.25 s / ln 2 = 0.36 s as well (SEM-P; ShiftManager::ComputeISDelay). On JEOL the
  table is scaled by ``ISdelayScaleFactor`` 0.2, and so is τ here (``is_settle_s`` / 0.5).
- the lag, 0.5 % of the move (est.): a 0.1 µm shift, which the table lets go unwaited, lags
  0.5 nm, half a 1 nm Record pixel, the pixel below which SerialEM starts adding settling per
  halving of the pixel. A 1 µm jump between targets lags 5 nm at the shift and still about 1 nm
  when a camera started at once (0.4 s) opens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from tomopilot.instrument.twin.config import OpticsConfig

SMEAR_SAMPLES = 9  # positions averaged along a blur


@dataclass(frozen=True)
class ShiftTransient:
    """One image shift's settling: when it was made, the true move (µm), and when SerialEM's
    criterion (table delay + built-in start-up) has it settled."""

    time_s: float
    move_um: tuple[float, float]
    settled_s: float


def tau_s(optics: OpticsConfig) -> float:
    """The transient's time constant (scaled like the table, ``is_settle_s`` / 0.5)."""
    return optics.is_settle_tau_s * optics.is_settle_s / 0.5


def _weight(transient: ShiftTransient, t: float, tau: float) -> float:
    """Fraction of the move's lag left at ``t`` (continuous, 0 once settled)."""
    if t >= transient.settled_s or tau <= 0.0:
        return 0.0
    s = max(0.0, t - transient.time_s)
    return math.exp(-s / tau) - math.exp(-(transient.settled_s - transient.time_s) / tau)


def _mean_weight(transient: ShiftTransient, t0: float, t1: float, tau: float) -> float:
    """The weight averaged over [t0, t1] (the exposure)."""
    if t1 <= t0:
        return _weight(transient, t0, tau)
    end = min(t1, transient.settled_s)
    if end <= t0 or tau <= 0.0:
        return 0.0
    a, b = max(0.0, t0 - transient.time_s), end - transient.time_s
    floor = math.exp(-(transient.settled_s - transient.time_s) / tau)
    integral = tau * (math.exp(-a / tau) - math.exp(-b / tau)) - floor * (b - a)
    return integral / (t1 - t0)


def lag_um(transients: list[ShiftTransient], t: float, optics: OpticsConfig) -> tuple[float, float]:
    """The part of the shifts not yet arrived at ``t`` (true µm): the beam is short of its
    commanded place by this."""
    tau = tau_s(optics)
    x = y = 0.0
    for tr in transients:
        w = _weight(tr, t, tau) * optics.is_settle_lag_fraction
        x += w * tr.move_um[0]
        y += w * tr.move_um[1]
    return x, y


def exposure_lag(
    transients: list[ShiftTransient], t0: float, t1: float, optics: OpticsConfig
) -> tuple[tuple[float, float], float]:
    """For an exposure from ``t0`` to ``t1``: the mean lag (true µm; the image's displacement)
    and how far the beam moved meanwhile (µm; the blur)."""
    tau = tau_s(optics)
    mx = my = 0.0
    for tr in transients:
        w = _mean_weight(tr, t0, t1, tau) * optics.is_settle_lag_fraction
        mx += w * tr.move_um[0]
        my += w * tr.move_um[1]
    start, end = lag_um(transients, t0, optics), lag_um(transients, t1, optics)
    blur = math.hypot(start[0] - end[0], start[1] - end[1])
    return (mx, my), blur


def smear(
    image: NDArray[np.float32], start_px: tuple[float, float], end_px: tuple[float, float]
) -> NDArray[np.float32]:
    """``image`` averaged over its positions moving from ``start_px`` to ``end_px`` (column,
    row offsets from where the mean lag put it): the blur of a beam still settling."""
    out = np.zeros_like(image, dtype=np.float64)
    for f in np.linspace(0.0, 1.0, SMEAR_SAMPLES):
        dx = start_px[0] + f * (end_px[0] - start_px[0])
        dy = start_px[1] + f * (end_px[1] - start_px[1])
        out += ndimage.shift(image, (dy, dx), order=1, mode="nearest")
    return (out / SMEAR_SAMPLES).astype(np.float32)


def prune(transients: list[ShiftTransient], now_s: float) -> list[ShiftTransient]:
    """The transients not yet settled at ``now_s``."""
    return [tr for tr in transients if tr.settled_s > now_s]


__all__ = ["ShiftTransient", "exposure_lag", "lag_um", "prune", "smear", "tau_s"]
