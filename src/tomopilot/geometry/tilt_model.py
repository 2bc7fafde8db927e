"""UCSF Tomo's specimen-movement model and its Levenberg–Marquardt fit (leginon.md §1.2–1.3).

A feature is carried by a rigid rotation about a mechanical tilt axis that lies at an angle φ in
the image-shift plane and at a distance ``offset`` from the optical axis. In the rotated frame
(u across the axis, v along it) the feature starts at the reference position of its series,
taken as its untilted state, at height z_s:

- u_r = x_r cos φ + y_r sin φ + o,  v_r = −x_r sin φ + y_r cos φ
- u(θ) = u_r cos θ − z_s sin θ − o,  z(θ) = u_r sin θ + z_s cos θ
- x(θ) = u(θ) cos φ − v_r sin φ,  y(θ) = u(θ) sin φ + v_r cos φ

Positions are image-shift positions in specimen µm with the optical axis at the origin (the
image shift that puts the feature in the centre of the field); heights and offsets are in µm.

:func:`fit_model` fits (φ, o, z_1 … z_S) to the positions of several series at once with
MINPACK's Levenberg–Marquardt (``scipy.optimize.least_squares(method="lm")``), or only the
heights when the model is fixed. :func:`fit_accepted` is the acceptance rule: a new fit replaces
the old parameters only if its height moved by at most ``z0_error_um``, or if the force rule
holds (the first free fit of a clean, straight trajectory).

Examples
--------
>>> import numpy as np
>>> tilts = np.radians(np.arange(0.0, 41.0, 5.0))
>>> x, y, z = model_positions(90.0, 0.4, 1.5, (0.2, -0.3), tilts)
>>> fit = fit_model([SeriesPoints(tilts, x, y, (0.2, -0.3))], 80.0, 0.0)
>>> round(fit.phi_deg, 3), round(fit.offset_um, 3), round(fit.z_um[0], 3)
(90.0, 0.4, 1.5)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import least_squares

FloatArray = NDArray[np.float64]

FORCE_R2 = 0.95


@dataclass(frozen=True)
class TiltModel:
    """One tilt group's parameters: axis angle φ (°), optical-axis offset o and height z0 (µm)."""

    phi_deg: float = 0.0
    offset_um: float = 0.0
    z0_um: float = 0.0

    def reported(self) -> TiltModel:
        """φ folded into (−90°, 90°] as Leginon reports it; the offset flips with cos φ < 0.

        For display: z0 keeps its physical sense, so the folded triple is not a model of the
        same motion when φ was folded (that would need z0 negated, see :func:`fit_model`).
        """
        phi = math.radians(self.phi_deg)
        folded = math.degrees(math.atan(math.tan(phi))) if math.cos(phi) != 0 else 90.0
        offset = -self.offset_um if math.cos(phi) < 0 else self.offset_um
        return TiltModel(folded, offset, self.z0_um)


@dataclass(frozen=True)
class SeriesPoints:
    """The measured positions of one tilt group in one series.

    ``tilts_rad`` and ``x_um``/``y_um`` are the points used in the fit; ``reference_um`` is the
    first measured position of the group in that series (its untilted state in the model).
    """

    tilts_rad: FloatArray
    x_um: FloatArray
    y_um: FloatArray
    reference_um: tuple[float, float]


@dataclass(frozen=True)
class ModelFit:
    """Fitted (φ, o) and one height per series (the current series last)."""

    phi_deg: float
    offset_um: float
    z_um: tuple[float, ...]
    rms_um: float
    fixed: bool

    @property
    def model(self) -> TiltModel:
        """The parameters for the current (last) series."""
        return TiltModel(self.phi_deg, self.offset_um, self.z_um[-1])


