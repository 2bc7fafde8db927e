"""The ``sequential`` strategy's focus: the defocus–tilt table and the Focus-area readings.

- :func:`measure_defocus_tilt_table`, :func:`fit_focus_area_table` and
  :func:`target_defocus_change_um`: Leginon's defocus–tilt calibration (since 2021): how the
  defocus at the Focus area changes with the tilt at a fixed focus, measured over the tilt
  range, read as the specimen's plane turning under that fixed place; a target then turns as
  a point of the plane. It holds what the goniometer does to the height under the beam (axis
  offset, run-out), which the rigid model cannot learn from x–y positions (the offset enters
  them only at second order).
- :class:`FocusReadings` (ours, ``focus_every``): the Focus area beside the target read at
  the target's image shift where its tracking View found it, and the Record's focus corrected
  by how far the reading is from the target's defocus.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tomopilot.acquisition.strategies.base import Toolkit
from tomopilot.instrument.errors import ImageShiftLimitError
from tomopilot.instrument.protocol import Microscope

# The defocus-tilt table: a point further than this from the fitted a·sin θ + b·(cos θ − 1)
# (and than OUTLIER_FACTOR times the median distance) is not believed. Run-out is tenths of
# a micrometre on an autoloader, up to ~1 µm on a side-entry holder; a run-away slide, microns.
OUTLIER_FLOOR_UM = 1.0
OUTLIER_FACTOR = 5.0
# Autofocus readings averaged at each tilt of the defocus-tilt table: one reading's noise
# (~40 nm) is as large as the run-out the table is for at low tilt, and the start tilt's
# reading is subtracted from every other (Leginon takes one).
TABLE_READINGS = 2
# The tilts either side of the start at which an area the session's table was not measured in
# reads its own plane (the axis's distance across from its Focus area and the plane's from the
# axis): wide enough that two readings fix the plane's distance to ~30 nm (its sec θ changes
# little at low tilt), within every series' range.
PLANE_CHECK_DEG = 45.0
# focus_every: the part of a Focus-area reading's miss the focus takes after a group's first,
# unless the miss is larger than FOCUS_JUMP_UM (five readings' noise: the focus moved).
FOCUS_READING_GAIN = 0.5
FOCUS_JUMP_UM = 0.2
# A reading taken before the tracking View (at the predicted image shift) stands for the
# target where the View found it only if the plane's slope puts less than this between the
# two places (|View − prediction|·|tan(θ + pretilt)|); else the Focus area is read again at
# the View's position, before the Record. A run-away branch lags microns (0.75-0.80 µm RMS
# of focus on the autoloader's without the second reading). At 0.03 µm (a reading's noise)
# a grid hole's series read again at a third of its tilts, and in two of three runs a
# later View found no peak and left its Record 0.19-0.36 µm off the target (mechanism not
# traced; 0.06 µm at most without the second readings, and at 0.1 µm).
FOCUS_LAG_UM = 0.1


def measure_defocus_tilt_table(
    toolkit: Toolkit, tilts_deg: list[float], start_deg: float, readings: int = TABLE_READINGS
) -> dict[float, float]:
    """Defocus change at the Focus area (µm) at each tilt relative to ``start_deg``, the focus
    unchanged, the mean of ``readings`` autofocus readings; the tilts are swept upwards
    (approached from below, as the series' tilts), and the stage is left at ``start_deg``,
    approached from below."""
    scope = toolkit.scope
    limit = scope.stage.limits.tilt_deg  # an approach never beyond the stage's travel
    tilts = sorted({round(t, 6) + 0.0 for t in [*tilts_deg, start_deg]})
    scope.stage.tilt_to(max(-limit, tilts[0] - 1.0))
    measured: dict[float, float] = {}
    for tilt in tilts:
        scope.stage.tilt_to(tilt)
        values = [scope.measurements.measure_defocus_um() for _ in range(max(1, readings))]
        measured[tilt] = float(np.mean(values))
    scope.stage.tilt_to(max(-limit, start_deg - 1.0))
    scope.stage.tilt_to(start_deg)
    base = measured[round(start_deg, 6) + 0.0]
    return {t: v - base for t, v in measured.items()}


@dataclass(frozen=True)
class FocusAreaTable:
    """The defocus–tilt table fitted as the Focus area's plane (see :func:`fit_focus_area_table`):
    ``lateral_um`` is the Focus area's distance from the tilt axis across it (the lab's, the
    same at every tilt), ``tilts_deg``/``rest_um`` what the plane does not explain (run-out),
    outliers dropped."""

    lateral_um: float
    tilts_deg: tuple[float, ...]
    rest_um: tuple[float, ...]
    plane_um: float = 0.0  # the plane's distance from the axis
    pretilt_deg: float = 0.0

    def rest_at(self, tilt_deg: float) -> float:
        return float(np.interp(tilt_deg, self.tilts_deg, self.rest_um))

    def height_um(self, tilt_deg: float) -> float:
        """The Focus area's height above the axis (in the beam's direction, the defocus's
        sense) at ``tilt_deg``: where the plane lies at its lateral distance."""
        alpha = math.radians(tilt_deg + self.pretilt_deg)
        return self.plane_um / math.cos(alpha) + self.lateral_um * math.tan(alpha)

    def plane_at(self, image_shift_um: tuple[float, float]) -> FocusPlane:
        """The table's plane, seen from the Focus area at the image shift it was measured at."""
        return FocusPlane(self.lateral_um, self.plane_um, image_shift_um, self.pretilt_deg)


