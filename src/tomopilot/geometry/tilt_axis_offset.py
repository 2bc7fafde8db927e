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

Tilts approach −T from −T − Δ and then step up, so every reading comes after a move in +.
Run-out of the goniometer in z that grows linearly with the tilt is indistinguishable from an
axis offset over a small range, as on a real microscope.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
        The estimate from tilts ≤ 0° and ≥ 0° alone.
    eucentric_error_um
        z₀: the specimen's depth below the tilt axis (µm, along the beam).
    tilts_deg, positions_um, defocus_um
        The raw readings: defocus_um[k, i, j] of sweep k at tilts_deg[i] and position j.
    """

    offset_um: float
    previous_offset_um: float
    per_position_um: tuple[float, ...]
    negative_branch_um: float
    positive_branch_um: float
    eucentric_error_um: float
    tilts_deg: tuple[float, ...]
    positions_um: tuple[float, ...]
    defocus_um: NDArray[np.float64]

    @property
    def correction_um(self) -> float:
        """How far the offset moves if applied."""
        return self.offset_um - self.previous_offset_um


def _fit(tilts_deg: NDArray[np.float64], defocus: NDArray[np.float64]) -> tuple[float, float]:
    """(u, z₀) of d(θ) = c − u tan θ + z₀ (sec θ − 1) by least squares."""
    t = np.radians(tilts_deg)
    design = np.stack([np.ones_like(t), -np.tan(t), 1.0 / np.cos(t) - 1.0], axis=1)
    if np.ptp(tilts_deg) < 20.0:  # too little curvature to tell z₀ apart: fit the slope only
        design = design[:, :2]
    coef, *_ = np.linalg.lstsq(design, defocus, rcond=None)
    z0 = float(coef[2]) if len(coef) > 2 else 0.0
    return float(coef[1]), z0


def fit_axis_offset(
    tilts_deg: Sequence[float],
    positions_um: Sequence[float],
    defocus_um: NDArray[np.float64],
    previous_offset_um: float,
) -> AxisOffsetResult:
    """Turn readings into an offset.

    ``defocus_um[k, i, j]`` is the reading of sweep k at tilts_deg[i] and image-shift y
    position j (a 2D array is one sweep). Each sweep is fitted on its own (the stage may have
    moved between sweeps) and the median over sweeps is taken, which also discards a sweep
    spoiled by a sudden stage jump.
    """
    tilts = np.asarray(tilts_deg, np.float64)
    readings = np.asarray(defocus_um, np.float64)
    if readings.ndim == 2:
        readings = readings[None]

    def estimate(mask: NDArray[np.bool_], j: int) -> tuple[float, float]:
        fits = [_fit(tilts[mask], sweep[mask, j]) for sweep in readings]
        return float(np.median([f[0] for f in fits])), float(np.median([f[1] for f in fits]))

    everything = np.ones(len(tilts), bool)
    per_position: list[float] = []
    depths: list[float] = []
    for j, y in enumerate(positions_um):
        u, z0 = estimate(everything, j)
        per_position.append(previous_offset_um + float(y) + u)
        depths.append(z0)

    def branch(mask: NDArray[np.bool_]) -> float:
        return float(
            np.mean(
                [
                    previous_offset_um + float(y) + estimate(mask, j)[0]
                    for j, y in enumerate(positions_um)
                ]
            )
        )

    return AxisOffsetResult(
        offset_um=float(np.mean(per_position)),
        previous_offset_um=previous_offset_um,
        per_position_um=tuple(per_position),
        negative_branch_um=branch(tilts <= 0.0),
        positive_branch_um=branch(tilts >= 0.0),
        eucentric_error_um=float(np.mean(depths)),
        tilts_deg=tuple(float(t) for t in tilts),
        positions_um=tuple(float(y) for y in positions_um),
        defocus_um=readings,
    )


def measure_tilt_axis_offset(
    scope: Microscope,
    *,
    max_tilt_deg: float = 15.0,
    step_deg: float = 5.0,
    positions_um: Sequence[float] = (0.0, -5.0, 5.0),
    sweeps: int = 1,
    eucentricity: bool = True,
    on_event: Callable[[Progress | Message], None] | None = None,
) -> AxisOffsetResult:
    """Measure the tilt-axis offset on ``scope`` (PACEtomo's measureOffset, pacetomo.md §5.2).

    With ``sweeps`` > 1 the tilt sweep is repeated and the median taken (random goniometer
    errors and jumps weigh less). The stage is left at 0° with the image shift and focus as
    they were; the offset is not applied (see :func:`apply_tilt_axis_offset`). The image shift
    must be centred on the tilt axis, as SerialEM's "Center image shift on tilt axis" does.
    """
    if step_deg <= 0 or max_tilt_deg < step_deg:
        raise ValueError("need 0 < step_deg <= max_tilt_deg")

    def emit(event: Progress | Message) -> None:
        scope.events.emit(event)
        if on_event is not None:
            on_event(event)

    n_steps = round(max_tilt_deg / step_deg)
    tilts = [step_deg * k for k in range(-n_steps, n_steps + 1)]
    stage = scope.stage
    if eucentricity:
        stage.tilt_to(0.0)
        scope.measurements.eucentricity(fine=False)
    if sweeps < 1:
        raise ValueError("need at least one sweep")
    readings = np.zeros((sweeps, len(tilts), len(positions_um)))
    previous = stage.tilt_axis_offset_um
    with (
        preserved_optics(scope) as (is_x, is_y),
        temporary_preset(scope, LowDoseArea.FOCUS, offset_along_axis_um=0.0),
    ):
        for k in range(sweeps):
            stage.tilt_to(max(-stage.limits.tilt_deg, tilts[0] - step_deg))
            for i, tilt in enumerate(tilts):
                stage.tilt_to(tilt)
                for j, y in enumerate(positions_um):
                    scope.optics.set_image_shift_um(is_x, is_y + y)
                    readings[k, i, j] = scope.measurements.measure_defocus_um()
                emit(
                    Progress(
                        time_s=scope.clock.now_s(),
                        task="axis offset",
                        done=k * len(tilts) + i + 1,
                        total=sweeps * len(tilts),
                    )
                )
        stage.tilt_to(0.0)
    result = fit_axis_offset(tilts, positions_um, readings, previous)
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
