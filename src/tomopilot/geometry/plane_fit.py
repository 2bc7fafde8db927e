"""Specimen geometry from defocus measurements: a tilted plane (pretilt, rotation) or a paraboloid.

Conventions
-----------
z is along the beam (down the column), as in the Microscope protocol and PACEtomo's geometry
model, and the defocus of a point is ``focus + z`` (negative = underfocus): with the focus
unchanged between readings, the readings differ exactly by the points' z. The fitted plane is

    z(x, y) = tan(p) · (y cos r − x sin r) + c,

with p the pretilt and r the rotation (CCW positive), the plane PACEtomo's geometry model uses
for the height z₀ of each target (pacetomo.md §1.2, §5.1), so our angles are PACEtomo's. The
pair (p, r) is chosen with |r| ≤ 90°: the same plane is also (−p, r ± 180°). This is
PACEtomo's normalisation n_z > 0 of the plane normal; without it a fit can come out as
±(180° − p) (pacetomo.md §5.1 ⚠).

Examples
--------
>>> import numpy as np
>>> x = np.array([0.0, 4.0, 0.0, -4.0, 0.0]); y = np.array([0.0, 0.0, 4.0, 0.0, -4.0])
>>> defocus = -2.0 + np.tan(np.radians(10.0)) * y     # deeper at +y: less underfocus
>>> fit = fit_plane(x, y, defocus)
>>> round(fit.pretilt_deg, 3), round(fit.rotation_deg, 3)
(10.0, -0.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tomopilot.core.errors import TomopilotError

MAX_PLAUSIBLE_PRETILT_DEG = 30.0
MAX_MEAN_SQUARED_RESIDUAL_UM2 = 1.0  # PACEtomo's GUI warning threshold
PARABOLOID_MIN_POINTS = 9  # PACEtomo's parabolTh


class GeometryFitError(TomopilotError, ValueError):
    """Too few points, or points that cannot define the surface asked for."""


@dataclass(frozen=True)
class FitWarning:
    """A reason to distrust a fit: a short code and a sentence for the user."""

    code: str
    message: str


def angles_from_slopes(slope_x: float, slope_y: float) -> tuple[float, float]:
    """(pretilt, rotation) in degrees of the plane z = slope_x·x + slope_y·y, with |r| ≤ 90°."""
    tan_p = math.hypot(slope_x, slope_y)
    if tan_p == 0.0:
        return 0.0, 0.0
    if slope_y == 0.0:
        return math.degrees(math.atan(-slope_x)), 90.0
    sign = 1.0 if slope_y > 0 else -1.0
    pretilt = sign * math.degrees(math.atan(tan_p))
    rotation = -math.degrees(math.atan(slope_x / slope_y))
    return pretilt, rotation


def slopes_from_angles(pretilt_deg: float, rotation_deg: float) -> tuple[float, float]:
    """(∂z/∂x, ∂z/∂y) of the plane of a pretilt and rotation."""
    t = math.tan(math.radians(pretilt_deg))
    r = math.radians(rotation_deg)
    return -t * math.sin(r), t * math.cos(r)


@dataclass(frozen=True)
class PlaneFit:
    """A plane fitted to z (or defocus) values: z = slope_x·x + slope_y·y + offset (µm).

    Attributes
    ----------
    pretilt_deg, rotation_deg
        The plane's angles (module docstring).
    rms_residual_um
        Root-mean-square vertical residual of the points.
    n_points
        Points used.
    warnings
        Reasons to distrust the fit (implausible angle, large residual, narrow spread).
    """

    slope_x: float
    slope_y: float
    offset_um: float
    rms_residual_um: float
    n_points: int
    warnings: tuple[FitWarning, ...] = field(default=())

    @property
    def pretilt_deg(self) -> float:
        """Pretilt p (degrees)."""
        return angles_from_slopes(self.slope_x, self.slope_y)[0]

    @property
    def rotation_deg(self) -> float:
        """Rotation r (degrees, CCW positive, |r| ≤ 90°)."""
        return angles_from_slopes(self.slope_x, self.slope_y)[1]

    @property
    def normal(self) -> NDArray[np.float64]:
        """Unit normal of the plane with n_z > 0."""
        n = np.array([-self.slope_x, -self.slope_y, 1.0])
        return np.asarray(n / np.linalg.norm(n))

    def z_um(self, x_um: ArrayLike, y_um: ArrayLike) -> NDArray[np.float64]:
        """The plane's z at specimen points relative to the offset (µm, along the beam)."""
        x, y = np.asarray(x_um, np.float64), np.asarray(y_um, np.float64)
        return np.asarray(self.slope_x * x + self.slope_y * y)


@dataclass(frozen=True)
class ParaboloidFit:
    """z = a x + b y + c x² + d y² + e x y + offset (µm); ``coefficients`` = (a, b, c, d, e)."""

    coefficients: tuple[float, float, float, float, float]
    offset_um: float
    rms_residual_um: float
    n_points: int
    warnings: tuple[FitWarning, ...] = field(default=())

    @property
    def pretilt_deg(self) -> float:
        """Pretilt of the tangent plane at the origin (target 1)."""
        return angles_from_slopes(self.coefficients[0], self.coefficients[1])[0]

    @property
    def rotation_deg(self) -> float:
        """Rotation of the tangent plane at the origin."""
        return angles_from_slopes(self.coefficients[0], self.coefficients[1])[1]

    def z_um(self, x_um: ArrayLike, y_um: ArrayLike) -> NDArray[np.float64]:
        """z relative to the offset at specimen points (µm)."""
        x, y = np.asarray(x_um, np.float64), np.asarray(y_um, np.float64)
        a, b, c, d, e = self.coefficients
        return np.asarray(a * x + b * y + c * x**2 + d * y**2 + e * x * y)


