"""Target defocus per tilt series (reference/pacetomo.md §3.2).

Target 1 gets ``maxDefocus`` (the most underfocus); each following target that is not skipped
gets ``stepDefocus`` less underfocus than the one before, wrapping back to ``maxDefocus`` once
the value would pass ``minDefocus``. ``maxDefocus`` is the more negative of the two: when the
two are given the other way round they are swapped, as PACEtomo does
(:func:`tomopilot.acquisition.plan.feasibility.check_feasible` reports it as a warning).

Examples
--------
>>> from tomopilot.acquisition.plan.settings import AcquisitionSettings
>>> s = AcquisitionSettings(min_defocus_um=-3, max_defocus_um=-5, step_defocus_um=0.5)
>>> defocus_per_target(s, 7, skipped={2})
[-5.0, -4.5, None, -4.0, -3.5, -3.0, -5.0]
"""

from __future__ import annotations

from collections.abc import Collection

from tomopilot.acquisition.plan.settings import AcquisitionSettings

_DECIMALS = 6
_EPS = 1e-9


def defocus_range_um(settings: AcquisitionSettings) -> tuple[float, float]:
    """(most underfocus, least underfocus): ``(maxDefocus, minDefocus)``, swapped if needed."""
    low, high = sorted((settings.max_defocus_um, settings.min_defocus_um))
    return low, high


def defocus_per_target(
    settings: AcquisitionSettings, n_targets: int, skipped: Collection[int] = ()
) -> list[float | None]:
    """The target defocus (µm, negative) of each target; ``None`` for a skipped one.

    Parameters
    ----------
    settings
        Uses ``maxDefocus``, ``minDefocus`` and ``stepDefocus``.
    n_targets
        Number of targets in the area (target 1 first).
    skipped
        0-based indices of targets that are not acquired; they do not advance the defocus.

    Notes
    -----
    ``stepDefocus = 0`` gives every target ``maxDefocus``. The values are exact multiples of the
    step (rounded to 1e-6 µm), so that a long run does not drift by rounding.
    """
    if n_targets < 0:
        raise ValueError(f"n_targets must be >= 0, not {n_targets}")
    most, least = defocus_range_um(settings)
    step = settings.step_defocus_um
    out: list[float | None] = []
    k = 0
    for index in range(n_targets):
        if index in skipped:
            out.append(None)
            continue
        value = round(most + k * step, _DECIMALS)
        if value > least + _EPS:
            k, value = 0, most
        out.append(value + 0.0)
        k += 1
    return out


def start_tilt_defocus_um(settings: AcquisitionSettings, target_defocus_um: float) -> float:
    """The target defocus of a target's start-tilt image: shifted by ``zeroDefocus − maxDefocus``
    when ``zeroDefocus`` is set (hybrid schemes), otherwise ``target_defocus_um``."""
    if settings.zero_defocus_um == 0:
        return target_defocus_um
    return target_defocus_um + settings.zero_defocus_um - defocus_range_um(settings)[0]


def tracking_defocus_um(settings: AcquisitionSettings, target_defocus_um: float) -> float:
    """The target defocus of the tracking series: shifted by ``trackDefocus − maxDefocus`` when
    ``trackDefocus`` is more underfocus than ``maxDefocus`` (as PACEtomo), otherwise unchanged."""
    most = defocus_range_um(settings)[0]
    if settings.track_defocus_um == 0 or settings.track_defocus_um >= most:
        return target_defocus_um
    return target_defocus_um + settings.track_defocus_um - most
