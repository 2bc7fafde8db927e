"""Measure the tilt-axis offset from defocus readings across a small tilt range (pacetomo.md §5.2).

With the image shift centred on the tilt axis, the field centre at image shift (0, yⱼ) looks at
the specimen a distance eⱼ = o_set + yⱼ − o_true from the true axis, where o_set is the offset the
software applies. A flat specimen at depth z₀ below the axis (z along the beam), tilted by θ,
is then at depth eⱼ tan θ + z₀ / cos θ under the field centre, so the defocus reading
(focus + z) changes as

    dⱼ(θ) − dⱼ(0) = eⱼ tan θ + z₀ (1/cos θ − 1) = −uⱼ tan θ + z₀ (1/cos θ − 1).

Fitting uⱼ = −eⱼ (and z₀) per position gives o_true = o_set + yⱼ + uⱼ, PACEtomo's "u + o"; the
result is their mean, with estimates from the negative and the positive tilts alone (side-entry
holders have different offsets per branch). PACEtomo fits the tan θ term alone; the 1/cos θ term
here keeps a eucentric height error from biasing an asymmetric tilt range.

Ours departs from PACEtomo's monotonic sweep in two ways, both against the goniometer's own
wandering. Every tilt move leaves a small random height error, and drift adds more: the
specimen's height is a random walk in time. Swept from −T to +T, that walk grows with the tilt
just as an axis offset does and is read as one (0.1–0.25 µm on an autoloader with 15 nm per
move). So the tilts are *interleaved*, 0, +Δ, −Δ, +2Δ, −2Δ, …, which makes successive readings
differ by a large step in tan θ while the walk moves by one increment; and the fit is a
generalised least-squares fit whose noise model is that random walk plus white reading noise,
so it weighs the differences between successive readings, not their drift. Every reading still
comes after a move in + (a negative tilt is approached from one step below).
Run-out of the goniometer in z that grows with the tilt is indistinguishable from an axis
offset over a small range, as on a real microscope.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from tomopilot.core.events import Message, Progress
from tomopilot.geometry.scope_state import preserved_optics, temporary_preset
from tomopilot.instrument import LowDoseArea, Microscope


@dataclass(frozen=True)
class AxisOffsetResult:
    """The measured tilt-axis offset (µm, specimen y) and its ingredients.

    Attributes
    ----------
    offset_um
        Recommended setting: the applied offset plus the mean measured correction.
    previous_offset_um
        The offset that was set during the measurement.
    per_position_um
        Offset estimated from each image-shift position yⱼ.
    negative_branch_um, positive_branch_um
        The offsets of the negative and the positive branch (side-entry holders differ), from
        one fit with a slope per branch and a common eucentric error.
    branch_sigma_um
        Their standard error. The branches differ by a term shaped like |tan θ|, which over a
        small range resembles the eucentric error's sec θ − 1: with readings good to ~0.05 µm,
        ±20° gives ±0.2–0.3 µm per branch. Measure over a wider range when it matters.
    eucentric_error_um
        z₀: the specimen's depth below the tilt axis (µm, along the beam).
    tilts_deg, positions_um, defocus_um
        The readings fitted: defocus_um[k, i, j] of sweep k at tilts_deg[i] (in the order
        visited) and position j.
    sweeps_kept
        For every sweep measured, in time order, whether it was used (False: the stage jumped
        during it and it was measured again).
    """

    offset_um: float
    previous_offset_um: float
    per_position_um: tuple[float, ...]
    negative_branch_um: float
    positive_branch_um: float
    branch_sigma_um: float
    eucentric_error_um: float
    tilts_deg: tuple[float, ...]
    positions_um: tuple[float, ...]
    defocus_um: NDArray[np.float64]
    sweeps_kept: tuple[bool, ...] = ()

    @property
    def discarded_sweeps(self) -> int:
        """Sweeps measured again because the stage jumped during them."""
        return sum(not kept for kept in self.sweeps_kept)

    @property
    def correction_um(self) -> float:
        """How far the offset moves if applied."""
        return self.offset_um - self.previous_offset_um


# The noise model of the fit: the specimen's height wanders between readings (a tilt move's
# settling error and drift, a random walk) and each reading has its own error.
HEIGHT_WALK_UM = 0.02
READING_NOISE_UM = 0.01
# A sweep whose jump statistic exceeds this was disturbed by a stage jump and is measured again.
JUMP_CHI2 = 60.0
MAX_EXTRA_SWEEPS = 2


def _fit(
    tilts_deg: NDArray[np.float64],
    defocus: NDArray[np.float64],
    order: NDArray[np.int64],
    *,
    per_branch: bool = False,
) -> tuple[list[float], float, list[float]]:
    """([u], z₀, [σ_u]) of d(θ) = c − u tan θ + z₀ (sec θ − 1) + walk + noise (generalised LSQ).

    With ``per_branch`` the slope is fitted separately for θ < 0 and θ > 0 (``[u₋, u₊]``) while
    c and z₀ stay common: one side alone cannot tell tan θ from sec θ − 1. ``order`` is each
    reading's place in time; the walk's covariance between readings i and k is
    HEIGHT_WALK_UM² · min(order_i, order_k). σ_u are standard errors scaled by the residuals.
    """
    t = np.radians(tilts_deg)
    slopes = [-np.tan(t)]
    if per_branch:
        slopes = [-np.tan(t) * (t < 0), -np.tan(t) * (t > 0)]
    columns = [np.ones_like(t), *slopes]
    if np.ptp(tilts_deg) >= 20.0:  # else too little curvature to tell z₀ apart: slopes only
        columns.append(1.0 / np.cos(t) - 1.0)
    design = np.stack(columns, axis=1)
    a = _whitener(order) @ design
    b = _whitener(order) @ defocus
    coef, *_ = np.linalg.lstsq(a, b, rcond=None)
    z0 = float(coef[1 + len(slopes)]) if len(coef) > 1 + len(slopes) else 0.0
    dof = max(1, len(b) - len(coef))
    scale = float(np.sum((b - a @ coef) ** 2)) / dof
    sigma = np.sqrt(np.diag(np.linalg.pinv(a.T @ a)) * scale)
    u = slice(1, 1 + len(slopes))
    return [float(c) for c in coef[u]], z0, [float(v) for v in sigma[u]]


def _whitener(order: NDArray[np.int64]) -> NDArray[np.float64]:
    """W with Wᵀ W = C⁻¹ for the random-walk-plus-noise covariance C of readings in ``order``."""
    steps = np.asarray(order, np.float64) + 1.0
    covariance = HEIGHT_WALK_UM**2 * np.minimum.outer(steps, steps) + READING_NOISE_UM**2 * np.eye(
        len(steps)
    )
    return np.asarray(np.linalg.cholesky(np.linalg.inv(covariance)).T)


def jump_statistic(
    tilts_deg: Sequence[float], defocus_um: NDArray[np.float64]
) -> tuple[float, int]:
    """How strongly one sweep's readings (in visiting order) say the stage jumped, and where.

    A jump moves the height (a step in every later reading) and, along y, the axis (a step in
    the tan θ slope). For every possible reading m the fit is repeated with both steps from m
    on; the largest drop of the whitened squared residual (a χ² with two degrees of freedom)
    and its m are returned. Random walk and noise alone stay below ~35 on the twin; a 0.5 µm
    jump gives ~120. ``defocus_um`` may hold several positions (columns): they are averaged.
    """
    readings = np.asarray(defocus_um, np.float64)
    series = readings.mean(axis=1) if readings.ndim == 2 else readings
    t = np.radians(np.asarray(tilts_deg, np.float64))
    n = len(t)
    whitener = _whitener(np.arange(n))
    base = np.stack([np.ones_like(t), -np.tan(t), 1.0 / np.cos(t) - 1.0], axis=1)

    def residual(design: NDArray[np.float64]) -> float:
        a, b = whitener @ design, whitener @ series
        coef, *_ = np.linalg.lstsq(a, b, rcond=None)
        r = b - a @ coef
        return float(r @ r)

    plain = residual(base)
    best = (0.0, 0)
    for m in range(2, n - 1):
        after = (np.arange(n) >= m).astype(np.float64)
        drop = plain - residual(np.column_stack([base, after, after * np.tan(t)]))
        if drop > best[0]:
            best = (drop, m)
    return best


def interleaved_tilts(max_tilt_deg: float, step_deg: float) -> list[float]:
    """0, +Δ, −Δ, +2Δ, −2Δ, … ±T: the order the measurement visits its tilts."""
    n_steps = round(max_tilt_deg / step_deg)
    tilts = [0.0]
    for k in range(1, n_steps + 1):
        tilts += [step_deg * k, -step_deg * k]
    return tilts


def fit_axis_offset(
    tilts_deg: Sequence[float],
    positions_um: Sequence[float],
    defocus_um: NDArray[np.float64],
    previous_offset_um: float,
) -> AxisOffsetResult:
    """Turn readings into an offset.

    ``defocus_um[k, i, j]`` is the reading of sweep k at tilts_deg[i] and image-shift y
    position j (a 2D array is one sweep); the tilts are listed in the order they were visited,
    which the fit's random-walk noise model needs. Each sweep is fitted on its own (the stage
    may have moved between sweeps) and the sweeps are averaged (a sweep spoiled by a jump is
    not among them: :func:`measure_tilt_axis_offset` measures it again).
    """
    tilts = np.asarray(tilts_deg, np.float64)
    readings = np.asarray(defocus_um, np.float64)
    if readings.ndim == 2:
        readings = readings[None]

    order = np.arange(len(tilts))
    per_position: list[float] = []
    depths: list[float] = []
    branches: list[list[float]] = []
    branch_sigmas: list[float] = []
    for j, y in enumerate(positions_um):
        fits = [_fit(tilts, sweep[:, j], order) for sweep in readings]
        split = [_fit(tilts, sweep[:, j], order, per_branch=True) for sweep in readings]
        base = previous_offset_um + float(y)
        per_position.append(base + float(np.mean([f[0][0] for f in fits])))
        depths.append(float(np.mean([f[1] for f in fits])))
        branches.append([base + float(np.mean([f[0][k] for f in split])) for k in (0, 1)])
        branch_sigmas.append(float(np.mean([max(f[2]) for f in split]) / math.sqrt(len(split))))

    return AxisOffsetResult(
        offset_um=float(np.mean(per_position)),
        previous_offset_um=previous_offset_um,
        per_position_um=tuple(per_position),
        negative_branch_um=float(np.mean([b[0] for b in branches])),
        positive_branch_um=float(np.mean([b[1] for b in branches])),
        branch_sigma_um=float(np.mean(branch_sigmas)),
        eucentric_error_um=float(np.mean(depths)),
        tilts_deg=tuple(float(t) for t in tilts),
        positions_um=tuple(float(y) for y in positions_um),
        defocus_um=readings,
    )


def measure_tilt_axis_offset(
    scope: Microscope,
    *,
    max_tilt_deg: float = 20.0,
    step_deg: float = 5.0,
    positions_um: Sequence[float] = (0.0, -5.0, 5.0),
    sweeps: int = 2,
    eucentricity: bool = True,
    on_event: Callable[[Progress | Message], None] | None = None,
) -> AxisOffsetResult:
    """Measure the tilt-axis offset on ``scope`` (PACEtomo's measureOffset, pacetomo.md §5.2).

    The tilts are visited interleaved (see :func:`interleaved_tilts` and the module docstring),
    each approached in +. The defaults (±20°, two sweeps) are ours; PACEtomo uses ±15° and one
    sweep. On the twin's default autoloader stage they bring the error against the axis the
    specimen rotated about from 0.067 µm RMS (±15°, one sweep) to 0.041 µm, all of 20 seeds
    within 0.1 µm, for about twice the Focus exposures.

    With ``sweeps`` > 1 the tilt sweep is repeated and the results averaged (random goniometer
    errors weigh less). A sweep during which the stage jumped (:func:`jump_statistic`) is
    reported and measured again, at most MAX_EXTRA_SWEEPS times. The stage is left at 0° with
    the image shift and focus as they were; the offset is not applied (see
    :func:`apply_tilt_axis_offset`). The image shift must be centred on the tilt axis, as
    SerialEM's "Center image shift on tilt axis" does.
    """
    if step_deg <= 0 or max_tilt_deg < step_deg:
        raise ValueError("need 0 < step_deg <= max_tilt_deg")

    def emit(event: Progress | Message) -> None:
        scope.events.emit(event)
        if on_event is not None:
            on_event(event)

    tilts = interleaved_tilts(max_tilt_deg, step_deg)
    stage = scope.stage
    if eucentricity:
        stage.tilt_to(0.0)
        scope.measurements.eucentricity(fine=False)
    if sweeps < 1:
        raise ValueError("need at least one sweep")
    kept: list[NDArray[np.float64]] = []
    jumped: list[NDArray[np.float64]] = []
    used: list[bool] = []
    previous = stage.tilt_axis_offset_um
    with (
        preserved_optics(scope) as (is_x, is_y),
        temporary_preset(scope, LowDoseArea.FOCUS, offset_along_axis_um=0.0),
    ):
        while len(kept) < sweeps:
            sweep = np.zeros((len(tilts), len(positions_um)))
            for i, tilt in enumerate(tilts):
                if tilt <= stage.position().tilt_deg:  # approach in +: from one step below
                    stage.tilt_to(max(-stage.limits.tilt_deg, tilt - step_deg))
                stage.tilt_to(tilt)
                for j, y in enumerate(positions_um):
                    scope.optics.set_image_shift_um(is_x, is_y + y)
                    sweep[i, j] = scope.measurements.measure_defocus_um()
                emit(
                    Progress(
                        time_s=scope.clock.now_s(),
                        task="axis offset",
                        done=(len(kept) + len(jumped)) * len(tilts) + i + 1,
                        total=(sweeps + len(jumped)) * len(tilts),
                    )
                )
            chi2, at = jump_statistic(tilts, sweep)
            if chi2 <= JUMP_CHI2 or len(jumped) >= MAX_EXTRA_SWEEPS:
                kept.append(sweep)
                used.append(True)
                continue
            jumped.append(sweep)
            used.append(False)
            emit(
                Message(
                    time_s=scope.clock.now_s(),
                    level="warning",
                    text=(
                        f"the stage jumped during the sweep (near {tilts[at]:+g}°, χ² {chi2:.0f}):"
                        " measuring again"
                    ),
                )
            )
        stage.tilt_to(0.0)
    result = fit_axis_offset(tilts, positions_um, np.stack(kept), previous)
    result = replace(result, sweeps_kept=tuple(used))
    spread = max(result.per_position_um) - min(result.per_position_um)
    if spread > 0.5:
        emit(
            Message(
                time_s=scope.clock.now_s(),
                level="warning",
                text=f"the positions disagree by {spread:.2f} µm: check the readings",
            )
        )
    return result


def apply_tilt_axis_offset(scope: Microscope, result: AxisOffsetResult) -> None:
    """Set the measured offset on the stage (SerialEM ``SetTiltAxisOffset``)."""
    if not math.isfinite(result.offset_um):
        raise ValueError("the measured offset is not finite")
    scope.stage.set_tilt_axis_offset_um(result.offset_um)
