"""UCSF Tomo's predictor as Leginon runs it (leginon.md §1.3–1.5), on image-shift µm.

A tilt series has two tilt groups (0: from the start tilt toward +, 1: toward −), each with its
own model (:class:`~tomopilot.geometry.tilt_model.TiltModel`: φ, offset, z0) and its own
measured positions. Before every tilt the predictor says where the feature will be and how much
its height changes since the group's first image:

- While the group holds fewer than ``fit_points`` positions (the start image counts), the
  model with the current parameters gives x, y and Δz, the group's first position being the
  reference. In the free model with a non-zero z0 (one carried over from an earlier series),
  the last position is kept and Δz = 0, as Leginon does.
- From then on x and y each come from a quadratic in θ through the last ``fit_points + 1``
  positions, and the model is refitted by Levenberg–Marquardt over the current and up to seven
  earlier series (same group) to give Δz. While every tilt seen is under 30° the axis angle and
  offset stay fixed (they cannot be told apart at low tilt). A new fit is kept only if its z0
  moved by at most ``z0_error_um`` from the old one, or at the first free fit when the
  trajectory is clean (:func:`~tomopilot.geometry.tilt_model.straight_trajectory`).

The history of earlier series seeds the fit; :class:`PredictionHistory` is the seam through
which a session (or an archive) hands it over and takes the finished series back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from tomopilot.geometry.tilt_model import (
    SeriesPoints,
    TiltModel,
    fit_accepted,
    fit_model,
    model_positions,
    quadratic_extrapolation,
    straight_trajectory,
)

GROUPS = (0, 1)
XY_PREDICTIONS = ("quadratic", "model")
TAU_FIXED_RAD = 0.01
TAU_FREE_RAD = 1.62


@dataclass(frozen=True)
class PredictorSettings:
    """Leginon's model settings (TomographySettingsData), lengths in µm.

    Attributes
    ----------
    fit_points
        Leginon's ``fit data points`` (per group, default 4).
    z0_error_um
        ``z0 error``: the largest height change a new fit may make (default 2 µm).
    fixed_model
        ``fixed model``: fit only the heights, keep φ and the offset (no dynamic fitting).
    use_z0
        ``use z0``: start a series from the seeded z0 instead of 0.
    max_series
        How many of the most recent series (the current one included) the fit uses.
    low_tilt_deg
        Below this on every point, the fit runs with the model fixed.
    initial
        Custom start values per group (Leginon's phi/offset/z0 and phi2/offset2/z02).
    xy_prediction
        ``"quadratic"``: Leginon's quadratic in θ through the last ``fit_points + 1``
        positions. ``"model"`` (ours): the last measured position moved by the model's own
        change to the next tilt; it does not amplify the stage's random settling error as
        the quadratic does (x1.6 for a random walk, x2.1 for measurement noise). While the
        goniometer slides (the last two steps were translations by the ``jump_um`` rule; one
        alone is a jump) the quadratic is used, which follows a run-away.
    jump_um
        Ours (None = Leginon: off): a position that moved more than this beyond what the model
        expected since the group's last one is a sideways translation of the goniometer (a
        jump, or a run-away branch), not a rotation: the fit (and so the height, the focus
        and the history) sees the positions with such translations taken out; x and y are
        still predicted from the positions as measured, so the target is followed.
    early_height
        Ours (False = Leginon): with the ``"model"`` x-y prediction, while the group holds
        fewer than ``fit_points`` positions but at least two, the feature's height is fitted
        to this series' positions with φ and the offset kept (least squares, as the fixed
        fit), and the prediction uses it. Leginon predicts these first tilts with the height
        at 0 (or the seeded z0), which misses by z·sin(step) per step: ~26 nm per 3° for a
        feature 0.5 µm off the axis's height. A height beyond ``z0_error_um`` from the
        model's (a jump in the first steps) is not used. The model itself is still first
        fitted at ``fit_points``, with the z0 rule, as Leginon does.
    """

    fit_points: int = 4
    z0_error_um: float = 2.0
    fixed_model: bool = False
    use_z0: bool = False
    max_series: int = 8
    low_tilt_deg: float = 30.0
    initial: tuple[TiltModel, TiltModel] = (TiltModel(), TiltModel())
    xy_prediction: str = "quadratic"
    jump_um: float | None = None
    early_height: bool = False

    def __post_init__(self) -> None:
        if self.fit_points < 2:
            raise ValueError(f"fit_points must be at least 2, not {self.fit_points}")
        if self.z0_error_um <= 0:
            raise ValueError(f"z0_error_um must be positive, not {self.z0_error_um}")
        if self.max_series < 1:
            raise ValueError(f"max_series must be at least 1, not {self.max_series}")
        if self.jump_um is not None and self.jump_um <= 0:
            raise ValueError(f"jump_um must be positive, not {self.jump_um}")
        if self.xy_prediction not in XY_PREDICTIONS:
            raise ValueError(
                f"xy_prediction must be one of {', '.join(XY_PREDICTIONS)}, "
                f"not {self.xy_prediction!r}"
            )


@dataclass(frozen=True)
class Prediction:
    """Where the feature will be at the next tilt, and its height change since the reference.

    ``fit`` says how the model was obtained: ``"model"`` (not enough points yet, current
    parameters), ``"early"`` (the same with the height fitted to this series' first
    positions, ``early_height``), ``"hold"`` (the last position), ``"accepted"`` or
    ``"rejected"`` (a refit and what the z0 rule decided), ``"failed"`` (the fit could not
    run).
    """

    x_um: float
    y_um: float
    dz_um: float
    model: TiltModel
    fit: str


Point = tuple[float, float, float]  # (tilt_rad, x_um, y_um)


@dataclass
class SeriesRecord:
    """One series' measured positions per group, with the models it ended with."""

    points: dict[int, list[Point]] = field(default_factory=lambda: {g: [] for g in GROUPS})
    models: dict[int, TiltModel] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "points": {str(g): [list(p) for p in pts] for g, pts in self.points.items()},
            "models": {str(g): asdict(m) for g, m in self.models.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SeriesRecord:
        return cls(
            points={
                int(g): [(float(a), float(b), float(c)) for a, b, c in pts]
                for g, pts in data["points"].items()
            },
            models={int(g): TiltModel(**m) for g, m in data.get("models", {}).items()},
        )


class PredictionHistory(Protocol):
    """Earlier series of a session or an archive, and where finished series go."""

    def recent_series(self, limit: int) -> list[SeriesRecord]:
        """Up to ``limit`` most recent finished series, oldest first."""
        ...

    def add_series(self, record: SeriesRecord) -> None:
        """Keep a finished series."""
        ...


@dataclass
class SessionHistory:
    """The session's own series, in memory (JSON-friendly for journals and files)."""

    series: list[SeriesRecord] = field(default_factory=list)

    def recent_series(self, limit: int) -> list[SeriesRecord]:
        return list(self.series[-limit:]) if limit > 0 else []

    def add_series(self, record: SeriesRecord) -> None:
        self.series.append(record)

    def to_json(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.series]

    @classmethod
    def from_json(cls, data: Sequence[dict[str, Any]]) -> SessionHistory:
        return cls([SeriesRecord.from_json(d) for d in data])


def seed_models(
    earlier: Sequence[SeriesRecord], settings: PredictorSettings
) -> dict[int, TiltModel]:
    """Each group's start values: the latest earlier model with a non-zero parameter, else the
    custom values; z0 is 0 unless ``use_z0``."""
    seeds: dict[int, TiltModel] = {}
    for group in GROUPS:
        chosen = settings.initial[group]
        for record in reversed(earlier):
            m = record.models.get(group)
            if m is not None and (m.phi_deg or m.offset_um or m.z0_um):
                chosen = m
                break
        seeds[group] = chosen if settings.use_z0 else TiltModel(chosen.phi_deg, chosen.offset_um)
    return seeds


class TiltPredictor:
    """The per-series predictor of one target (see module docstring)."""

    def __init__(
        self,
        settings: PredictorSettings | None = None,
        earlier: Sequence[SeriesRecord] = (),
    ) -> None:
        self.settings = settings or PredictorSettings()
        self.earlier = list(earlier)[-(self.settings.max_series - 1) :] if earlier else []
        if self.settings.max_series == 1:
            self.earlier = []
        self.models = seed_models(self.earlier, self.settings)
        self.current = SeriesRecord()
        # The positions as measured (x and y are predicted from these); ``current`` holds them
        # with the translations found by the ``jump_um`` rule taken out (the model sees those).
        self.measured: dict[int, list[Point]] = {g: [] for g in GROUPS}
        self.translation_um: dict[int, tuple[float, float]] = dict.fromkeys(GROUPS, (0.0, 0.0))
        # Consecutive steps that were translations: one is a jump, two or more a slide.
        self.sliding: dict[int, int] = dict.fromkeys(GROUPS, 0)
        self.log: list[dict[str, Any]] = []

    # -- measurements -----------------------------------------------------------------------
    def add_position(self, group: int, tilt_deg: float, x_um: float, y_um: float) -> None:
        """The feature's measured image-shift position at a tilt of ``group``."""
        theta = math.radians(tilt_deg)
        measured = self.measured[group]
        tx, ty = self.translation_um[group]
        jump = self.settings.jump_um
        translated = False
        # Checked once the model has been fitted to this series (before, an unknown height
        # moves the feature by more than the seeded model expects).
        if jump is not None and len(measured) >= self.settings.fit_points:
            model = self.models[group]
            tilt_r, xr, yr = self.current.points[group][0]
            xm, ym, _ = model_positions(
                model.phi_deg,
                model.offset_um,
                model.z0_um,
                (xr, yr),
                [measured[-1][0] - tilt_r, theta - tilt_r],
            )
            dx = x_um - measured[-1][1] - float(xm[1] - xm[0])
            dy = y_um - measured[-1][2] - float(ym[1] - ym[0])
            if math.hypot(dx, dy) > jump:
                tx, ty = tx + dx, ty + dy
                self.translation_um[group] = (tx, ty)
                translated = True
                self.log.append({"group": group, "n": len(measured), "translation_um": [dx, dy]})
        self.sliding[group] = self.sliding[group] + 1 if translated else 0
        measured.append((theta, x_um, y_um))
        self.current.points[group].append((theta, x_um - tx, y_um - ty))

    def shift_last(self, group: int, dx_um: float, dy_um: float) -> None:
        """Move the group's last position (the specimen moved since it was measured)."""
        for points in (self.measured[group], self.current.points[group]):
            if points:
                tilt, x, y = points[-1]
                points[-1] = (tilt, x + dx_um, y + dy_um)

    def n_points(self, group: int) -> int:
        """Positions measured in ``group`` this series (the start image included)."""
        return len(self.current.points[group])

    def finished(self) -> SeriesRecord:
        """This series with its final models, for the history."""
        return SeriesRecord(
            points={g: list(p) for g, p in self.current.points.items()},
            models=dict(self.models),
        )

    # -- prediction -------------------------------------------------------------------------
    def predict(self, group: int, tilt_deg: float) -> Prediction:
        """Position and height change at ``tilt_deg`` (the group must hold its first point)."""
        points = self.current.points[group]
        measured = self.measured[group]
        if not points:
            raise ValueError(f"group {group} has no reference position yet")
        theta = math.radians(tilt_deg)
        n = self.settings.fit_points
        model = self.models[group]
        anchored = self.settings.xy_prediction == "model"
        if len(points) < n:
            if not self.settings.fixed_model and model.z0_um != 0.0 and not anchored:
                _, x, y = measured[-1]
                return Prediction(x, y, 0.0, model, "hold")
            how = "model"
            if anchored and self.settings.early_height and len(points) >= 2:
                early = self._early_height(group)
                if early is not None:
                    model, how = early, "early"
            x, y, dz = self._from_model(model, points, theta)
            if anchored or measured[-1] != points[-1]:
                x, y = self._anchored(group, theta, model)
            return Prediction(x, y, dz, model, how)
        verdict = self._refit(group)
        model = self.models[group]
        if anchored and self.sliding[group] < 2:
            x, y = self._anchored(group, theta)
        else:  # Leginon's; also ours while the goniometer slides (it follows a run-away)
            last = np.array(measured[-(n + 1) :])
            x = quadratic_extrapolation(last[:, 0], last[:, 1], theta)
            y = quadratic_extrapolation(last[:, 0], last[:, 2], theta)
        _, _, dz = self._from_model(model, points, theta)
        return Prediction(x, y, dz, model, verdict)

    def _early_height(self, group: int) -> TiltModel | None:
        """The group's model with its height fitted to this series' positions (φ and the
        offset kept), or None if the fit cannot run."""
        points = self.current.points[group]
        model = self.models[group]
        arr = np.array(points)
        ref = points[0]
        series = [SeriesPoints(arr[:, 0] - ref[0], arr[:, 1], arr[:, 2], ref[1:])]
        try:
            fit = fit_model(series, model.phi_deg, model.offset_um, fixed=True)
        except ValueError:
            return None
        # Leginon's z0 rule on it too: a stage jump in the first steps reads as a height of
        # microns (0.2 µm over 3° is 3.8 µm), which would throw the next predictions off.
        if not fit_accepted(model.z0_um, fit.z_um[-1], self.settings.z0_error_um, False):
            return None
        return TiltModel(model.phi_deg, model.offset_um, fit.z_um[-1])

    def _anchored(
        self, group: int, theta: float, model: TiltModel | None = None
    ) -> tuple[float, float]:
        """The last measured position moved by the model's change from its tilt to ``theta``."""
        model = model or self.models[group]
        tilt_r, xr, yr = self.current.points[group][0]
        last_t, last_x, last_y = self.measured[group][-1]
        x, y, _ = model_positions(
            model.phi_deg, model.offset_um, model.z0_um, (xr, yr), [last_t - tilt_r, theta - tilt_r]
        )
        return last_x + float(x[1] - x[0]), last_y + float(y[1] - y[0])

    @staticmethod
    def _from_model(
        model: TiltModel, points: list[Point], theta: float
    ) -> tuple[float, float, float]:
        tilt_r, xr, yr = points[0]
        # The reference is the model's untilted state: angles count from the reference tilt.
        x, y, z = model_positions(
            model.phi_deg, model.offset_um, model.z0_um, (xr, yr), [0.0, theta - tilt_r]
        )
        return float(x[1]), float(y[1]), float(z[1] - z[0])

    # -- the fit (§1.3) ---------------------------------------------------------------------
    def _refit(self, group: int) -> str:
        s = self.settings
        points = self.current.points[group]
        records = [*self.earlier, self.current]
        all_tilts = [p[0] for r in records for p in r.points.get(group, [])]
        fixed = s.fixed_model or all(abs(t) < math.radians(s.low_tilt_deg) for t in all_tilts)
        recent = [p[0] for p in points[-s.fit_points :]]
        tau = TAU_FIXED_RAD if fixed else TAU_FREE_RAD
        lo, hi = min(recent) - tau, max(recent) + tau
        series: list[SeriesPoints] = []
        for record in records:
            chosen = _select(record.points.get(group, []), lo, hi, s.fit_points)
            if chosen:
                ref = record.points[group][0]
                arr = np.array(chosen)
                series.append(SeriesPoints(arr[:, 0] - ref[0], arr[:, 1], arr[:, 2], ref[1:]))
        if not series or series[-1].reference_um != points[0][1:]:
            return "failed"  # the current series has no usable point
        old = self.models[group]
        try:
            fit = fit_model(series, old.phi_deg, old.offset_um, fixed=fixed)
        except ValueError:
            return "failed"
        force = (
            len(points) == s.fit_points
            and not s.fixed_model
            and straight_trajectory(*(np.array(points).T))
        )
        accepted = fit_accepted(old.z0_um, fit.z_um[-1], s.z0_error_um, force)
        if accepted:
            self.models[group] = fit.model
        self.log.append(
            {
                "group": group,
                "n": len(points),
                "fixed": fit.fixed,
                "model": asdict(fit.model),
                "rms_um": fit.rms_um,
                "accepted": accepted,
                "forced": force,
            }
        )
        return "accepted" if accepted else "rejected"

    # -- state ------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "earlier": [r.to_json() for r in self.earlier],
            "current": self.current.to_json(),
            "models": {str(g): asdict(m) for g, m in self.models.items()},
            "measured": {str(g): [list(p) for p in pts] for g, pts in self.measured.items()},
            "translation_um": {str(g): list(t) for g, t in self.translation_um.items()},
            "sliding": {str(g): v for g, v in self.sliding.items()},
        }

    @classmethod
    def from_state(cls, data: dict[str, Any], settings: PredictorSettings) -> TiltPredictor:
        predictor = cls(settings, [SeriesRecord.from_json(r) for r in data["earlier"]])
        predictor.current = SeriesRecord.from_json(data["current"])
        predictor.models = {int(g): TiltModel(**m) for g, m in data["models"].items()}
        # States journalled before translations were tracked: measured = what the model saw.
        measured = data.get("measured") or data["current"]["points"]
        predictor.measured = {
            int(g): [(float(a), float(b), float(c)) for a, b, c in pts]
            for g, pts in measured.items()
        }
        for g, t in (data.get("translation_um") or {}).items():
            predictor.translation_um[int(g)] = (float(t[0]), float(t[1]))
        for g, v in (data.get("sliding") or {}).items():
            predictor.sliding[int(g)] = int(v)
        return predictor


def _select(points: list[Point], lo: float, hi: float, n: int) -> list[Point]:
    """The points with θ in [lo, hi]; if 1 ≤ count < n, the following ones up to n."""
    inside = [i for i, p in enumerate(points) if lo <= p[0] <= hi]
    if not inside:
        return []
    chosen = list(inside)
    following = inside[-1] + 1
    while len(chosen) < n and following < len(points):
        chosen.append(following)
        following += 1
    return [points[i] for i in chosen]