def fit_focus_area_table(table: dict[float, float], pretilt_deg: float = 0.0) -> FocusAreaTable:
    """What a defocus–tilt table says about the goniometer.

    The table is measured at a fixed place in the lab (the Focus area, the image shift held)
    while the specimen turns under it: the beam meets another point of the specimen at every
    tilt. A plane (the specimen's surface, lying at the stage tilt plus ``pretilt_deg`` about
    the axis) at distance d from the axis, seen at a lateral distance u from the axis, lies at
    depth d / cos(θ + p) + u·tan(θ + p): the table is fitted as that (plus a constant), and
    what is left is the goniometer's run-out. A point of the specimen itself moves as
    u·sin θ + z·cos θ instead (:func:`target_defocus_change_um`); at 60° on a 10° lamella the
    two differ by microns for a plane a micrometre off the axis. Points a run-away slide put
    another part of the specimen under the Focus area are dropped (OUTLIER_FLOOR_UM).
    """
    tilts = np.array(sorted(table), dtype=np.float64)
    values = np.array([table[t] for t in tilts], dtype=np.float64)
    alpha = np.radians(tilts + pretilt_deg)
    if tilts.size < 4 or float(np.max(np.abs(alpha))) >= math.radians(85.0):
        return FocusAreaTable(0.0, tuple(tilts.tolist()), tuple(values.tolist()), 0.0, pretilt_deg)
    basis = np.column_stack([np.ones_like(alpha), 1.0 / np.cos(alpha), np.tan(alpha)])
    # A point the goniometer slid away from (a run-away branch puts another part of the
    # specimen under the Focus area, microns higher or lower) is no run-out: drop the worst
    # point while it stands out, refitting each time.
    # Each point is judged by a fit without it (sec and tan grow steeply: a fit with a slid
    # point at 60° bends to it and spreads the miss over the others).
    keep = np.ones(tilts.size, dtype=bool)
    while keep.sum() > 4:
        coef, *_ = np.linalg.lstsq(basis[keep], values[keep], rcond=None)
        residual = np.abs(values - basis @ coef)
        left_out = np.zeros(tilts.size)
        for i in np.flatnonzero(keep):
            others = keep.copy()
            others[i] = False
            c, *_ = np.linalg.lstsq(basis[others], values[others], rcond=None)
            left_out[i] = abs(values[i] - basis[i] @ c)
        limit = max(OUTLIER_FLOOR_UM, OUTLIER_FACTOR * float(np.median(residual[keep])))
        worst = int(np.argmax(left_out))
        if left_out[worst] <= limit:
            break
        keep[worst] = False
    coef, *_ = np.linalg.lstsq(basis[keep], values[keep], rcond=None)
    rest = (values - basis @ coef)[keep]
    return FocusAreaTable(
        float(coef[2]),
        tuple(tilts[keep].tolist()),
        tuple(rest.tolist()),
        float(coef[1]),
        pretilt_deg,
    )


