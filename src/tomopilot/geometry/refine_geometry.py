"""refineGeo: correct the targets' heights from the defocus their CTF fits measured at α₀.

After the first round of Record images at the start tilt α₀, each target i has a CTF-fitted
defocus dᵢ and an intended defocus Fᵢ (maxDefocus plus the defocus steps between targets,
pacetomo.md §3.2). The residual rᵢ = dᵢ − Fᵢ is what the geometry model got wrong; relative to
target 1 (whose focus was set by autofocus) it is Δrᵢ = rᵢ − r₁. A plane (≥ 3 targets) or a
paraboloid (≥ ``paraboloid_from``) g is fitted to Δr over the targets' positions.

Defocus is focus + z (z along the beam), so a residual of Δr means the target sits Δr deeper
than predicted; at α₀ the lab z of a specimen-frame change δz₀ is δz₀ cos α₀. Hence
z₀ᵢ ← z₀ᵢ + g(xᵢ, yᵢ) / cos α₀.

PACEtomo adds g·cos α₀ + yᵢ sin α₀ instead and does not remove the intended defocus steps
(pacetomo.md §1.4.7 ⚠), which is right only with a single defocus; we remove the steps and
drop the y sin α₀ term.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tomopilot.geometry.plane_fit import (
    ParaboloidFit,
    PlaneFit,
    fit_paraboloid_to_z,
    fit_plane_to_z,
)


@dataclass(frozen=True)
class GeometryRefinement:
    """New heights z₀ (µm, specimen frame, along the beam) and the surface fitted to Δr.

    ``fit`` is fitted to the residuals Δr (so its pretilt is the correction to the specimen's
    pretilt, seen at α₀).
    """

    z0_um: tuple[float, ...]
    corrections_um: tuple[float, ...]
    fit: PlaneFit | ParaboloidFit


def refine_geometry(
    x_um: Sequence[float],
    y_um: Sequence[float],
    measured_defocus_um: Sequence[float],
    intended_defocus_um: Sequence[float],
    z0_um: Sequence[float],
    *,
    start_tilt_deg: float,
    paraboloid_from: int = 9,
) -> GeometryRefinement:
    """Refine the targets' heights from their CTF-fitted defocus (target 1 first).

    Parameters
    ----------
    x_um, y_um
        Targets' specimen coordinates relative to target 1 (target 1 at the origin).
    measured_defocus_um
        CTF-fitted defocus of each target's α₀ image (NaN where the fit failed).
    intended_defocus_um
        The defocus each target was meant to have (with the defocus steps).
    z0_um
        The targets' current heights in the geometry model.
    start_tilt_deg
        α₀.

    Raises
    ------
    GeometryFitError
        If fewer than three targets have a valid measurement.
    """
    measured = np.asarray(measured_defocus_um, np.float64)
    intended = np.asarray(intended_defocus_um, np.float64)
    if not (len(measured) == len(intended) == len(z0_um) == len(x_um) == len(y_um)):
        raise ValueError("every target needs x, y, measured and intended defocus, and z0")
    residual = measured - intended
    if not math.isfinite(residual[0]):
        raise ValueError("target 1 has no valid CTF defocus: it is the reference")
    relative_z = residual - residual[0]
    x, y = np.asarray(x_um, np.float64), np.asarray(y_um, np.float64)
    n_valid = int(np.sum(np.isfinite(relative_z)))
    fit: PlaneFit | ParaboloidFit
    if n_valid >= paraboloid_from:
        fit = fit_paraboloid_to_z(x, y, relative_z, min_points=paraboloid_from)
    else:
        fit = fit_plane_to_z(x, y, relative_z)
    lab_correction = fit.z_um(x, y) - fit.z_um(np.array([x[0]]), np.array([y[0]]))[0]
    correction = lab_correction / math.cos(math.radians(start_tilt_deg))
    new = np.asarray(z0_um, np.float64) + correction
    return GeometryRefinement(
        tuple(float(v) for v in new), tuple(float(v) for v in correction), fit
    )
