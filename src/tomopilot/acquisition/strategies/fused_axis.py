"""``fused``'s tilt axis: where target 1 sits relative to the axis it really turns about.

A target at lateral distance n from the tilt axis (across it, y) and height m above it moves,
when the stage turns by θ, to n cos θ − m sin θ laterally and n sin θ + m cos θ in depth. The
set-up leaves target 1 only roughly on the axis: its height is what the rough eucentricity
missed (σ ≈ 0.5–1 µm) and its lateral distance what the tilt-axis offset calibration missed
(σ ≈ 0.15–0.3 µm). Rotating about target 1 itself, as if it were on the axis, then misses its
depth change by n sin θ + m (cos θ − 1): about 0.5 µm at 60° for a 1 µm height error, with no
Thon ring inside Nyquist to show it at the usual tomography pixel and defocus.

The same two numbers shape target 1's lateral track. Between two tilts θ₀ → θ₁ of a branch it
moves by

    Δy = n (cos θ₁ − cos θ₀) − m (sin θ₁ − sin θ₀) + ΔA,

where ΔA is the axis's own unpredicted step (the stage's settling error, drift, run-out; a
jump now and then). :func:`fit_axis` fits (n₊, n₋, m) — one lateral distance per branch (a
side-entry holder's axis differs between directions), one height — to every measured step of
the run so far: least squares weighted by the steps' spread, with a prior (n about
−taOffset, m about 0) so the first few small tilts do not overfit, and Huber weights so a
jump or a misaligned Record counts as one step of typical size rather than pulling the fit.
Step by step would not do: at 3° one step carries m·0.05 µm of signal against 0.03–0.1 µm of
stage noise; over a branch the sin θ and cos θ − 1 shapes add up and the noise does not.

The goniometer's run-out across the axis has the same two shapes (a smooth function of the
tilt, zero at the start): the fit carries it as two more unknowns with their own prior size
(``RUNOUT_SIGMA_UM``), so a step's sin θ part goes to the height only in proportion to how
much larger a height miss is expected to be than the run-out.

What no lateral measurement can show is the axis moving along the beam (run-out in z, the
z part of the stage's steps, drift): that needs a defocus measurement (the Records' Thon rings,
``fused_depth``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Prior spread of target 1's height above the tilt axis after a rough eucentricity (µm; SEM-H:
#: the rough routine lands within ~0.5 µm on a good stage, ~1 µm on a side-entry holder).
HEIGHT_PRIOR_SIGMA_UM = 1.0
#: Expected size of the goniometer's run-out across the axis over the range (µm): its sin θ and
#: cos θ − 1 parts look exactly like a height and an axis offset in the lateral track.
RUNOUT_SIGMA_UM = 0.3
#: Prior spread of target 1's distance from the tilt axis about -taOffset (µm).
OFFSET_PRIOR_SIGMA_UM = 0.3
#: Floor of the steps' noise scale (µm): the alignment's own error.
MIN_STEP_SIGMA_UM = 0.02
#: Noise scale before the run has shown its own (µm): a good autoloader's step (PACE23).
START_STEP_SIGMA_UM = 0.05
#: Residuals beyond this many noise scales are down-weighted (Huber).
HUBER_K = 1.5
MIN_STEPS_FOR_SCALE = 6
ITERATIONS = 8
BRANCHES = ("+", "-")


@dataclass(frozen=True)
class AxisStep:
    """One measured lateral step of target 1 on a branch (tilts in degrees, step in µm)."""

    branch: str
    from_tilt_deg: float
    to_tilt_deg: float
    dy_um: float


@dataclass(frozen=True)
class AxisFit:
    """Target 1's lateral distance from the axis per branch and its height above it (µm), at
    the start tilt (where the set-up's eucentricity left it)."""

    offset_um: dict[str, float]
    height_um: float
    step_sigma_um: float
    steps: int
    outliers: int = 0
    start_tilt_deg: float = 0.0

    def lateral_um(self, branch: str, tilt_deg: float) -> float:
        """Target 1's lateral distance from the axis at ``tilt_deg`` (rotated)."""
        t = math.radians(tilt_deg - self.start_tilt_deg)
        return self.offset_um[branch] * math.cos(t) - self.height_um * math.sin(t)

    def depth_um(self, branch: str, tilt_deg: float) -> float:
        """Target 1's height above the axis at ``tilt_deg`` (rotated)."""
        t = math.radians(tilt_deg - self.start_tilt_deg)
        return self.offset_um[branch] * math.sin(t) + self.height_um * math.cos(t)


def fit_axis(
    steps: list[AxisStep],
    prior_offset_um: dict[str, float] | None = None,
    *,
    height_sigma_um: float = HEIGHT_PRIOR_SIGMA_UM,
    offset_sigma_um: float = OFFSET_PRIOR_SIGMA_UM,
    runout_sigma_um: float = RUNOUT_SIGMA_UM,
    start_tilt_deg: float = 0.0,
) -> AxisFit:
    """Fit (n₊, n₋, m) to target 1's measured steps (see the module docstring).

    With no steps the prior itself. The noise scale is the steps' robust spread (1.4826 × the
    median absolute residual) once there are ``MIN_STEPS_FOR_SCALE`` of them, never below
    ``MIN_STEP_SIGMA_UM``.
    """
    prior = dict.fromkeys(BRANCHES, 0.0) | dict(prior_offset_um or {})
    # (n₊, n₋, m) and the run-out's two shapes of the same form (shared by both branches: a
    # function of the tilt through 0°), which the data cannot tell apart: each gets its share
    # of a step's sin θ and cos θ parts by its prior size.
    mean = np.array([prior["+"], prior["-"], 0.0, 0.0, 0.0])
    precision = np.diag(
        [
            offset_sigma_um**-2,
            offset_sigma_um**-2,
            height_sigma_um**-2,
            max(runout_sigma_um, 1e-6) ** -2,
            max(runout_sigma_um, 1e-6) ** -2,
        ]
    )
    if not steps:
        return AxisFit(dict(prior), 0.0, START_STEP_SIGMA_UM, 0, start_tilt_deg=start_tilt_deg)
    design = np.zeros((len(steps), 5))
    dy = np.empty(len(steps))
    for i, s in enumerate(steps):
        t0 = math.radians(s.from_tilt_deg - start_tilt_deg)
        t1 = math.radians(s.to_tilt_deg - start_tilt_deg)
        design[i, 0 if s.branch == "+" else 1] = math.cos(t1) - math.cos(t0)
        design[i, 2] = -(math.sin(t1) - math.sin(t0))
        design[i, 3] = math.cos(t1) - math.cos(t0)
        design[i, 4] = design[i, 2]
        dy[i] = s.dy_um
    sigma = START_STEP_SIGMA_UM
    weights = np.ones(len(steps))
    x, sigma, weights, _ = _robust_fit(design, dy, mean, precision, START_STEP_SIGMA_UM)
    outliers = int(np.sum(weights < 1.0))
    return AxisFit(
        {"+": float(x[0]), "-": float(x[1])},
        float(x[2]),
        sigma,
        len(steps),
        outliers,
        start_tilt_deg,
    )


def _robust_fit(
    design: np.ndarray,
    data: np.ndarray,
    mean: np.ndarray,
    precision: np.ndarray,
    sigma: float,
    floor: float = MIN_STEP_SIGMA_UM,
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Huber-weighted least squares with a Gaussian prior (mean, precision): the solution, the
    noise scale (robust spread of the residuals once there are enough, never below ``floor``),
    the final weights and the solution's covariance."""
    weights = np.ones(len(data))
    x, cov = mean, np.linalg.inv(precision)
    for _ in range(ITERATIONS):
        w = weights / sigma**2
        lhs = design.T @ (design * w[:, None]) + precision
        x = np.linalg.solve(lhs, design.T @ (w * data) + precision @ mean)
        cov = np.linalg.inv(lhs)
        residual = data - design @ x
        if len(data) >= MIN_STEPS_FOR_SCALE:
            sigma = max(floor, 1.4826 * float(np.median(np.abs(residual))))
        scaled = np.abs(residual) / (HUBER_K * sigma)
        weights = np.where(scaled <= 1.0, 1.0, 1.0 / np.maximum(scaled, 1e-12))
    return x, float(sigma), weights, cov


@dataclass
class AxisTracker:
    """Target 1's measured lateral positions, per branch, and the fit they give."""

    prior_offset_um: dict[str, float] = field(default_factory=dict)
    start_tilt_deg: float = 0.0
    steps: list[AxisStep] = field(default_factory=list)
    last: dict[str, tuple[float, float]] = field(default_factory=dict)  # branch: (tilt, y)
    fit: AxisFit | None = None

    def start(self, tilt_deg: float, y_um: float) -> None:
        """Target 1 measured at the start tilt: both branches step from there."""
        self.start_tilt_deg = tilt_deg
        self.last = dict.fromkeys(BRANCHES, (tilt_deg, y_um))

    def moved(self, tilt_deg: float, dy_um: float) -> None:
        """Target 1 was found ``dy_um`` away from where it was last measured at ``tilt_deg``
        without the stage turning (a resume's re-alignment: the stage tilted back, the run was
        down): the branches last measured there step on from where it is now, or the next step
        would count that move as the geometry's."""
        for branch, (tilt, y_um) in list(self.last.items()):
            if math.isclose(tilt, tilt_deg, abs_tol=1e-6):
                self.last[branch] = (tilt, y_um + dy_um)

    def observe(self, branch: str, tilt_deg: float, y_um: float | None) -> None:
        """Target 1 measured at ``y_um`` (None: not found; the next step starts afresh)."""
        previous = self.last.pop(branch, None)
        if y_um is None:
            return
        if previous is not None and previous[0] != tilt_deg:
            self.steps.append(AxisStep(branch, previous[0], tilt_deg, y_um - previous[1]))
            self.fit = self._fit()
        self.last[branch] = (tilt_deg, y_um)

    def _fit(self) -> AxisFit:
        return fit_axis(self.steps, self.prior_offset_um, start_tilt_deg=self.start_tilt_deg)

    def current(self) -> AxisFit:
        """The fit of the steps so far (the prior before the first)."""
        return self.fit or self._fit()

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form (for the journal)."""
        return {
            "prior_offset_um": dict(self.prior_offset_um),
            "start_tilt_deg": self.start_tilt_deg,
            "steps": [[s.branch, s.from_tilt_deg, s.to_tilt_deg, s.dy_um] for s in self.steps],
            "last": {b: list(v) for b, v in self.last.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> AxisTracker:
        """Back from :meth:`to_dict`."""
        prior = data.get("prior_offset_um", {})
        raw_steps = data.get("steps", [])
        raw_last = data.get("last", {})
        assert isinstance(prior, dict) and isinstance(raw_steps, list)
        assert isinstance(raw_last, dict)
        start = data.get("start_tilt_deg", 0.0)
        assert isinstance(start, (int, float))
        tracker = cls(
            prior_offset_um={str(k): float(v) for k, v in prior.items()},
            start_tilt_deg=float(start),
            steps=[AxisStep(str(b), float(t0), float(t1), float(d)) for b, t0, t1, d in raw_steps],
            last={str(k): (float(v[0]), float(v[1])) for k, v in raw_last.items()},
        )
        if tracker.steps:
            tracker.fit = tracker._fit()
        return tracker


#: Prior spread of a target's depth relative to target 1 at the start tilt (µm).
RELATIVE_DEPTH_SIGMA_UM = 0.5
#: Prior spread of its lateral distance from target 1 about the first measured one (µm).
RELATIVE_LATERAL_SIGMA_UM = 1.0
#: Floor and starting value of the relative positions' noise (µm): two alignments' errors.
MIN_RELATIVE_SIGMA_UM = 0.01
START_RELATIVE_SIGMA_UM = 0.02


@dataclass
class RelativeTrack:
    """A target's lateral position relative to target 1, at each tilt where both were found.

    The specimen is rigid and turns about one axis, so the target's offset from target 1 —
    (r, d) across the axis and in depth at the start tilt — turns with it:
    r(θ) = r₀ cos(θ−θ₀) − d₀ sin(θ−θ₀), d(θ) = r₀ sin(θ−θ₀) + d₀ cos(θ−θ₀). The difference of
    two positions measured at the same tilt is free of the stage's common step (the axis moved
    both), so a few tilts pin d₀ to tens of nm: the target's depth is target 1's plus d(θ).
    """

    start_tilt_deg: float
    prior_depth_um: float
    tilts_deg: list[float] = field(default_factory=list)
    lateral_um: list[float] = field(default_factory=list)

    def add(self, tilt_deg: float, lateral_um: float) -> None:
        """Both measured at ``tilt_deg``: the target ``lateral_um`` from target 1 across the
        axis (a second measurement at the same tilt replaces the first)."""
        if self.tilts_deg and self.tilts_deg[-1] == tilt_deg:
            self.lateral_um[-1] = lateral_um
            return
        self.tilts_deg.append(tilt_deg)
        self.lateral_um.append(lateral_um)

    def depth_um(self, tilt_deg: float) -> tuple[float, float]:
        """The target's depth relative to target 1 at ``tilt_deg`` and its variance (µm, µm²)."""
        t = np.radians(np.asarray(self.tilts_deg) - self.start_tilt_deg)
        design = np.column_stack([np.cos(t), -np.sin(t)])
        first = self.lateral_um[0] if self.lateral_um else 0.0
        mean = np.array([first, self.prior_depth_um])
        precision = np.diag([RELATIVE_LATERAL_SIGMA_UM**-2, RELATIVE_DEPTH_SIGMA_UM**-2])
        x, _, _, cov = _robust_fit(
            design,
            np.asarray(self.lateral_um, dtype=np.float64),
            mean,
            precision,
            START_RELATIVE_SIGMA_UM,
            MIN_RELATIVE_SIGMA_UM,
        )
        a = math.radians(tilt_deg - self.start_tilt_deg)
        g = np.array([math.sin(a), math.cos(a)])
        return float(g @ x), float(g @ cov @ g)

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form (for the journal)."""
        return {
            "start_tilt_deg": self.start_tilt_deg,
            "prior_depth_um": self.prior_depth_um,
            "tilts_deg": list(self.tilts_deg),
            "lateral_um": list(self.lateral_um),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RelativeTrack:
        """Back from :meth:`to_dict`."""
        return cls(
            start_tilt_deg=float(data["start_tilt_deg"]),
            prior_depth_um=float(data["prior_depth_um"]),
            tilts_deg=[float(v) for v in data["tilts_deg"]],
            lateral_um=[float(v) for v in data["lateral_um"]],
        )


__all__ = ["AxisFit", "AxisStep", "AxisTracker", "RelativeTrack", "fit_axis"]
