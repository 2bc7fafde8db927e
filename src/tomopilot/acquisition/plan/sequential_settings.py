"""Settings of the ``sequential`` strategy: Leginon's tomography node, in our units.

Leginon's names are given in each field's description. Defaults are Leginon's where it has one
(fit points 4, z0 error 2 µm, tilt pause 1 s, backlash 5 × 1° with 1 s pauses, 200 e⁻/Å²).

Examples
--------
>>> s = SequentialSettings(cos_exposure=True, total_dose_e_a2=120)
>>> round(s.exposure_times_s([0.0, 60.0], dose_rate_e_a2_s=10.0)[1], 3)
8.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from tomopilot.core.config import ConfigModel
from tomopilot.core.errors import ConfigError


class SequentialSettings(ConfigModel):
    """How the ``sequential`` strategy tracks, focuses, waits and doses (each field documented)."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    # The predictor (leginon.md §1)
    fit_points: int = Field(4, ge=2, le=20)
    """``fit data points``: positions per tilt group before the model is fitted."""
    z0_error_um: float = Field(2.0, gt=0, le=50)
    """``z0 error``: the largest height change a new fit may make."""
    fixed_model: bool = False
    """``fixed model``: fit only the heights; off = dynamic fitting of axis angle and offset."""
    use_z0: bool = False
    """``use z0``: start each series from the height of the previous one."""
    phi_deg: float = Field(90.0, ge=-180, le=180)
    """``phi``: the tilt axis's angle in the image-shift plane (x along the axis gives 90°)."""
    offset_um: float = Field(0.0, ge=-20, le=20)
    """``offset``: the tilt axis's distance from the optical axis."""
    max_series: int = Field(8, ge=1, le=100)
    """Series (the current one included) whose positions enter the fit."""
    xy_prediction: Literal["quadratic", "model"] = "model"
    """``quadratic``: Leginon's quadratic in θ through the last fit_points + 1 positions.
    ``model`` (ours, default): the last position moved by the model's change to the next
    tilt, which does not amplify the stage's random settling error as the quadratic does (the
    quadratic takes over while a run-away is under way, see ``jump_um``)."""
    jump_um: float | None = Field(0.3, gt=0, le=50)
    """Ours (None = off, as Leginon): a position that moved more than this beyond the model's
    expectation is a sideways translation of the goniometer (a jump, a run-away branch), kept
    out of the fit and the history, so the height and the focus do not follow it."""

    early_height: bool = True
    """Ours (off = Leginon): before the model's first fit (fewer than fit_points positions in
    the group), predict with the feature's height fitted to the positions already measured in
    this series, not with height 0; Leginon's first tilts miss by z·sin(step) per step."""

    defocus_tilt_calibration: bool = True
    """Leginon's defocus–tilt calibration (since 2021): once per session the defocus change with
    tilt is measured at the Focus area. Leginon puts the table's value on every Record; ours
    reads it as the specimen's plane turning under a fixed place (d/cos(θ+p) + u·tan(θ+p)):
    the target turns as a point at that distance u from the axis and the plane's height, with
    the table's run-out added (the model's height change is only recorded). On a 10° lamella
    the table's own value was microns off at 60°. Off: the focus follows the model's height
    change (Leginon 2009), which cannot see the goniometer's run-out and learns the axis
    offset only poorly. Series that stay within ±20° are not worth a sweep (their height
    changes are tens of nm)."""
    calibration_step_deg: float = Field(10.0, gt=0, le=30)
    """Tilt step of the defocus–tilt calibration over the series' range."""
    focus_every: int = Field(1, ge=0, le=100)
    """Ours (0 = Leginon, which offers a beam-tilt defocus measurement per tilt but leaves it
    off): every this many tilts of a branch (its first tilt always), the Focus area beside
    the target is read, without changing the focus, at the target's image shift (before
    the tracking View, at the prediction; again after it where the View found the target
    far from there on the tilted plane), and the Record's focus is corrected by how far the
    reading is from the target's defocus; the table (or the model)
    carries the focus between readings. The Focus area lies along the tilt axis from the
    target, so it turns with it: the reading sees what no table measured elsewhere can (the
    target's own height and distance across the axis, a jump of the goniometer between the
    halves). Each reading costs an autofocus measurement (~4.5 s on the twin, two Focus
    exposures off the target)."""

    track_with_view: bool | Literal["auto"] = True
    """Leginon's tracking preset: before a Record a View (the wide, low-dose field) at the
    predicted image shift is correlated with the previous View of the tilt group (the same
    cosine-stretch correlation as the Records'), and the Record is taken where the View found
    the target; the Record's own tracking then re-anchors the group's View (the Views' chain
    alone adds its per-step errors up over a half series). Where the Record itself finds no
    tracking peak, the View's position is the measurement. ``true`` (default): a View before
    every Record: the stage's random settling and its sudden jumps after the last image are
    seen before the Record is taken (calm lamella, twin: 3.1-4.3 nm RMS from the target, against
    42-44 nm for Records placed at the prediction, ruled by 10 nm of random settling per
    move and the jumps), at about 15 % more microscope time per series and a View's dose
    (about 1 % of a Record's on the default presets) on the target per Record. ``false``:
    never (the Records track themselves, Leginon without a tracking preset). ``auto``: a
    View at the start tilt as the reference, and a branch tracks on Views from its first
    tilted Record whose own correlation gives no believable peak and which a View cannot
    find again (that Record's position is then measured by a View taken at once), on its
    Records before; both branches from the start when the start Record does not correlate
    with the Preview taken just before it (nothing fixed to the specimen at the Record's
    scale): the time of ``false`` where the Records track, the Views where they cannot (grid
    holes). Each View's dose counts towards ``dose_cap_e_a2``; its time is booked as
    tracking exposure."""
    relocate_with_view: bool = True
    """Ours: when the tracking correlation fails or puts the target beyond ``relocate_fraction``
    of the field, find the last good Record in a View (Leginon goes on blind)."""
    relocate_fraction: float = Field(0.25, gt=0, le=1)
    """Fraction of the Record's field beyond which a tracking result is checked by a View."""

    # Motions and waits (leginon.md §3)
    tilt_pause_s: float = Field(1.0, ge=0, le=60)
    """``tilt pause time``: wait after each tilt before the Record."""
    pause_after_record_s: float = Field(3.0, ge=0, le=60)
    """Leginon's sleep after each Record's correlation (it starts the next tilt first, so the
    move overlaps it; here the move follows it)."""
    approach_from_below: bool = True
    """On (default): every − tilt of a bidirectional scheme is approached from below, as the
    parallel strategies do (two stage moves per − tilt). Off (Leginon): each half's tilts
    are approached in its own direction, one move per tilt, the − half after a backlash
    release from above: half the settling error and jump chance on the − half (its Records
    18-20 nm RMS against 25-32 on the calm lamella), but the defocus–tilt table, measured
    approaching from below, then misses the − half's focus more (the twin grid session's −
    Records at −45° reached 1.0 µm against 0.5), so it is not the default yet."""
    backlash_release: bool = True
    """Off = Leginon's ``disable backlash correction`` (autoloader stages)."""
    backlash_steps: int = Field(5, ge=1, le=20)
    """Excursion of the release in 1° steps, taken back one step at a time."""
    backlash_pause_s: float = Field(1.0, ge=0, le=60)
    """Wait after each step of the release."""
    recentre_tolerance_um: float = Field(0.05, gt=0, le=5)
    """Stage recentring stops once the target is this close to the field centre."""
    recentre_iterations: int = Field(3, ge=0, le=10)
    """At most this many stage moves to recentre the target before its series (0 = none)."""

    # Drift manager
    drift_check: Literal["off", "half", "every"] = "half"
    """Measure drift before the first Record of each half, before every Record, or never."""
    drift_threshold_nm_s: float = Field(1.0, gt=0, le=100)
    """Wait until the drift rate falls below this."""
    drift_interval_s: float = Field(10.0, gt=0, le=60)
    """Time between the two images of one drift measurement (SerialEM's wait-for-drift
    default). A pair measures the displacement to 1-2 nm on the twin (rarely 5), so the rate to
    ~0.1-0.2 nm/s over 10 s; over 2 s it was ±0.5-1 nm/s against a 1 nm/s threshold."""
    drift_timeout_s: float = Field(60.0, ge=0, le=3600)
    """Give up waiting after this long and go on (the event says so)."""

    # Dose and exposure
    cos_exposure: bool = False
    """Exposure ∝ 1/cos θ (Leginon's default), else the Record preset's exposure at every tilt."""
    total_dose_e_a2: float | None = Field(None, gt=0, le=10000)
    """Leginon's ``total dose``: spread over the series (with cos_exposure, as 1/cos θ)."""
    min_exposure_s: float = Field(0.01, gt=0, le=60)
    """Shortest exposure the camera takes."""
    max_exposure_s: float = Field(30.0, gt=0, le=600)
    """Longest exposure allowed."""
    dose_cap_e_a2: float | None = Field(None, gt=0, le=10000)
    """A target's series stops before its dose would pass this (None = no cap)."""
    session_hours: float | None = Field(None, gt=0, le=1000)
    """No new target is started after this much microscope time (None = no cap)."""
    seed_from_archive: bool = True
    """With an archive (``tomopilot acquire --archive`` or ``--db``), a session without series
    of its own starts its predictor from the archive's newest series of the Record pixel size."""

    @model_validator(mode="after")
    def _limits(self) -> SequentialSettings:
        if self.min_exposure_s > self.max_exposure_s:
            raise ValueError(
                f"min_exposure_s {self.min_exposure_s} is above max_exposure_s "
                f"{self.max_exposure_s}"
            )
        return self

    def exposure_times_s(
        self, tilts_deg: Sequence[float], *, dose_rate_e_a2_s: float, preset_exposure_s: float = 1.0
    ) -> list[float]:
        """Each tilt's exposure (leginon.md §3.1); the preset's without a total dose.

        t_base = D / (r Σ 1/cos θᵢ) and tᵢ = t_base / cos θᵢ with cos_exposure, else
        D / (r n). Raises ConfigError naming the achievable dose when a time falls outside
        [min_exposure_s, max_exposure_s].
        """
        if self.total_dose_e_a2 is None:
            if not self.cos_exposure:
                return [preset_exposure_s for _ in tilts_deg]
            weights = [1.0 / math.cos(math.radians(t)) for t in tilts_deg]
            return [preset_exposure_s * w for w in weights]
        if dose_rate_e_a2_s <= 0:
            raise ConfigError("the Record preset has no dose rate", field="total_dose_e_a2")
        weights = [1.0 / math.cos(math.radians(t)) if self.cos_exposure else 1.0 for t in tilts_deg]
        base = self.total_dose_e_a2 / (dose_rate_e_a2_s * sum(weights))
        times = [base * w for w in weights]
        if min(times) < self.min_exposure_s or max(times) > self.max_exposure_s:
            total = sum(weights) * dose_rate_e_a2_s
            low = total * self.min_exposure_s / min(weights)
            high = total * self.max_exposure_s / max(weights)
            raise ConfigError(
                f"{self.total_dose_e_a2:g} e/Å² needs exposures of {min(times):.3g}–"
                f"{max(times):.3g} s; within [{self.min_exposure_s:g}, {self.max_exposure_s:g}] s "
                f"the series can receive {low:.3g}–{high:.3g} e/Å²",
                field="total_dose_e_a2",
            )
        return times
