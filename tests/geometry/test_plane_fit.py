"""Plane and paraboloid fits: conventions, warnings, degenerate input, refineGeo."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tomopilot.geometry import (
    GeometryFitError,
    fit_paraboloid,
    fit_plane,
    fit_surface,
    refine_geometry,
    slopes_from_angles,
)
from tomopilot.geometry.plane_fit import ParaboloidFit, PlaneFit

XS = np.array([0.0, 4.0, -4.0, 3.0, -3.0, 1.0])
YS = np.array([0.0, 3.0, 3.0, -4.0, -2.0, 5.0])


def _heights(pretilt_deg: float, rotation_deg: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    t, r = math.tan(math.radians(pretilt_deg)), math.radians(rotation_deg)
    return t * (y * math.cos(r) - x * math.sin(r))


@given(
    st.floats(-40, 40).filter(lambda p: abs(p) > 0.05),
    st.floats(-89.5, 89.5),
    st.floats(-5, 5),
)
def test_fit_recovers_pretilt_and_rotation(pretilt: float, rotation: float, focus: float) -> None:
    defocus = focus + _heights(pretilt, rotation, XS, YS)  # defocus = focus + z
    fit = fit_plane(XS, YS, defocus)
    assert fit.pretilt_deg == pytest.approx(pretilt, abs=1e-6)
    assert fit.rotation_deg == pytest.approx(rotation, abs=1e-5)
    assert fit.normal[2] > 0  # PACEtomo's normalisation
    assert fit.z_um(XS, YS) - fit.z_um(0, 0) == pytest.approx(
        _heights(pretilt, rotation, XS, YS), abs=1e-9
    )


@given(st.floats(-40, 40), st.floats(-180, 180))
def test_angles_and_slopes_describe_the_same_plane(pretilt: float, rotation: float) -> None:
    a, b = slopes_from_angles(pretilt, rotation)
    fit = fit_plane(XS, YS, a * XS + b * YS)
    again = slopes_from_angles(fit.pretilt_deg, fit.rotation_deg)
    assert again == pytest.approx((a, b), abs=1e-9)
    assert abs(fit.rotation_deg) <= 90.0 + 1e-9


def test_implausible_and_noisy_fits_warn() -> None:
    steep = fit_plane(XS, YS, _heights(50.0, 0.0, XS, YS))
    assert {w.code for w in steep.warnings} == {"implausible-pretilt"}
    rng = np.random.default_rng(1)
    noisy = fit_plane(XS, YS, rng.normal(0, 3.0, XS.size))
    assert "large-residual" in {w.code for w in noisy.warnings}
    narrow = fit_plane([0, 0.1, 0.2, 0.3], [0, 2, 4.1, 6], [0, 0.1, 0.2, 0.31])
    assert "narrow-spread" in {w.code for w in narrow.warnings}


def test_degenerate_points_are_refused() -> None:
    with pytest.raises(GeometryFitError, match="at least 3"):
        fit_plane([0, 1], [0, 1], [0, 1])
    with pytest.raises(GeometryFitError, match="collinear"):
        fit_plane([0, 1, 2, 3], [0, 2, 4, 6], [0, 1, 2, 3])
    with pytest.raises(GeometryFitError, match="at least 3"):
        fit_plane([0, 1, 2], [0, 1, 5], [0, np.nan, 1])


def test_paraboloid_from_nine_points() -> None:
    gx, gy = np.meshgrid([-4.0, 0.0, 4.0], [-3.0, 0.0, 3.0])
    x, y = gx.ravel(), gy.ravel()
    coef = (0.05, -0.17, 0.01, -0.02, 0.005)
    height = coef[0] * x + coef[1] * y + coef[2] * x**2 + coef[3] * y**2 + coef[4] * x * y
    fit = fit_surface(x, y, 1.0 + height)
    assert isinstance(fit, ParaboloidFit)
    assert fit.coefficients == pytest.approx(coef, abs=1e-9)
    assert isinstance(fit_surface(x[:8], y[:8], 1.0 + height[:8]), PlaneFit)
    with pytest.raises(GeometryFitError):
        fit_paraboloid(x[:5], y[:5], height[:5])


def test_refine_geometry_removes_intended_defocus_steps() -> None:
    x = np.array([0.0, 3.0, -3.0, 0.0, 2.0])
    y = np.array([0.0, 0.0, 1.0, 4.0, -3.0])
    alpha0 = -10.0
    error = _heights(2.0, 0.0, x, y)  # the model missed 2° of pretilt (specimen frame)
    intended = np.array([-5.0, -4.5, -4.0, -3.5, -3.0])  # defocus steps between targets
    lab = error * math.cos(math.radians(alpha0))
    measured = intended + lab  # deeper than predicted (z along the beam) → less underfocus
    z0 = np.zeros(5)
    refined = refine_geometry(x, y, measured, intended, z0, start_tilt_deg=alpha0)
    assert refined.z0_um == pytest.approx(error, abs=1e-9)
    assert refined.fit.pretilt_deg == pytest.approx(
        math.degrees(math.atan(math.tan(math.radians(2.0)) * math.cos(math.radians(alpha0)))),
        abs=1e-6,
    )
    # without removing the steps (PACEtomo's refineGeo) the heights come out wrong
    naive = refine_geometry(x, y, measured, np.full(5, -5.0), z0, start_tilt_deg=alpha0)
    assert max(abs(a - b) for a, b in zip(naive.z0_um, error, strict=True)) > 0.1
