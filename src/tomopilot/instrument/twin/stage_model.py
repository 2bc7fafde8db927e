"""The goniometer's physics: where the specimen really goes when the stage is commanded.

Commanded and actual positions differ by (DESIGN.md §4):

- the tilt-axis offset (the mechanical axis lies ``tilt_axis_offset_um`` from the optic axis
  in y, with a different value per branch on side-entry holders) and the eucentric height
  error of the specimen;
- goniometer run-out: a smooth function of the tilt in x, y and z, zero at 0°;
- backlash: play in x, y and tilt that shows only on a direction reversal, a small position
  hysteresis tied to the tilt direction, and a one-off jump at the first reversal of a series
  (the start of the second branch);
- a random settling error per tilt move (accumulating as a random walk), run-away branches
  beyond ~40° that ramp up over a few steps, a periodic XY lead-screw error, rare sudden
  jumps, and drift that decays after each move.

The reported (encoder) position is the commanded one. Nothing here sleeps: callers charge the
time costs to the simulated clock.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from tomopilot.instrument.twin.config import StageConfig
from tomopilot.instrument.twin.pose import StagePose, rotation_about_x

_RUNOUT_RANGE_DEG = 70.0


class PlayAxis:
    """Backlash as mechanical play of width ``width``: the output lags a reversed input."""

    def __init__(self, width: float, start: float = 0.0) -> None:
        self.width = width
        self.output = start - width / 2.0  # as if last approached from below

    def command(self, value: float) -> None:
        half = self.width / 2.0
        if value > self.output + half:
            self.output = value - half
        elif value < self.output - half:
            self.output = value + half


def _smooth_profile(rng: np.random.Generator) -> NDArray[np.float64]:
    """Coefficients of a smooth random function of tilt, zero at 0°, max |g| = 1 over ±70°."""
    k = np.arange(1, 4)
    a = rng.normal(size=3) / k
    b = rng.normal(size=3) / k
    theta = np.deg2rad(np.linspace(-_RUNOUT_RANGE_DEG, _RUNOUT_RANGE_DEG, 281))
    values = (
        a[:, None] * np.sin(k[:, None] * theta) + b[:, None] * (np.cos(k[:, None] * theta) - 1)
    ).sum(0)
    scale = float(np.max(np.abs(values))) or 1.0
    return np.concatenate([a, b]) / scale


def _profile_value(coeffs: NDArray[np.float64], tilt_deg: float) -> float:
    k = np.arange(1, 4)
    t = math.radians(tilt_deg)
    a, b = coeffs[:3], coeffs[3:]
    return float(np.sum(a * np.sin(k * t) + b * (np.cos(k * t) - 1.0)))


RUNAWAY_RAMP_DEG = 9.0


def _runaway_steps(beyond_deg: float) -> float:
    """Run-away displacement in units of the full per-3° rate, ``beyond_deg`` past the onset.

    The per-step increment ramps up from zero to the full rate over the first
    ``RUNAWAY_RAMP_DEG`` (a worn region of the gear engages gradually), then stays constant.
    """
    ramp = RUNAWAY_RAMP_DEG
    if beyond_deg <= ramp:
        return beyond_deg**2 / (2.0 * ramp) / 3.0
    return (beyond_deg - ramp / 2.0) / 3.0


def _random_unit(rng: np.random.Generator, z_weight: float = 0.2) -> NDArray[np.float64]:
    v = rng.normal(size=3) * np.array([1.0, 1.0, z_weight])
    return np.asarray(v / (np.linalg.norm(v) or 1.0))


class StageModel:
    """State and kinematics of the twin's goniometer.

    Parameters
    ----------
    config
        The stage magnitudes.
    rng
        The stage's own random stream (seeded by the twin).
    """

    def __init__(self, config: StageConfig, rng: np.random.Generator) -> None:
        self.config = config
        self._rng = rng
        self.commanded = np.zeros(4)  # x, y, z (µm), tilt (deg)
        self._x = PlayAxis(config.xy_backlash_um)
        self._y = PlayAxis(config.xy_backlash_um)
        self._tilt = PlayAxis(config.tilt_backlash_deg)
        self.eucentric_z_um = float(rng.normal(0.0, config.initial_height_sigma_um))
        self._runout = [_smooth_profile(rng) for _ in range(3)]
        self._periodic_phase = rng.uniform(0, 2 * np.pi, size=2)
        self._runaway: dict[int, tuple[float, float]] = {}
        for side in (+1, -1):
            if rng.uniform() < config.runaway_probability:
                low, high = config.runaway_rate_um_per_step
                self._runaway[side] = (float(rng.uniform(low, high)), float(rng.choice([-1, 1])))
        self._reversal_play = _random_unit(rng, 0.0) * config.tilt_reversal_play_um
        self._last_tilt_direction = +1
        self._seen_directions: set[int] = set()
        self._branch_jump_armed = True
        self.extra_um = np.zeros(3)
        self._drift_start_s = 0.0
        self._drift_v0 = np.zeros(3)
        self._drift_floor = np.zeros(3)
        self.n_moves = 0
        # Every sudden jump as (time_s, magnitude_um): ground truth for reports only.
        self.jumps: list[tuple[float, float]] = []

    # -- commands -----------------------------------------------------------------------------
    def move_xyz(self, x_um: float, y_um: float, z_um: float, time_s: float) -> None:
        """Command a translation that completes at ``time_s``."""
        moved_xy = (x_um, y_um) != (self.commanded[0], self.commanded[1])
        self.commanded[:3] = (x_um, y_um, z_um)
        self._x.command(x_um)
        self._y.command(y_um)
        if moved_xy:
            self._branch_jump_armed = True
            self._seen_directions.clear()
        self._after_move(time_s)

    def tilt(self, tilt_deg: float, time_s: float) -> None:
        """Command a tilt that completes at ``time_s``."""
        delta = tilt_deg - self.commanded[3]
        if delta == 0:
            return
        direction = 1 if delta > 0 else -1
        if direction != self._last_tilt_direction:
            if self._branch_jump_armed and self._seen_directions:
                magnitude = self.config.branch_start_jump_um * self._rng.uniform(0.5, 1.5)
                jump = _random_unit(self._rng, 0.1) * np.array([0.4, 1.0, 1.0])
                self.extra_um += magnitude * jump / (np.linalg.norm(jump) or 1.0)
                self._branch_jump_armed = False
            self._last_tilt_direction = direction
        self._seen_directions.add(direction)
        # A settling error per move, not proportional to the travel: a 15° branch switch lands
        # about as well as a 3° step (PACE23: per-step unpredicted shifts of 0.05–0.12 µm).
        sigma = self.config.step_error_sigma_um * math.sqrt(min(1.0, abs(delta) / 3.0))
        self.extra_um += self._rng.normal(0.0, sigma, size=3) * np.array([1.0, 1.0, 0.5])
        self.commanded[3] = tilt_deg
        self._tilt.command(tilt_deg)
        self._after_move(time_s)

    def jump(self, magnitude_um: float, time_s: float = math.nan) -> None:
        """A sudden jump of the specimen by ``magnitude_um`` in a random in-plane direction
        (at ``time_s``, kept in :attr:`jumps`)."""
        self.extra_um += _random_unit(self._rng, 0.1) * magnitude_um
        self.jumps.append((time_s, magnitude_um))

    def _after_move(self, time_s: float) -> None:
        self.n_moves += 1
        self.extra_um += self._drift_displacement(time_s)
        self._drift_start_s = time_s
        self._drift_v0 = _random_unit(self._rng) * self.config.drift_nm_s * 1e-3
        self._drift_floor = _random_unit(self._rng) * self.config.drift_floor_nm_s * 1e-3
        if self._rng.uniform() < self.config.jump_probability:
            low, high = self.config.jump_um
            self.jump(float(self._rng.uniform(low, high)), time_s)

    def start_drift_burst(self, time_s: float, factor: float) -> None:
        """Restart the drift ``factor`` times faster (after a dewar fill, say)."""
        self.extra_um += self._drift_displacement(time_s)
        self._drift_start_s = time_s
        self._drift_v0 = _random_unit(self._rng) * self.config.drift_nm_s * 1e-3 * factor

    # -- readouts -----------------------------------------------------------------------------
    def _drift_displacement(self, time_s: float) -> NDArray[np.float64]:
        dt = max(0.0, time_s - self._drift_start_s)
        tau = self.config.drift_tau_s
        return np.asarray(self._drift_v0 * tau * (1 - math.exp(-dt / tau)) + self._drift_floor * dt)

    def drift_velocity_um_s(self, time_s: float) -> NDArray[np.float64]:
        """Instantaneous drift velocity (µm/s)."""
        dt = max(0.0, time_s - self._drift_start_s)
        return np.asarray(
            self._drift_v0 * math.exp(-dt / self.config.drift_tau_s) + self._drift_floor
        )

    def actual_tilt_deg(self) -> float:
        """The true tilt (backlash included)."""
        return self._tilt.output + self.config.tilt_backlash_deg / 2.0

    def axis_offset_um(self, tilt_deg: float) -> float:
        """The true lateral position of the mechanical tilt axis for this branch."""
        delta = self.config.tilt_axis_branch_delta_um / 2.0
        return self.config.tilt_axis_offset_um + (delta if tilt_deg >= 0 else -delta)

    def displacement_um(self, time_s: float) -> NDArray[np.float64]:
        """The lab-frame translation of the whole goniometer now (µm, x y z).

        Step errors, branch-start jumps, random jumps, drift and reversal play move the
        rotating assembly, the axis with it: the specimen then rotates about the mechanical
        axis plus this displacement. Run-out, a function of the tilt, is not included.
        """
        hysteresis = self._reversal_play * (0.5 if self._last_tilt_direction > 0 else -0.5)
        return np.asarray(self.extra_um + self._drift_displacement(time_s) + hysteresis)

    def runout_um(self, tilt_deg: float) -> NDArray[np.float64]:
        """Run-out (x, y, z) at a tilt, run-away branches included."""
        amps = (self.config.runout_x_um, self.config.runout_y_um, self.config.runout_z_um)
        value = np.array(
            [a * _profile_value(c, tilt_deg) for a, c in zip(amps, self._runout, strict=True)]
        )
        side = 1 if tilt_deg >= 0 else -1
        if side in self._runaway:
            rate, sign = self._runaway[side]
            beyond = max(0.0, abs(tilt_deg) - self.config.runaway_onset_deg)
            value[1] += sign * rate * _runaway_steps(beyond)
        return value

    def runaway_branches(self) -> dict[str, float]:
        """Which branches run away, with their rate (µm per 3° step): ground truth only."""
        return {("+" if s > 0 else "-"): r for s, (r, _) in self._runaway.items()}

    def actual_xy_um(self) -> tuple[float, float]:
        """Actual x, y of the stage (play and lead-screw error included)."""
        px, py = self.config.xy_error_period_um
        amp = self.config.xy_periodic_error_um
        x = self._x.output + self.config.xy_backlash_um / 2.0
        y = self._y.output + self.config.xy_backlash_um / 2.0
        x += amp * math.sin(2 * math.pi * x / px + self._periodic_phase[0])
        y += amp * math.sin(2 * math.pi * y / py + self._periodic_phase[1])
        return x, y

    def pose(self, time_s: float) -> StagePose:
        """The true specimen placement at ``time_s``."""
        tilt = self.actual_tilt_deg()
        rot = rotation_about_x(tilt)
        x_a, y_a = self.actual_xy_um()
        # Raising stage z lifts the specimen up the column, i.e. towards smaller depth z.
        shift = np.array([-x_a, -y_a, self.eucentric_z_um - self.commanded[2]])
        axis = np.array([0.0, self.axis_offset_um(tilt), 0.0])
        translation = (
            rot @ (shift - axis) + axis + self.runout_um(tilt) + self.displacement_um(time_s)
        )
        return StagePose(rotation=rot, translation=translation, tilt_deg=tilt)
