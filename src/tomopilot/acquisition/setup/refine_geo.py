"""PACEtomo's ``refineGeo`` in a run: the targets' heights corrected from their start Records.

After every target's first Record at the start tilt α₀, each Record's Thon rings give its
defocus; against the defocus it was meant to have (maxDefocus plus the target's defocus step,
which PACEtomo forgets to remove), the residuals relative to target 1 are fitted with a plane
(or a paraboloid from ``parabolTh`` fits on) over the targets' positions, and every target's
height z₀ is corrected by the fitted surface (:func:`~tomopilot.geometry.refine_geometry`).
A fit with fewer than three good Records, or one the geometry layer distrusts, changes nothing.
As in PACEtomo, ``pace`` takes the new z₀ for its predictions from the next tilt on; the focus
it already set is not changed. ``fused`` needs none of it: it folds every Record's fit into
each target's depth as it goes.
PACEtomo also drops fits worse than ``fitLimit`` in resolution; our ring fit has no resolution
estimate and refuses weak rings by their correlation score instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.strategies.base import ExposureRequest, TargetInfo
from tomopilot.geometry import GeometryFitError, refine_geometry


def height_corrections(
    start_round: dict[int, tuple[float | None, ExposureRequest]],
    targets: Sequence[TargetInfo],
    settings: AcquisitionSettings,
    start_tilt_deg: float,
) -> tuple[dict[int, float] | None, str]:
    """Corrections of z₀ (µm, specimen frame) per target, or None, and a one-line account.

    ``start_round`` holds, per target, its start Record's fitted defocus (None where the rings
    were too weak) and the request it was taken with.
    """
    order = [t for t in targets if t.index in start_round]
    if not order or order[0].index != 1:
        return None, "target 1 has no start Record: nothing refined"
    fitted = [start_round[t.index][0] for t in order]
    measured = [math.nan if defocus is None else defocus for defocus in fitted]
    n_fits = sum(math.isfinite(d) for d in measured)
    try:
        result = refine_geometry(
            [t.ss_um[0] for t in order],
            [t.ss_um[1] for t in order],
            measured,
            [start_round[t.index][1].target_defocus_um for t in order],
            [0.0] * len(order),
            start_tilt_deg=start_tilt_deg,
            paraboloid_from=settings.paraboloid_threshold,
        )
    except (GeometryFitError, ValueError) as exc:
        return None, f"{n_fits} of {len(order)} CTF fits: {exc}"
    if result.fit.warnings:
        reasons = "; ".join(w.message for w in result.fit.warnings)
        return None, f"fit distrusted ({reasons}): heights kept"
    corrections = {t.index: c for t, c in zip(order, result.corrections_um, strict=True)}
    largest = max(abs(c) for c in corrections.values())
    return corrections, (
        f"{n_fits} CTF fits; heights corrected by up to {largest * 1e3:.0f} nm "
        f"(fit RMS {result.fit.rms_residual_um * 1e3:.0f} nm)"
    )
