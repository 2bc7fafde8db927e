"""Tilt schemes: the order in which the stage visits its angles, and how it approaches them.

Three schemes are built here as plain lists of :class:`TiltStep`:

- :func:`dose_symmetric`, PACEtomo's grouped dose-symmetric order (reference/pacetomo.md §2):
  the start tilt, then ``group_size`` steps up the positive branch, ``group_size`` steps down the
  negative branch, and so on. Once the short branch of an asymmetric range has ended, the
  remaining groups of the long branch come back-to-back. A limit that is not a whole number of
  steps from the start is truncated toward the start.
- :func:`bidirectional`: the start tilt, one whole branch, then the other.
- :func:`unidirectional`: from ``min_deg`` up to ``max_deg``.

Every step carries its backlash-safe approach: where to tilt first so that the final move is in
the + direction (PACEtomo tilts to v − step, then to v, for every negative tilt; ``slow_tilt``
does the same for positive tilts).

:class:`TiltScheme` is the declarative, serialisable form; its :class:`TiltController` hands the
steps to the engine one at a time and skips, without tilting, the steps of a branch the engine
has ended (every target's branch aborted).

Examples
--------
>>> [s.tilt_deg for s in dose_symmetric(0, -12, 12, 3, 2)]
[0.0, 3.0, 6.0, -3.0, -6.0, 9.0, 12.0, -9.0, -12.0]
>>> auto_start_tilt_deg(-10.0, 0.0, 3.0)
9.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from tomopilot.core.config import ConfigModel

Branch = Literal["start", "+", "-"]
SchemeKind = Literal["dose_symmetric", "bidirectional", "unidirectional"]

_DECIMALS = 6  # angles are rounded to µdeg so that 0.1 + 0.2 lands on 0.3
_EPS = 1e-6


@dataclass(frozen=True)
class TiltStep:
    """One stage tilt of a scheme.

    Attributes
    ----------
    tilt_deg
        The nominal stage tilt.
    branch
        ``"start"`` for the first image, ``"+"`` above the start tilt, ``"-"`` below it.
    index
        Position in the acquisition order of the whole scheme (0 for the first image).
    group
        The group the step belongs to: 0 for the start tilt; in the dose-symmetric scheme the
        n-th repetition of "g steps up, g steps down" is group n; in the bidirectional scheme the
        first branch is group 1 and the second group 2; unidirectional steps are all group 1.
    approach_deg
        Where to tilt first so that the final move to ``tilt_deg`` is in +; ``None`` when the
        move from the previous step is already in +.
    branch_step
        The number of steps from the start tilt along the branch (k-th image of the branch;
        0 for the start tilt).
    """

    tilt_deg: float
    branch: Branch
    index: int
    group: int
    approach_deg: float | None
    branch_step: int


def _angle(value: float) -> float:
    return round(value, _DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0


def _steps_within(span_deg: float, step_deg: float) -> int:
    """How many whole steps fit in ``span_deg`` (truncated; 0 for a negative span)."""
    return max(0, math.floor(span_deg / step_deg + _EPS))


def _check(start_deg: float, min_deg: float, max_deg: float, step_deg: float) -> None:
    if not step_deg > 0:
        raise ValueError(f"the tilt step must be positive, not {step_deg}")
    if not min_deg - _EPS <= start_deg <= max_deg + _EPS:
        raise ValueError(
            f"the start tilt {start_deg}° is outside the range [{min_deg}°, {max_deg}°]"
        )


def _approach(
    tilt_deg: float, previous_deg: float | None, step_deg: float, slow_tilt: bool
) -> float | None:
    """The backlash-safe approach to ``tilt_deg`` coming from ``previous_deg``."""
    if previous_deg is None or previous_deg > tilt_deg + _EPS or slow_tilt:
        return _angle(tilt_deg - step_deg)
    return None


def _finish(
    raw: Iterable[tuple[float, Branch, int, int]], step_deg: float, slow_tilt: bool
) -> list[TiltStep]:
    """Number the raw (tilt, branch, group, branch_step) tuples and add their approaches."""
    steps: list[TiltStep] = []
    previous: float | None = None
    for index, (tilt, branch, group, branch_step) in enumerate(raw):
        # A start tilt is always approached from below, whatever the stage did before.
        approach = _approach(tilt, previous, step_deg, slow_tilt or branch == "start")
        steps.append(TiltStep(_angle(tilt), branch, index, group, approach, branch_step))
        previous = tilt
    return steps


def dose_symmetric(
    start_deg: float,
    min_deg: float,
    max_deg: float,
    step_deg: float,
    group_size: int,
    *,
    slow_tilt: bool = False,
) -> list[TiltStep]:
    """PACEtomo's grouped dose-symmetric order, positive branch first.

    Parameters
    ----------
    start_deg, min_deg, max_deg
        The start tilt and the absolute limits of the range (min ≤ start ≤ max).
    step_deg
        The tilt increment (> 0).
    group_size
        Images taken contiguously on one branch before switching (≥ 1).
    slow_tilt
        Approach positive tilts from one step below too (PACEtomo ``slowTilt``).

    Returns
    -------
    list of TiltStep
        1 + ⌊(max − start)/step⌋ + ⌊(start − min)/step⌋ steps.

    Examples
    --------
    >>> [s.tilt_deg for s in dose_symmetric(9, -3, 18, 3, 2)]
    [9.0, 12.0, 15.0, 6.0, 3.0, 18.0, 0.0, -3.0]
    """
    _check(start_deg, min_deg, max_deg, step_deg)
    if group_size < 1:
        raise ValueError(f"the group size must be at least 1, not {group_size}")
    n_plus = _steps_within(max_deg - start_deg, step_deg)
    n_minus = _steps_within(start_deg - min_deg, step_deg)
    n_groups = math.ceil(max(n_plus, n_minus) / group_size)
    raw: list[tuple[float, Branch, int, int]] = [(start_deg, "start", 0, 0)]
    for group in range(1, n_groups + 1):
        ks = range((group - 1) * group_size + 1, group * group_size + 1)
        raw += [(start_deg + k * step_deg, "+", group, k) for k in ks if k <= n_plus]
        raw += [(start_deg - k * step_deg, "-", group, k) for k in ks if k <= n_minus]
    return _finish(raw, step_deg, slow_tilt)


def bidirectional(
    start_deg: float,
    min_deg: float,
    max_deg: float,
    step_deg: float,
    first: Literal["+", "-"] = "+",
    *,
    slow_tilt: bool = False,
) -> list[TiltStep]:
    """The classic bidirectional order: the start tilt, the ``first`` branch, then the other.

    Examples
    --------
    >>> [s.tilt_deg for s in bidirectional(0, -6, 6, 3)]
    [0.0, 3.0, 6.0, -3.0, -6.0]
    >>> [s.approach_deg for s in bidirectional(0, -6, 6, 3)]
    [-3.0, None, None, -6.0, -9.0]
    """
    _check(start_deg, min_deg, max_deg, step_deg)
    n_plus = _steps_within(max_deg - start_deg, step_deg)
    n_minus = _steps_within(start_deg - min_deg, step_deg)
    plus_first = first == "+"
    plus_group, minus_group = (1, 2) if plus_first else (2, 1)
    plus: list[tuple[float, Branch, int, int]] = [
        (start_deg + k * step_deg, "+", plus_group, k) for k in range(1, n_plus + 1)
    ]
    minus: list[tuple[float, Branch, int, int]] = [
        (start_deg - k * step_deg, "-", minus_group, k) for k in range(1, n_minus + 1)
    ]
    raw: list[tuple[float, Branch, int, int]] = [(start_deg, "start", 0, 0)]
    raw += plus + minus if plus_first else minus + plus
    return _finish(raw, step_deg, slow_tilt)


def unidirectional(
    min_deg: float, max_deg: float, step_deg: float, *, slow_tilt: bool = False
) -> list[TiltStep]:
    """From ``min_deg`` up to ``max_deg`` (truncated to whole steps); the first is the start.

    Examples
    --------
    >>> [s.tilt_deg for s in unidirectional(-6, 5, 3)]
    [-6.0, -3.0, 0.0, 3.0]
    """
    _check(min_deg, min_deg, max_deg, step_deg)
    n = _steps_within(max_deg - min_deg, step_deg)
    raw: list[tuple[float, Branch, int, int]] = [(min_deg, "start", 0, 0)]
    raw += [(min_deg + k * step_deg, "+", 1, k) for k in range(1, n + 1)]
    return _finish(raw, step_deg, slow_tilt)


def auto_start_tilt_deg(pretilt_deg: float, rotation_deg: float, step_deg: float) -> float:
    """The start tilt that compensates a lamella pretilt (PACEtomo ``autoStartTilt``).

    α₀ = −atan(tan p · cos r), rounded to the nearest multiple of the step (halves to even, as
    Python's ``round``). PACEtomo rounds to whole degrees only; rounding to the step keeps the
    start tilt on the step grid, which tomopilot requires (for a 1° step both agree).

    Examples
    --------
    >>> auto_start_tilt_deg(-10.0, 0.0, 1.0), auto_start_tilt_deg(12.0, 30.0, 2.0)
    (10.0, -10.0)
    """
    if not step_deg > 0:
        raise ValueError(f"the tilt step must be positive, not {step_deg}")
    p_rad, r_rad = math.radians(pretilt_deg), math.radians(rotation_deg)
    alpha_deg = -math.degrees(math.atan(math.tan(p_rad) * math.cos(r_rad)))
    return _angle(round(alpha_deg / step_deg) * step_deg)


def shifted_tilt_range(
    old_start_deg: float,
    new_start_deg: float,
    min_deg: float,
    max_deg: float,
    stage_limit_deg: float,
) -> tuple[float, float]:
    """Shift (min, max) with the start tilt and clip them to ± the stage limit (pacetomo §1.2).

    PACEtomo clips to the whole-degree part of the limit; so does this.

    Examples
    --------
    >>> shifted_tilt_range(0, 9, -60, 60, 70)
    (-51.0, 69.0)
    >>> shifted_tilt_range(0, 9, -60, 60, 60.5)
    (-51.0, 60.0)
    """
    limit = float(math.floor(stage_limit_deg + _EPS))
    shift = new_start_deg - old_start_deg
    low = min(max(min_deg + shift, -limit), limit)
    high = min(max(max_deg + shift, -limit), limit)
    return _angle(low), _angle(high)


class TiltScheme(ConfigModel):
    """A declarative tilt scheme: validates, serialises, and builds its steps.

    For ``unidirectional`` the scheme runs from ``min_deg`` to ``max_deg`` and ``start_deg`` must
    equal ``min_deg`` (it is the first image).
    """

    model_config = ConfigDict(frozen=True)

    kind: SchemeKind = "dose_symmetric"
    start_deg: float = Field(default=0.0, ge=-90, le=90, description="start tilt")
    min_deg: float = Field(default=-60.0, ge=-90, le=90, description="lowest tilt (absolute)")
    max_deg: float = Field(default=60.0, ge=-90, le=90, description="highest tilt (absolute)")
    step_deg: float = Field(default=3.0, gt=0, le=90, description="tilt increment")
    group_size: int = Field(default=2, ge=1, description="contiguous images per branch")
    first_branch: Literal["+", "-"] = Field(
        default="+", description="bidirectional only: the branch taken first"
    )
    slow_tilt: bool = Field(default=False, description="approach positive tilts from below too")

    @model_validator(mode="after")
    def _check_range(self) -> TiltScheme:
        if self.min_deg > self.max_deg:
            raise ValueError(f"min_deg {self.min_deg}° is above max_deg {self.max_deg}°")
        if not self.min_deg - _EPS <= self.start_deg <= self.max_deg + _EPS:
            raise ValueError(
                f"start_deg {self.start_deg}° is outside [{self.min_deg}°, {self.max_deg}°]"
            )
        if self.kind == "unidirectional" and abs(self.start_deg - self.min_deg) > _EPS:
            raise ValueError("a unidirectional scheme starts at min_deg: set start_deg to it")
        return self

    def steps(self) -> list[TiltStep]:
        """Every step of the scheme in acquisition order."""
        if self.kind == "dose_symmetric":
            return dose_symmetric(
                self.start_deg,
                self.min_deg,
                self.max_deg,
                self.step_deg,
                self.group_size,
                slow_tilt=self.slow_tilt,
            )
        if self.kind == "bidirectional":
            return bidirectional(
                self.start_deg,
                self.min_deg,
                self.max_deg,
                self.step_deg,
                self.first_branch,
                slow_tilt=self.slow_tilt,
            )
        return unidirectional(self.min_deg, self.max_deg, self.step_deg, slow_tilt=self.slow_tilt)

    @property
    def n_tilts(self) -> int:
        """The number of images per tilt series when no branch ends early."""
        return len(self.steps())

    def stage_travel_deg(self, from_deg: float = 0.0) -> float:
        """Total stage rotation of the scheme, approaches included, starting at ``from_deg``
        (for duration estimates)."""
        total, here = 0.0, from_deg
        for step in self.steps():
            for target in (step.approach_deg, step.tilt_deg):
                if target is not None:
                    total += abs(target - here)
                    here = target
        return total

    def remaining_after(self, index: int, ended_branches: Iterable[Branch] = ()) -> list[TiltStep]:
        """The steps after ``index`` (the last one done) on branches that have not ended,
        for resuming a run; ``index = -1`` gives every step."""
        ended = set(ended_branches)
        return [s for s in self.steps() if s.index > index and s.branch not in ended]

    def controller(
        self, *, resume_after: int | None = None, ended_branches: Iterable[Branch] = ()
    ) -> TiltController:
        """A fresh :class:`TiltController`, optionally resuming after step ``resume_after``."""
        return TiltController(
            self.steps(),
            step_deg=self.step_deg,
            slow_tilt=self.slow_tilt,
            resume_after=resume_after,
            ended_branches=ended_branches,
        )


class TiltController:
    """Hands the steps of a scheme to the engine, skipping those of ended branches.

    The engine calls :meth:`next_step` until it returns ``None`` and calls :meth:`end_branch`
    when every target's branch has aborted. A step of an ended branch is skipped without
    tilting (PACEtomo §2). The approach of each step handed out is recomputed from the last step
    handed out, so that skipping never leaves a final move in the − direction.

    Parameters
    ----------
    steps
        The steps of a scheme, in order.
    step_deg
        The scheme's tilt increment (the approach distance).
    slow_tilt
        Approach positive tilts from below too.
    resume_after
        Index of the last step already done (the next step handed out is approached from
        below, since the stage position is then unknown).
    ended_branches
        Branches already ended (when resuming).

    Examples
    --------
    >>> ctl = TiltScheme(min_deg=-6, max_deg=6, step_deg=3, group_size=1).controller()
    >>> ctl.next_step().tilt_deg, ctl.next_step().tilt_deg
    (0.0, 3.0)
    >>> ctl.end_branch("+")
    >>> [s.tilt_deg for s in ctl]
    [-3.0, -6.0]
    """

    def __init__(
        self,
        steps: Sequence[TiltStep],
        *,
        step_deg: float,
        slow_tilt: bool = False,
        resume_after: int | None = None,
        ended_branches: Iterable[Branch] = (),
    ) -> None:
        self._steps = list(steps)
        self._step_deg = step_deg
        self._slow_tilt = slow_tilt
        self._ended: set[Branch] = set()
        for branch in ended_branches:
            self.end_branch(branch)
        first = 0 if resume_after is None else resume_after + 1
        self._position = next(
            (i for i, s in enumerate(self._steps) if s.index >= first), len(self._steps)
        )
        self._last: TiltStep | None = None
        self._skipped: list[TiltStep] = []

    def end_branch(self, branch: Branch) -> None:
        """Mark ``"+"`` or ``"-"`` as ended: its remaining steps are skipped."""
        if branch not in ("+", "-"):
            raise ValueError(f"only the '+' and '-' branches can end, not {branch!r}")
        self._ended.add(branch)

    def is_alive(self, branch: Branch) -> bool:
        """Whether ``branch`` has steps to run (the start tilt is always alive)."""
        return branch not in self._ended

    @property
    def ended_branches(self) -> frozenset[Branch]:
        """The branches ended so far."""
        return frozenset(self._ended)

    @property
    def last_step(self) -> TiltStep | None:
        """The step handed out last (``None`` before the first)."""
        return self._last

    @property
    def skipped(self) -> list[TiltStep]:
        """The steps skipped so far because their branch had ended."""
        return list(self._skipped)

    def remaining(self) -> list[TiltStep]:
        """The steps still to be handed out on branches that are alive (approaches as
        planned)."""
        return [s for s in self._steps[self._position :] if s.branch not in self._ended]

    def next_step(self) -> TiltStep | None:
        """The next step to run, or ``None`` when the scheme is done."""
        while self._position < len(self._steps):
            step = self._steps[self._position]
            self._position += 1
            if step.branch in self._ended:
                self._skipped.append(step)
                continue
            previous = None if self._last is None else self._last.tilt_deg
            approach = _approach(
                step.tilt_deg, previous, self._step_deg, self._slow_tilt or step.branch == "start"
            )
            if approach != step.approach_deg:
                step = replace(step, approach_deg=approach)
            self._last = step
            return step
        return None

    def __iter__(self) -> Iterator[TiltStep]:
        while (step := self.next_step()) is not None:
            yield step


class HalvesInTheirDirection(TiltScheme):
    """A bidirectional scheme whose − half is approached downwards, one move per tilt, as
    Leginon tilts it (after a backlash release from above: the ``sequential`` strategy);
    the parallel strategies approach every negative tilt from below (two moves)."""

    def steps(self) -> list[TiltStep]:
        return [_downwards(s) for s in super().steps()]

    def controller(
        self, *, resume_after: int | None = None, ended_branches: Iterable[Branch] = ()
    ) -> TiltController:
        return _DownwardsController(
            self.steps(),
            step_deg=self.step_deg,
            slow_tilt=self.slow_tilt,
            resume_after=resume_after,
            ended_branches=ended_branches,
        )


class _DownwardsController(TiltController):
    """Hands out the − half's steps without an approach from below."""

    def next_step(self) -> TiltStep | None:
        step = super().next_step()
        return None if step is None else _downwards(step)


def _downwards(step: TiltStep) -> TiltStep:
    return replace(step, approach_deg=None) if step.branch == "-" else step
