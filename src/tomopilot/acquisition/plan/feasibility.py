"""Impossible settings are refused before any exposure, all problems at once.

:func:`check_feasible` looks at the settings together, and with the microscope's limits and the
targets, for what a facility user would otherwise find out an hour into a run: a start tilt off
the step grid, a range beyond the stage limit, an alignment limit as large as the image-shift
limit, a geometry refinement without CTF fits... It raises :class:`ImpossibleSettingsError`
listing every problem, and returns the warnings (settings that run, but probably not as meant).
Messages use PACEtomo's setting names, which the YAML and targets files accept.

Choice for a reversed defocus range (``minDefocus`` more underfocus than ``maxDefocus``): the two
are swapped with a warning, as PACEtomo does (:func:`~tomopilot.acquisition.plan.target_defocus.
defocus_range_um`), since both orders name the same range.

:func:`plan_tilt_range` resolves the start tilt (``tiltTargets``, ``autoStartTilt``) and the
shifted, clipped range; :func:`tilt_scheme_from_settings` builds the :class:`TiltScheme`.

Examples
--------
>>> from tomopilot.acquisition.plan.settings import AcquisitionSettings
>>> s = AcquisitionSettings.model_validate({"startTilt": 10, "maxTilt": 70})
>>> try:
...     check_feasible(s, stage_tilt_limit_deg=60)
... except ImpossibleSettingsError as exc:
...     for problem in exc.problems:
...         print(problem)
maxTilt = 70° is beyond the stage tilt limit of ±60°
startTilt = 10° is not a multiple of step = 3°: use 9° or 12°
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.plan.target_defocus import defocus_range_um
from tomopilot.acquisition.plan.tilt_schemes import (
    TiltScheme,
    auto_start_tilt_deg,
    shifted_tilt_range,
)
from tomopilot.core.errors import ConfigError

logger = logging.getLogger(__name__)

_EPS = 1e-6


class ImpossibleSettingsError(ConfigError):
    """Settings that cannot run; :attr:`problems` lists every one of them."""

    def __init__(self, problems: Sequence[str], *, path: Path | str | None = None) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"impossible settings, nothing was exposed ({count} problem"
            f"{'s' if count != 1 else ''}):\n{lines}",
            path=path,
        )


@dataclass(frozen=True)
class TiltRange:
    """The start tilt and range a run will use, after ``tiltTargets`` / ``autoStartTilt``."""

    start_deg: float
    min_deg: float
    max_deg: float
    adjusted: bool
    """Whether the start tilt was moved (and the range shifted and clipped with it)."""


def _deg(value: float) -> str:
    return f"{value:g}°"


def _is_multiple(value: float, step: float) -> bool:
    return abs(value / step - round(value / step)) < _EPS


def plan_tilt_range(settings: AcquisitionSettings, *, stage_tilt_limit_deg: float) -> TiltRange:
    """The start tilt and range of the run (pacetomo.md §1.2).

    ``tiltTargets`` ≠ 0 becomes the start tilt; otherwise ``autoStartTilt`` computes it from the
    pretilt and rotation (rounded to the step). When the start moves, min and max move with it
    and are clipped to ± the stage limit.
    """
    s = settings
    if s.tilt_targets_deg != 0:
        start = s.tilt_targets_deg
    elif s.auto_start_tilt:
        start = auto_start_tilt_deg(s.pretilt_deg, s.rotation_deg, s.step_deg)
    else:
        return TiltRange(s.start_tilt_deg, s.min_tilt_deg, s.max_tilt_deg, adjusted=False)
    low, high = shifted_tilt_range(
        s.start_tilt_deg, start, s.min_tilt_deg, s.max_tilt_deg, stage_tilt_limit_deg
    )
    return TiltRange(start, low, high, adjusted=True)


def tilt_scheme_from_settings(
    settings: AcquisitionSettings, *, stage_tilt_limit_deg: float
) -> TiltScheme:
    """The :class:`TiltScheme` of the run (call :func:`check_feasible` first)."""
    tilt = plan_tilt_range(settings, stage_tilt_limit_deg=stage_tilt_limit_deg)
    unidirectional = settings.tilt_scheme == "unidirectional"
    return TiltScheme(
        kind=settings.tilt_scheme,
        start_deg=tilt.min_deg if unidirectional else tilt.start_deg,
        min_deg=tilt.min_deg,
        max_deg=tilt.max_deg,
        step_deg=settings.step_deg,
        group_size=settings.group_size,
        slow_tilt=settings.slow_tilt,
    )


def _tilt_problems(
    s: AcquisitionSettings, limit: float, errors: list[str], warnings: list[str]
) -> None:
    if s.step_deg <= 0 or s.group_size < 1:
        errors.append(f"step = {s.step_deg} and groupSize = {s.group_size} must be positive")
        return
    for name, value in (("minTilt", s.min_tilt_deg), ("maxTilt", s.max_tilt_deg)):
        if abs(value) > limit + _EPS:
            errors.append(f"{name} = {_deg(value)} is beyond the stage tilt limit of ±{limit:g}°")
    if s.min_tilt_deg > s.max_tilt_deg:
        errors.append(f"minTilt = {_deg(s.min_tilt_deg)} is above maxTilt = {_deg(s.max_tilt_deg)}")
        return
    tilt = plan_tilt_range(s, stage_tilt_limit_deg=limit)
    origin = "startTilt"
    if s.tilt_targets_deg != 0:
        origin = "tiltTargets (the start tilt when not 0)"
        if s.auto_start_tilt:
            warnings.append("autoStartTilt is ignored: tiltTargets ≠ 0 sets the start tilt")
    elif s.auto_start_tilt:
        origin = "the start tilt computed by autoStartTilt"
        if s.pretilt_deg == 0:
            warnings.append("autoStartTilt with pretilt = 0 keeps the start tilt at 0°")
    if tilt.adjusted:
        logger.info(
            "start tilt %s, range %s…%s (shifted with the start)",
            _deg(tilt.start_deg),
            _deg(tilt.min_deg),
            _deg(tilt.max_deg),
        )
    if abs(tilt.start_deg) > limit + _EPS:
        errors.append(f"{origin} = {_deg(tilt.start_deg)} is beyond the stage limit ±{limit:g}°")
    if s.tilt_scheme != "unidirectional":
        if not _is_multiple(tilt.start_deg, s.step_deg):
            below = math.floor(tilt.start_deg / s.step_deg) * s.step_deg
            errors.append(
                f"{origin} = {_deg(tilt.start_deg)} is not a multiple of step = "
                f"{_deg(s.step_deg)}: use {_deg(below)} or {_deg(below + s.step_deg)}"
            )
        if not tilt.min_deg - _EPS <= tilt.start_deg <= tilt.max_deg + _EPS:
            errors.append(
                f"{origin} = {_deg(tilt.start_deg)} is outside minTilt…maxTilt = "
                f"{_deg(tilt.min_deg)}…{_deg(tilt.max_deg)}"
            )
            return
    first = tilt.min_deg if s.tilt_scheme == "unidirectional" else tilt.start_deg
    for name, end, sign in (("maxTilt", tilt.max_deg, 1), ("minTilt", tilt.min_deg, -1)):
        if not _is_multiple(end - first, s.step_deg):
            reached = first + sign * math.floor(abs(end - first) / s.step_deg + _EPS) * s.step_deg
            warnings.append(
                f"{name} = {_deg(end)} is not a whole number of steps from {_deg(first)}: "
                f"the series ends at {_deg(reached)}"
            )
    if tilt.max_deg - tilt.min_deg < s.step_deg - _EPS:
        warnings.append("the tilt range holds a single image (the start tilt)")
    if tilt.start_deg * s.pretilt_deg > 0:
        warnings.append(
            f"the start tilt {_deg(tilt.start_deg)} has the sign of the pretilt "
            f"{_deg(s.pretilt_deg)}: to compensate a pretilt it needs the opposite sign"
        )


def _defocus_problems(s: AcquisitionSettings, errors: list[str], warnings: list[str]) -> None:
    most, least = defocus_range_um(s)
    if s.min_defocus_um < s.max_defocus_um:
        warnings.append(
            f"minDefocus = {s.min_defocus_um:g} µm is more underfocus than maxDefocus = "
            f"{s.max_defocus_um:g} µm: swapped, as PACEtomo does (maxDefocus is the more "
            "negative)"
        )
    span = least - most
    if span > _EPS and s.step_defocus_um <= 0:
        errors.append(
            f"stepDefocus = {s.step_defocus_um:g} µm cannot cover the defocus range "
            f"{most:g}…{least:g} µm: give a positive step, or the same min and max defocus"
        )
    elif span > _EPS and s.step_defocus_um > span + _EPS:
        warnings.append(
            f"stepDefocus = {s.step_defocus_um:g} µm is larger than the defocus range "
            f"({span:g} µm): every target gets maxDefocus = {most:g} µm"
        )
    if s.track_defocus_um != 0 and s.track_defocus_um >= most:
        warnings.append(
            f"trackDefocus = {s.track_defocus_um:g} µm is ignored: it is used only when more "
            f"underfocus than maxDefocus = {most:g} µm"
        )
    if s.track_mag > 0 and s.track_defocus_um == 0:
        warnings.append(
            "trackMag is set without trackDefocus: a lower tracking magnification usually needs "
            "more defocus for contrast"
        )
    if s.focus_slope_um_per_deg != 0:
        warnings.append("focusSlope is deprecated: correct the tilt-axis offset instead")


def _feature_problems(
    s: AcquisitionSettings, n_geo_points: int | None, errors: list[str], warnings: list[str]
) -> None:
    if s.refine_geometry and not (s.do_ctffind or s.do_ctfplotter):
        errors.append("refineGeo needs CTF fits: set doCtfFind or doCtfPlotter")
    vectors = (
        s.pattern_vec_a_x_um,
        s.pattern_vec_a_y_um,
        s.pattern_vec_b_x_um,
        s.pattern_vec_b_y_um,
    )
    if s.refine_vectors and not s.target_pattern:
        errors.append("refineVec needs tgtPattern (it refines the pattern vectors)")
    elif s.refine_vectors and not any(vectors):
        errors.append("refineVec needs the pattern vectors (vecA0, vecA1, vecB0, vecB1)")
    if s.slit_interval_min > 0 and not s.target_pattern:
        errors.append("slitInterval needs tgtPattern (the slit is refined in a hole beside it)")
    few_points = n_geo_points is not None and n_geo_points < 3
    if s.measure_geometry and not s.target_pattern and few_points:
        warnings.append(
            f"measureGeo needs at least 3 geo points, the targets have {n_geo_points}: "
            "the given pretilt and rotation are used"
        )
    if abs(s.pretilt_deg) >= 30:
        warnings.append(f"pretilt = {_deg(s.pretilt_deg)} is unusually large for a lamella")
    if s.add_autofocus and s.group_size == 1 and s.tilt_scheme == "dose_symmetric":
        warnings.append("addAF never fires with groupSize = 1 (as in PACEtomo)")
    if s.do_ctffind and s.do_ctfplotter:
        warnings.append("doCtfFind and doCtfPlotter are both set: ctfplotter is used")
    if s.delete_final_stack and s.bin_final_stack > 1:
        warnings.append("delFinalStack deletes the stacks, so binFinalStack has no effect")
    if s.cryo_arm and not s.check_dewar:
        warnings.append("cryoARM synchronises dewar refills only when checkDewar is set")
    if s.cold_feg and not s.check_dewar and s.flash_interval_h < 0:
        warnings.append(
            "coldFEG flashes only during dewar refills (flashInterval = -1), which are not "
            "watched without checkDewar: the gun is never flashed"
        )
    if s.track_montage and not s.target_montage:
        warnings.append("tgtTrackMnt has no effect without tgtMontage")


# PACEtomo settings the model accepts (a PACEtomo targets file or script may set them) but a run
# does not act on, with what happens instead. A user who sets one is told so before anything
# is exposed.
NOT_ACTED_ON = {
    "track_use_trial": "the tracking series stays in the Record area",
    "align_to_p": "targets are not aligned to a hole template (buffer P); previewAli aligns "
    "them to their maps and refineVec uses target 1's View as the template",
    "view_align": "targets are aligned to their Preview maps (previewAli), not to View images",
    "realign_to_item": "the set-up realigns to target 1's View whenever the targets name one "
    "(viewfile); there is no Navigator item to realign to",
    "ref_from_preview": "each target's first Record is aligned to its Preview map already",
    "bin_final_stack": "stacks are kept at the binning they were acquired with",
    "delete_final_stack": "stacks are kept",
    "fit_limit_a": "refineGeo refuses weak Thon rings by their correlation, not by resolution",
    "cryo_arm": "dewar refills are handled as the microscope reports them",
    "flash_interval_h": "the gun is flashed when the microscope advises it",
    "target_montage": "montage tilt series are not supported: single images are taken",
}


def _not_acted_on(s: AcquisitionSettings, warnings: list[str]) -> None:
    for name, instead in NOT_ACTED_ON.items():
        field = type(s).model_fields[name]
        if name in s.model_fields_set and getattr(s, name) != field.default:
            warnings.append(f"{field.alias or name} has no effect here: {instead}")


def _target_problems(
    s: AcquisitionSettings,
    is_limit_um: float,
    target_shifts_um: Sequence[tuple[float, float]],
    skipped: Collection[int],
    errors: list[str],
    warnings: list[str],
) -> None:
    reach = is_limit_um - s.align_limit_um
    if not target_shifts_um or reach <= 0:
        return  # no targets given, or already refused for alignLimit
    active = []
    for index, (x, y) in enumerate(target_shifts_um):
        if index in skipped:
            continue
        distance = math.hypot(x, y)
        if distance > reach:
            warnings.append(
                f"target {index + 1} is {distance:.2f} µm from target 1, beyond the image-shift "
                f"limit − alignLimit = {reach:g} µm: it will be skipped"
            )
        else:
            active.append(index)
    if 0 in skipped:
        warnings.append("target 1, the tracking target, is skipped: nothing tracks the others")
    if not active:
        errors.append("no target is left to acquire (all skipped or beyond the image shift)")


def find_problems(
    settings: AcquisitionSettings,
    *,
    stage_tilt_limit_deg: float,
    image_shift_limit_um: float | None = None,
    target_shifts_um: Sequence[tuple[float, float]] = (),
    skipped: Collection[int] = (),
    n_geo_points: int | None = None,
) -> tuple[list[str], list[str]]:
    """(errors, warnings) of a run; see :func:`check_feasible` for the parameters."""
    s = settings
    errors: list[str] = []
    warnings: list[str] = []
    _tilt_problems(s, stage_tilt_limit_deg, errors, warnings)
    _defocus_problems(s, errors, warnings)
    is_limit = s.image_shift_limit_um
    if image_shift_limit_um is not None and image_shift_limit_um < is_limit:
        if "image_shift_limit_um" in s.model_fields_set:
            warnings.append(
                f"imageShiftLimit = {is_limit:g} µm is above the microscope's limit of "
                f"{image_shift_limit_um:g} µm, which applies"
            )
        is_limit = image_shift_limit_um
    if s.align_limit_um >= is_limit:
        errors.append(
            f"alignLimit = {s.align_limit_um:g} µm must be below the image-shift limit "
            f"({is_limit:g} µm): no target could be reached"
        )
    if s.data_points < 1:
        errors.append(f"dataPoints = {s.data_points} must be at least 1")
    _feature_problems(s, n_geo_points, errors, warnings)
    _not_acted_on(s, warnings)
    _target_problems(s, is_limit, target_shifts_um, skipped, errors, warnings)
    return errors, warnings


def check_feasible(
    settings: AcquisitionSettings,
    *,
    stage_tilt_limit_deg: float,
    image_shift_limit_um: float | None = None,
    target_shifts_um: Sequence[tuple[float, float]] = (),
    skipped: Collection[int] = (),
    n_geo_points: int | None = None,
    path: Path | str | None = None,
) -> list[str]:
    """Refuse impossible settings before any exposure; return the warnings.

    Parameters
    ----------
    settings
        The settings, with targets-file overrides applied.
    stage_tilt_limit_deg
        The stage's tilt limit (± degrees).
    image_shift_limit_um
        The microscope's hard image-shift limit; the smaller of it and ``imageShiftLimit``
        applies (a warning says so when ``imageShiftLimit`` was set explicitly above it).
        ``None`` trusts ``imageShiftLimit``.
    target_shifts_um
        (SSX, SSY) of every target relative to target 1, to find targets out of reach.
    skipped
        0-based indices of targets flagged ``skip``.
    n_geo_points
        Number of geo points in the targets file (for ``measureGeo``), when known.
    path
        The configuration file, named in the error.

    Returns
    -------
    list of str
        Warnings: settings that run but probably not as meant (also logged).

    Raises
    ------
    ImpossibleSettingsError
        Listing every problem found.
    """
    errors, warnings = find_problems(
        settings,
        stage_tilt_limit_deg=stage_tilt_limit_deg,
        image_shift_limit_um=image_shift_limit_um,
        target_shifts_um=target_shifts_um,
        skipped=skipped,
        n_geo_points=n_geo_points,
    )
    if errors:
        raise ImpossibleSettingsError(errors, path=path)
    for warning in warnings:
        logger.warning(warning)
    return warnings