def model_positions(
    phi_deg: float,
    offset_um: float,
    z_um: float,
    reference_um: tuple[float, float],
    tilts_rad: FloatArray | Sequence[float],
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Model x, y (image-shift µm) and height z (µm) of a feature at the given tilts."""
    return _positions(math.radians(phi_deg), offset_um, z_um, reference_um, tilts_rad)


def _positions(
    phi_rad: float,
    offset_um: float,
    z_um: float,
    reference_um: tuple[float, float],
    tilts_rad: FloatArray | Sequence[float],
) -> tuple[FloatArray, FloatArray, FloatArray]:
    theta = np.asarray(tilts_rad, dtype=np.float64)
    c, s = math.cos(phi_rad), math.sin(phi_rad)
    xr, yr = reference_um
    ur = xr * c + yr * s + offset_um
    vr = -xr * s + yr * c
    u = ur * np.cos(theta) - z_um * np.sin(theta) - offset_um
    z = ur * np.sin(theta) + z_um * np.cos(theta)
    return u * c - vr * s, u * s + vr * c, z


def fit_model(
    series: Sequence[SeriesPoints],
    phi_deg: float,
    offset_um: float,
    *,
    fixed: bool = False,
) -> ModelFit:
    """Least-squares (φ, o, z_1 … z_S) over ``series`` by Levenberg–Marquardt.

    The model cannot tell φ from φ + 180° (with the offset and heights negated, the feature
    moves the same way, but its height changes in the opposite sense), so the result is put on
    the branch within 90° of the start φ: the start values carry the sense of the tilt.

    φ and o start at the given values (and stay there when ``fixed``); every height starts at
    0. MINPACK's LM needs at least as many residuals as unknowns: a problem with too few points
    is solved with the model fixed, and if that is still under-determined a ValueError is raised.
    """
    if not series:
        raise ValueError("no series to fit")
    n_res = 2 * sum(len(s.tilts_rad) for s in series)
    n_free = len(series) + (0 if fixed else 2)
    if n_res < n_free and not fixed:
        fixed, n_free = True, len(series)
    if n_res < n_free:
        raise ValueError(f"{n_res} residuals cannot determine {n_free} unknowns")
    phi0 = math.radians(phi_deg)

    # φ and o are fitted as changes from their start values, so that every unknown starts at 0
    # and MINPACK's finite differences take absolute steps (a relative step on a start value
    # of 1e-200 would be no step at all).
    def unpack(p: FloatArray) -> tuple[float, float, FloatArray]:
        if fixed:
            return phi0, offset_um, p
        return phi0 + float(p[0]), offset_um + float(p[1]), p[2:]

    def residuals(p: FloatArray) -> FloatArray:
        phi, off, zs = unpack(p)
        parts = []
        for s, z in zip(series, zs, strict=True):
            x, y, _ = _positions(phi, off, float(z), s.reference_um, s.tilts_rad)
            parts.append(s.x_um - x)
            parts.append(s.y_um - y)
        return np.concatenate(parts)

    result = least_squares(residuals, np.zeros(n_free), method="lm")
    phi, off, zs = unpack(np.asarray(result.x, dtype=np.float64))
    # (φ + 180°, −o, −z) moves the feature identically but reverses the sense of the height:
    # keep the branch within 90° of the start angle, whose sense the calibration fixed.
    turns = round((phi - phi0) / math.pi)
    if turns % 2:
        off, zs = -off, -zs
    phi -= turns * math.pi
    rms = float(np.sqrt(np.mean(result.fun**2))) if result.fun.size else 0.0
    return ModelFit(math.degrees(phi), off, tuple(float(z) for z in zs), rms, fixed)


def _r2(a: FloatArray, b: FloatArray) -> float:
    """Squared Pearson correlation (0 when either is constant)."""
    if a.size < 2 or np.std(a) == 0 or np.std(b) == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1] ** 2)


def straight_trajectory(tilts_rad: FloatArray, x_um: FloatArray, y_um: FloatArray) -> bool:
    """The force rule's test: without the first point, the positions lie on a line and move
    along it with θ.

    Leginon asks max(r²(θ, x), r²(θ, y)) > 0.95 and r²(x, y) > 0.95, which fails whenever the
    axis lies along x or y on the image (one coordinate then holds only noise). The same test
    is made here in the frame of the trajectory's principal axes: r²(θ, p) > 0.95 for the
    position p along the main axis, and ((λ₁ − λ₂)/(λ₁ + λ₂))² > 0.95 for the eigenvalues of
    the positions' covariance (which is r²(x, y) of a line at 45° to the image axes).
    """
    t = np.asarray(tilts_rad[1:], dtype=np.float64)
    xy = np.column_stack([x_um[1:], y_um[1:]]).astype(np.float64)
    if t.size < 3:
        return False
    xy -= xy.mean(axis=0)
    values, vectors = np.linalg.eigh(xy.T @ xy)
    if values[1] <= 0:
        return False
    line = float(((values[1] - values[0]) / (values[1] + values[0])) ** 2)
    along = xy @ vectors[:, 1]
    return _r2(t, along) > FORCE_R2 and line > FORCE_R2


def fit_accepted(old_z0_um: float, new_z0_um: float, z0_error_um: float, force: bool) -> bool:
    """Leginon's rule: keep a new fit if z0 moved by ≤ ``z0_error_um`` or the force flag is set."""
    return force or (new_z0_um - old_z0_um) ** 2 <= z0_error_um**2


def quadratic_extrapolation(tilts_rad: FloatArray, values: FloatArray, at_rad: float) -> float:
    """Value at ``at_rad`` of the least-squares quadratic in θ (basis 1, θ, θ²) through the points.

    With fewer than three points the polynomial's degree drops to what they determine.
    """
    degree = min(2, len(tilts_rad) - 1)
    if degree < 0:
        raise ValueError("no points to extrapolate from")
    basis = np.vander(np.asarray(tilts_rad, dtype=np.float64), degree + 1, increasing=True)
    coef, *_ = np.linalg.lstsq(basis, np.asarray(values, dtype=np.float64), rcond=None)
    return float(np.polyval(coef[::-1], at_rad))