def _points(
    x_um: ArrayLike, y_um: ArrayLike, values: ArrayLike, minimum: int, what: str
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    x = np.asarray(x_um, np.float64).ravel()
    y = np.asarray(y_um, np.float64).ravel()
    v = np.asarray(values, np.float64).ravel()
    if not (len(x) == len(y) == len(v)):
        raise GeometryFitError(f"x, y and values differ in length ({len(x)}, {len(y)}, {len(v)})")
    good = np.isfinite(x) & np.isfinite(y) & np.isfinite(v)
    x, y, v = x[good], y[good], v[good]
    if len(x) < minimum:
        raise GeometryFitError(f"a {what} needs at least {minimum} valid points, got {len(x)}")
    return x, y, v


def _common_warnings(
    pretilt_deg: float, mean_sq: float, x: NDArray[np.float64], y: NDArray[np.float64]
) -> list[FitWarning]:
    out: list[FitWarning] = []
    if abs(pretilt_deg) >= MAX_PLAUSIBLE_PRETILT_DEG:
        out.append(
            FitWarning(
                "implausible-pretilt",
                f"pretilt {pretilt_deg:.1f}° is beyond ±{MAX_PLAUSIBLE_PRETILT_DEG:g}°: check the "
                "geo points (on the specimen? away from holes, trenches and dark areas?)",
            )
        )
    if mean_sq > MAX_MEAN_SQUARED_RESIDUAL_UM2:
        out.append(
            FitWarning(
                "large-residual",
                f"mean squared residual {mean_sq:.2f} µm² exceeds "
                f"{MAX_MEAN_SQUARED_RESIDUAL_UM2:g} µm²: the surface is not a plane, or readings "
                "failed",
            )
        )
    span = float(np.sqrt(np.linalg.eigvalsh(np.cov(np.stack([x, y])))[0])) if len(x) > 2 else 0.0
    if span < 1.0:
        out.append(
            FitWarning(
                "narrow-spread",
                f"the points spread only {span:.2f} µm in their narrowest direction: "
                "the angles are poorly determined",
            )
        )
    return out


def _solve(
    design: NDArray[np.float64], values: NDArray[np.float64], what: str
) -> NDArray[np.float64]:
    scale = np.maximum(np.max(np.abs(design), axis=0), 1e-12)
    if np.linalg.matrix_rank(design / scale, tol=1e-9) < design.shape[1]:
        raise GeometryFitError(f"the points are degenerate (collinear) for a {what}")
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    return np.asarray(coef)


def fit_plane_to_z(x_um: ArrayLike, y_um: ArrayLike, height_um: ArrayLike) -> PlaneFit:
    """Least-squares plane through z values (µm). Needs three non-collinear points."""
    x, y, h = _points(x_um, y_um, height_um, 3, "plane")
    design = np.stack([x, y, np.ones_like(x)], axis=1)
    a, b, c = _solve(design, h, "plane")
    residual = h - design @ np.array([a, b, c])
    mean_sq = float(np.mean(residual**2))
    pretilt, _ = angles_from_slopes(float(a), float(b))
    warnings = _common_warnings(pretilt, mean_sq, x, y)
    return PlaneFit(float(a), float(b), float(c), math.sqrt(mean_sq), len(x), tuple(warnings))


def fit_plane(x_um: ArrayLike, y_um: ArrayLike, defocus_um: ArrayLike) -> PlaneFit:
    """Plane through defocus readings taken at one focus setting (z = defocus − focus).

    Parameters
    ----------
    x_um, y_um
        Specimen coordinates of the readings (x along the tilt axis), relative to target 1.
    defocus_um
        Measured defocus (negative = underfocus), all at the same objective focus.
    """
    return fit_plane_to_z(x_um, y_um, np.asarray(defocus_um, np.float64))


def fit_paraboloid_to_z(
    x_um: ArrayLike, y_um: ArrayLike, height_um: ArrayLike, *, min_points: int = 6
) -> ParaboloidFit:
    """Least-squares paraboloid through z values; PACEtomo uses it from 9 points on."""
    x, y, h = _points(x_um, y_um, height_um, max(6, min_points), "paraboloid")
    design = np.stack([x, y, x**2, y**2, x * y, np.ones_like(x)], axis=1)
    coef = _solve(design, h, "paraboloid")
    residual = h - design @ coef
    mean_sq = float(np.mean(residual**2))
    pretilt, _ = angles_from_slopes(float(coef[0]), float(coef[1]))
    warnings = _common_warnings(pretilt, mean_sq, x, y)
    a, b, c, d, e = (float(v) for v in coef[:5])
    return ParaboloidFit(
        (a, b, c, d, e), float(coef[5]), math.sqrt(mean_sq), len(x), tuple(warnings)
    )


def fit_paraboloid(
    x_um: ArrayLike, y_um: ArrayLike, defocus_um: ArrayLike, *, min_points: int = 6
) -> ParaboloidFit:
    """Paraboloid through defocus readings at one focus setting (z = defocus − focus)."""
    return fit_paraboloid_to_z(
        x_um, y_um, np.asarray(defocus_um, np.float64), min_points=min_points
    )


def fit_surface(
    x_um: ArrayLike, y_um: ArrayLike, defocus_um: ArrayLike, *, paraboloid_from: int = 9
) -> PlaneFit | ParaboloidFit:
    """A plane, or a paraboloid once there are ``paraboloid_from`` points (PACEtomo's rule)."""
    n = int(np.sum(np.isfinite(np.asarray(defocus_um, np.float64))))
    if n >= paraboloid_from:
        return fit_paraboloid(x_um, y_um, defocus_um, min_points=paraboloid_from)
    return fit_plane(x_um, y_um, defocus_um)