@dataclass(frozen=True)
class FocusPlane:
    """The specimen's plane as seen from the Focus area of one area: its lateral distance
    across the tilt axis, the plane's distance from the axis, and the image shift they were
    measured at (the target's distance across the axis is counted from there)."""

    lateral_um: float
    plane_um: float
    image_shift_um: tuple[float, float]
    pretilt_deg: float = 0.0

    def height_um(self, tilt_deg: float) -> float:
        """The Focus area's height above the axis at ``tilt_deg`` (the defocus's sense)."""
        alpha = math.radians(tilt_deg + self.pretilt_deg)
        return self.plane_um / math.cos(alpha) + self.lateral_um * math.tan(alpha)

    def state(self) -> dict[str, Any]:
        """The journal's form."""
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> FocusPlane | None:
        """From :meth:`state` (None stays None)."""
        if state is None:
            return None
        shift = state["image_shift_um"]
        return cls(
            float(state["lateral_um"]),
            float(state["plane_um"]),
            (float(shift[0]), float(shift[1])),
            float(state.get("pretilt_deg", 0.0)),
        )


def plane_from_readings(
    readings: dict[float, float],
    start_deg: float,
    table: FocusAreaTable,
    image_shift_um: tuple[float, float],
) -> FocusPlane:
    """The plane under the Focus area from its defocus changes at a few tilts (relative to
    ``start_deg``, the image shift held): the session table's run-out taken out, the rest is
    d·(sec(θ + p) − sec(θ₀ + p)) + u·(tan(θ + p) − tan(θ₀ + p)), solved for d and u."""
    p = table.pretilt_deg
    tilts = [t for t in sorted(readings) if abs(t - start_deg) > 1e-6]
    a0 = math.radians(start_deg + p)
    rows, values = [], []
    for tilt in tilts:
        a = math.radians(tilt + p)
        rows.append([1 / math.cos(a) - 1 / math.cos(a0), math.tan(a) - math.tan(a0)])
        values.append(readings[tilt] - (table.rest_at(tilt) - table.rest_at(start_deg)))
    if len(rows) < 2:
        return FocusPlane(table.lateral_um, table.plane_um, image_shift_um, p)
    (d, u), *_ = np.linalg.lstsq(np.array(rows), np.array(values), rcond=None)
    return FocusPlane(float(u), float(d), image_shift_um, p)


def read_area_plane(
    toolkit: Toolkit, table: FocusAreaTable, start_deg: float, check_deg: float
) -> FocusPlane:
    """An area's own plane, where the session's table was measured in another: the Focus area
    read at ``check_deg`` either side of the start tilt (:func:`plane_from_readings`)."""
    shift = toolkit.scope.optics.image_shift_um()
    readings = measure_defocus_tilt_table(
        toolkit, [start_deg - check_deg, start_deg + check_deg], start_deg
    )
    return plane_from_readings(readings, start_deg, table, shift)


def plane_focus_change_um(
    table: FocusAreaTable,
    plane: FocusPlane,
    *,
    start_is_um: tuple[float, float],
    axis_deg: float,
    depth_um: float,
    tilt_deg: float,
    start_deg: float,
) -> float:
    """A target's focus change: it turns about the axis as a point of the specimen
    (:func:`target_defocus_change_um`) at its distance across the axis (the Focus area's,
    plus the image shift between them, ``start_is_um`` against the plane's, across the axis at
    ``axis_deg``) and its height (the plane's at the Focus area at the start tilt, plus the
    target's own ``depth_um`` on it), with the session table's run-out."""
    phi = math.radians(axis_deg)
    dx = start_is_um[0] - plane.image_shift_um[0]
    dy = start_is_um[1] - plane.image_shift_um[1]
    return target_defocus_change_um(
        table,
        tilt_deg,
        start_deg,
        lateral_um=plane.lateral_um + dx * math.cos(phi) + dy * math.sin(phi),
        height_um=plane.height_um(start_deg) + depth_um,
    )


