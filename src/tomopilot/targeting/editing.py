"""Editing a target set: skip, make another target the tracking target, reorder, copy a
pattern to other Navigator points ("Copy to Acq"), and settings overrides (``_set``/``_bset``).

Every function returns a new :class:`~tomopilot.targeting.targets.TargetSet`; the input is left
unchanged. Specimen shifts are always relative to target 1, so making a different target the
first re-expresses every shift (and every geo point) relative to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tomopilot.targeting.errors import TargetingError
from tomopilot.targeting.targets import GeoPoint, TargetSet, name_files


class TargetEditError(TargetingError):
    """An edit that does not make sense (an index out of range, a bad order)."""


def _check_index(targets: TargetSet, index: int) -> None:
    if not 0 <= index < len(targets.targets):
        raise TargetEditError(
            f"target {index + 1} does not exist (there are {len(targets.targets)})"
        )


def set_skip(targets: TargetSet, indices: Iterable[int], skip: bool = True) -> TargetSet:
    """Mark targets (0-based indices) to be skipped, or not."""
    out = targets.model_copy(deep=True)
    for index in indices:
        _check_index(out, index)
        out.targets[index].skip = skip
    return out


def reorder(targets: TargetSet, order: Sequence[int]) -> TargetSet:
    """Put the targets in a new order (a permutation of 0-based indices).

    If the first target changes, every specimen shift and geo point is re-expressed relative
    to the new target 1.
    """
    if sorted(order) != list(range(len(targets.targets))):
        raise TargetEditError(
            f"the order must list each of the {len(targets.targets)} targets once, "
            f"got {list(order)}"
        )
    out = targets.model_copy(deep=True)
    out.targets = [out.targets[i] for i in order]
    ox, oy = out.targets[0].ss_um if out.targets else (0.0, 0.0)
    if (ox, oy) != (0.0, 0.0):
        for target in out.targets:
            target.ss_x_um -= ox
            target.ss_y_um -= oy
        out.geo_points = [
            GeoPoint(ss_x_um=g.ss_x_um - ox, ss_y_um=g.ss_y_um - oy) for g in out.geo_points
        ]
    return out


def make_tracking(targets: TargetSet, index: int) -> TargetSet:
    """Make target ``index`` (0-based) the tracking target; the others keep their order."""
    _check_index(targets, index)
    order = [index] + [i for i in range(len(targets.targets)) if i != index]
    out = reorder(targets, order)
    out.targets[0].skip = False
    return out


def set_overrides(
    targets: TargetSet,
    numbers: dict[str, float] | None = None,
    booleans: dict[str, bool] | None = None,
    remove: Iterable[str] = (),
) -> TargetSet:
    """Add, change or remove ``_set`` (numeric) and ``_bset`` (boolean) overrides."""
    out = targets.model_copy(deep=True)
    for name in remove:
        out.settings.pop(name, None)
        out.bool_settings.pop(name, None)
    for name, value in (numbers or {}).items():
        if not name.isidentifier():
            raise TargetEditError(f"{name!r} is not a setting name")
        out.bool_settings.pop(name, None)
        out.settings[name] = float(value)
    for name, flag in (booleans or {}).items():
        if not name.isidentifier():
            raise TargetEditError(f"{name!r} is not a setting name")
        out.settings.pop(name, None)
        out.bool_settings[name] = bool(flag)
    return out


def copy_to_points(
    targets: TargetSet, stage_points_um: Sequence[tuple[float, float]], root: str
) -> list[tuple[str, TargetSet]]:
    """PACEtomo's "Copy to Acq": the same pattern at other Navigator points.

    Returns ``(file name, target set)`` pairs: ``<root>_tgts_pNN.txt`` whose targets keep the
    pattern's specimen shifts, with target 1 at the point's stage position and tilt-series
    files ``<root>_pNN_ts_NNN.mrc``.
    """
    out = []
    for number, (x, y) in enumerate(stage_points_um, start=1):
        copy = name_files(targets, f"{root}_p{number:02d}", maps=False)
        for target in copy.targets:
            target.stage_x_um = None
            target.stage_y_um = None
            target.branches = {}
        copy.targets[0].stage_x_um = float(x)
        copy.targets[0].stage_y_um = float(y)
        copy.spos = None
        out.append((f"{root}_tgts_p{number:02d}.txt", copy))
    return out
