"""Seed a tracking model from past tilt series, as Leginon's predictor initialises its model.

UCSF Tomo's model (reference/leginon.md §1.2) is a rigid rotation of the specimen about a
mechanical tilt axis at angle φ, offset by ``o`` from the optical axis; each series ``s`` has its
own height ``z_s``. Before a new series Leginon starts each tilt group (0: start → +, 1: start →
−) from the parameters of earlier series. :func:`seed_model` fits φ, o and the heights to the
measured positions (applied image shift + alignment) of the most recent archived series of the
same pixel size, one group at a time, and returns the starting values a strategy can use:
φ, o, and z0 (the height of the newest series), with the fit's residual and the history of
positions Leginon loads at node start.

Lengths are µm; φ is in degrees, x along the image-shift x axis, as the exposures' columns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import least_squares
from sqlalchemy import select
from sqlalchemy.orm import Session

from tomopilot.store.models import ExposureRow, TiltSeriesRow

GROUPS = ("+", "-")


@dataclass(frozen=True)
class GroupSeed:
    """Starting parameters of one tilt group."""

    group: str
    phi_deg: float
    offset_um: float
    z0_um: float
    n_series: int
    n_points: int
    rms_um: float
    fixed: bool
    """φ and o were held at their prior values (every tilt below 30°, as Leginon's guard)."""


@dataclass
class ModelSeed:
    """Seeds of both groups, and the positions they were fitted to (per series, per group)."""

    groups: dict[str, GroupSeed] = field(default_factory=dict)
    history: dict[int, dict[str, list[tuple[float, float, float]]]] = field(default_factory=dict)
    """series id → group → [(tilt_deg, x_um, y_um)] in acquisition order."""


def model_positions(
    tilt_rad: NDArray[np.float64],
    ref_xy: tuple[float, float],
    ref_tilt_rad: float,
    phi_rad: float,
    offset_um: float,
    z_um: float,
) -> NDArray[np.float64]:
    """Positions (x, y) of a feature under the rigid-rotation model (reference/leginon.md §1.2).

    The reference point is the feature at ``ref_tilt_rad``; it rotates by ``θ − θ_ref``.

    >>> p = model_positions(np.array([0.0]), (1.0, 2.0), 0.0, 0.3, 0.5, 0.2)
    >>> np.allclose(p, [[1.0, 2.0]])
    True
    """
    x_r, y_r = ref_xy
    u_r = x_r * math.cos(phi_rad) + y_r * math.sin(phi_rad) + offset_um
    v_r = -x_r * math.sin(phi_rad) + y_r * math.cos(phi_rad)
    angle = tilt_rad - ref_tilt_rad
    u = u_r * np.cos(angle) - z_um * np.sin(angle) - offset_um
    x = u * math.cos(phi_rad) - v_r * math.sin(phi_rad)
    y = u * math.sin(phi_rad) + v_r * math.cos(phi_rad)
    return np.stack([x, y], axis=-1)


def _group_of(exposure: ExposureRow, start_deg: float) -> str:
    if exposure.branch in GROUPS:
        return exposure.branch
    return "+" if exposure.tilt_deg >= start_deg else "-"


def group_positions(
    exposures: Sequence[ExposureRow],
) -> dict[str, list[tuple[float, float, float]]] | None:
    """Measured positions (tilt °, x µm, y µm) of one series per tilt group, in order."""
    measured = [e for e in exposures if e.measured_x_um is not None and e.measured_y_um is not None]
    if not measured:
        return None
    start = measured[0]
    groups: dict[str, list[tuple[float, float, float]]] = {g: [] for g in GROUPS}
    for exposure in measured:
        point = (
            exposure.tilt_deg,
            float(exposure.measured_x_um or 0.0),
            float(exposure.measured_y_um or 0.0),
        )
        if exposure is start:
            for group in GROUPS:  # the start image opens both groups
                groups[group].append(point)
        else:
            groups[_group_of(exposure, start.tilt_deg)].append(point)
    return groups


def fit_series(exposures: Sequence[ExposureRow], *, min_points: int = 3) -> dict[str, GroupSeed]:
    """The model fitted to one series alone, per group (Leginon's viewer shows φ, offset, z0)."""
    groups = group_positions(exposures)
    out: dict[str, GroupSeed] = {}
    for group, points in (groups or {}).items():
        if len(points) < min_points:
            continue
        free = any(abs(p[0]) >= 30.0 for p in points)
        phi, offset, heights, rms = _fit([points], 0.0, 0.0, free)
        out[group] = GroupSeed(group, phi, offset, heights[0], 1, len(points), rms, not free)
    return out


def _fit(
    series: list[list[tuple[float, float, float]]],
    phi0_deg: float,
    offset0_um: float,
    free: bool,
) -> tuple[float, float, list[float], float]:
    tilts = [np.radians(np.array([p[0] for p in s])) for s in series]
    xy = [np.array([[p[1], p[2]] for p in s]) for s in series]

    def residuals(params: NDArray[np.float64]) -> NDArray[np.float64]:
        phi, offset = (params[0], params[1]) if free else (math.radians(phi0_deg), offset0_um)
        heights = params[2:] if free else params
        out = []
        for t, points, z in zip(tilts, xy, heights, strict=True):
            predicted = model_positions(t, (points[0, 0], points[0, 1]), t[0], phi, offset, z)
            out.append((predicted - points).ravel())
        return np.concatenate(out)

    start = np.zeros(len(series))
    if free:
        start = np.concatenate([[math.radians(phi0_deg), offset0_um], start])
    result = least_squares(residuals, start, method="lm")
    params = result.x
    rms = float(np.sqrt(np.mean(result.fun**2))) if result.fun.size else 0.0
    if free:
        phi = math.atan(math.tan(params[0]))  # φ' in (−90°, 90°), o' flips with cos φ < 0
        offset = float(params[1]) * (1.0 if math.cos(params[0]) >= 0 else -1.0)
        return math.degrees(phi), offset, [float(z) for z in params[2:]], rms
    return phi0_deg, offset0_um, [float(z) for z in params], rms


def seed_model(
    db: Session,
    *,
    pixel_size_a: float | None = None,
    max_series: int = 8,
    phi_deg: float = 0.0,
    offset_um: float = 0.0,
    min_points: int = 3,
    exclude_session_id: int | None = None,
) -> ModelSeed:
    """Fit the model to the newest archived tilt series and return each group's seed.

    Parameters
    ----------
    pixel_size_a
        Use only series of this pixel size (±1 %), as Leginon keeps to one magnification.
    max_series
        At most this many of the newest series per group (Leginon: 8).
    phi_deg, offset_um
        Prior values ("custom values"): the start of the fit, and the answer when every tilt is
        below 30° (the offset cannot be seen at low tilt).
    min_points
        A series needs this many measured positions in a group to take part.
    exclude_session_id
        Leave out a session (the one being acquired, say).
    """
    query = select(TiltSeriesRow).order_by(TiltSeriesRow.id.desc())
    if exclude_session_id is not None:
        query = query.where(TiltSeriesRow.session_id != exclude_session_id)
    seed = ModelSeed()
    per_group: dict[str, list[list[tuple[float, float, float]]]] = {g: [] for g in GROUPS}
    for series in db.scalars(query):
        if pixel_size_a is not None and (
            series.pixel_size_a is None
            or abs(series.pixel_size_a - pixel_size_a) > 0.01 * pixel_size_a
        ):
            continue
        groups = group_positions(series.exposures)
        if groups is None:
            continue
        seed.history[series.id] = groups
        for group in GROUPS:
            if len(groups[group]) >= min_points and len(per_group[group]) < max_series:
                per_group[group].append(groups[group])
    for group in GROUPS:
        chosen = per_group[group]
        if not chosen:
            continue
        free = any(abs(p[0]) >= 30.0 for s in chosen for p in s)
        phi, offset, heights, rms = _fit(chosen, phi_deg, offset_um, free)
        seed.groups[group] = GroupSeed(
            group=group,
            phi_deg=phi,
            offset_um=offset,
            z0_um=heights[0],  # the newest series comes first
            n_series=len(chosen),
            n_points=sum(len(s) for s in chosen),
            rms_um=rms,
            fixed=not free,
        )
    return seed