def target_defocus_change_um(
    fit: FocusAreaTable,
    tilt_deg: float,
    start_deg: float,
    *,
    lateral_um: float = 0.0,
    height_um: float = 0.0,
) -> float:
    """Defocus change of a point of the specimen from ``start_deg`` to ``tilt_deg``.

    The point lies ``lateral_um`` across the axis from where the table was measured (the
    image-shift difference across the axis) and ``height_um`` above the axis at the start tilt
    (the predictor's z0, fitted to the target's positions): it turns about the axis,
    u·sin Δ + z·(cos Δ − 1) with Δ the tilt from the start, plus the run-out. Leginon (since
    2021) puts the table's interpolated value on every target instead; UCSF Tomo (2009) the
    model's height change, whose axis offset the x–y positions hardly fix.
    """
    delta = math.radians(tilt_deg - start_deg)
    u = fit.lateral_um + lateral_um
    turn = u * math.sin(delta) + height_um * (math.cos(delta) - 1.0)
    return turn + fit.rest_at(tilt_deg) - fit.rest_at(start_deg)


@dataclass
class FocusReadings:
    """``focus_every``'s state: each target's and tilt group's focus correction from its last
    Focus-area reading (keys ``"<target>:<group>"``).

    The Focus area lies beside the target along the tilt axis, so at the target's image
    shift it sits at the target's defocus: the lens makes up what a reading there finds off
    the target's level (the set-up's autofocus scale taken out)."""

    correction_um: dict[str, float] = field(default_factory=dict)

    def read_um(
        self, scope: Microscope, key: str, shift_um: tuple[float, float], focus_um: float, n: int
    ) -> float | None:
        """The mean of ``n`` readings of the Focus area at ``shift_um``, the lens at
        ``focus_um`` plus the group's correction (None beyond the image-shift limit: the
        engine meets it and ends the branch)."""
        try:
            scope.optics.set_image_shift_um(*shift_um)
        except ImageShiftLimitError:
            return None
        scope.optics.set_focus_um(focus_um + self.correction_um.get(key, 0.0))
        return sum(scope.measurements.measure_defocus_um() for _ in range(n)) / n

    def focus_um(
        self,
        key: str,
        reading: float | None,
        *,
        start: bool,
        focus_um: float,
        target_defocus_um: float,
        autofocus_scale: float,
    ) -> float:
        """The Record's focus: ``focus_um`` (the table's) with the group's correction, which
        ``reading`` (taken by :meth:`read_um` at that focus; None: none taken) updates first.
        ``start``: both groups start from the start's level."""
        correction = self.correction_um.get(key, 0.0)
        if reading is None:
            return focus_um + correction
        miss = target_defocus_um - reading / autofocus_scale
        # All of the miss at a group's first reading or a sudden change (a goniometer jump),
        # else half of it: the table carries the trend, a reading's noise (~40 nm) is halved.
        gain = 1.0
        if key in self.correction_um and abs(miss) < FOCUS_JUMP_UM:
            gain = FOCUS_READING_GAIN
        correction += gain * miss
        self.correction_um[key] = correction
        if start:  # both branches start from the start's level
            target = key.split(":")[0]
            for group in (0, 1):
                self.correction_um[f"{target}:{group}"] = correction
        return focus_um + correction

    def state(self) -> dict[str, Any]:
        return {"focus_correction_um": dict(self.correction_um)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FocusReadings:
        return cls({str(k): float(v) for k, v in (state.get("focus_correction_um") or {}).items()})
