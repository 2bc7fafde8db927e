"""Beam-induced motion of movie frames: a global trajectory plus a smooth local field.

The global trajectory moves fast at first and then slows (a saturating exponential along one
direction, biased perpendicular to the tilt axis, plus a gentle curve), and carries the stage
drift of the moment. Its total grows with tilt, as in the RELION tutorial data (2–9 Å per tilt).
The local field is a zero-mean sum of a few long-wavelength modes whose amplitude follows the
same time course, so that global + local is the true displacement of every pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tomopilot.instrument.twin.config import MovieConfig

N_LOCAL_MODES = 6


@dataclass
class MotionModel:
    """A movie's true motion, in image pixels.

    Attributes
    ----------
    frame_shifts_px
        (n, 2) global (x, y) displacement of each frame's content at its mid-time.
    time_profile
        (n,) the fraction of the local motion reached in each frame.
    modes
        (m, 6) local modes: kx, ky (cycles per pixel), phase, amplitude x, amplitude y, and the
        mean over the image that is removed so the field has zero mean.
    """

    frame_shifts_px: NDArray[np.float64]
    time_profile: NDArray[np.float64]
    modes: NDArray[np.float64]
    shape: tuple[int, int]

    def local_field(
        self, x_px: NDArray[np.floating], y_px: NDArray[np.floating]
    ) -> NDArray[np.float64]:
        """The local displacement pattern (..., 2) at full amplitude, before the time course."""
        x = np.asarray(x_px, np.float64)
        y = np.asarray(y_px, np.float64)
        out = np.zeros((*np.broadcast(x, y).shape, 2))
        for kx, ky, phase, ax, ay, mean in self.modes:
            wave = np.sin(2 * math.pi * (kx * x + ky * y) + phase) - mean
            out[..., 0] += ax * wave
            out[..., 1] += ay * wave
        return out

    def local_field_on_grid(
        self, x_px: NDArray[np.floating], y_px: NDArray[np.floating]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """:meth:`local_field` (x, y components, float32) on the grid of rows ``y_px`` × columns
        ``x_px``, each mode's sin(a + b) expanded as sin a·cos b + cos a·sin b (outer products
        of 1-D terms: the same values up to rounding, without a sine per pixel)."""
        x = np.asarray(x_px, np.float64)
        y = np.asarray(y_px, np.float64)
        field_x = np.zeros((y.size, x.size), np.float32)
        field_y = np.zeros((y.size, x.size), np.float32)
        for kx, ky, phase, ax, ay, mean in self.modes:
            a = 2 * math.pi * kx * x + phase
            b = 2 * math.pi * ky * y
            wave = np.multiply.outer(np.cos(b), np.sin(a)).astype(np.float32)
            wave += np.multiply.outer(np.sin(b), np.cos(a)).astype(np.float32)
            wave -= np.float32(mean)
            field_x += np.float32(ax) * wave
            field_y += np.float32(ay) * wave
        return field_x, field_y

    def displacement_px(
        self, frame: int, x_px: NDArray[np.floating], y_px: NDArray[np.floating]
    ) -> NDArray[np.float64]:
        """Total (global + local) displacement (..., 2) of image content at (x, y)."""
        local = self.local_field(x_px, y_px) * self.time_profile[frame]
        return np.asarray(local + self.frame_shifts_px[frame])

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form."""
        return {
            "frame_shifts_px": self.frame_shifts_px.tolist(),
            "time_profile": self.time_profile.tolist(),
            "local_modes": self.modes.tolist(),
            "shape": list(self.shape),
        }


def make_motion(
    config: MovieConfig,
    rng: np.random.Generator,
    *,
    n_frames: int,
    frame_time_s: float,
    pixel_size_a: float,
    tilt_deg: float,
    axis_angle_on_camera_deg: float,
    drift_px_s: tuple[float, float],
    shape: tuple[int, int],
) -> MotionModel:
    """Draw one movie's motion (see module docstring)."""
    t_mid = (np.arange(n_frames) + 0.5) * frame_time_s
    total_t = n_frames * frame_time_s
    tau = config.early_time_constant_s
    saturation = (1 - np.exp(-t_mid / tau)) / (1 - math.exp(-total_t / tau))
    tilt_factor = 0.6 + 0.4 / max(math.cos(math.radians(tilt_deg)), 0.2)
    total_a = config.global_motion_a * math.exp(rng.normal(0, config.motion_spread)) * tilt_factor
    direction = math.radians(axis_angle_on_camera_deg + 90.0 + rng.normal(0, 35.0))
    u1 = np.array([math.cos(direction), math.sin(direction)])
    u2 = np.array([-u1[1], u1[0]])
    curve = rng.normal(0, 0.2)
    path_a = (saturation[:, None] * u1 + curve * (t_mid / total_t)[:, None] ** 2 * u2) * total_a
    shifts = path_a / pixel_size_a + np.outer(t_mid, drift_px_s)

    ny, nx = shape
    modes = np.zeros((0, 6))
    if config.local_motion_a > 0 and min(shape) >= 8:
        rows = []
        for _ in range(N_LOCAL_MODES):
            wavelength_px = rng.uniform(0.5, 1.5) * max(ny, nx)
            angle = rng.uniform(0, 2 * math.pi)
            kx, ky = math.cos(angle) / wavelength_px, math.sin(angle) / wavelength_px
            phase = rng.uniform(0, 2 * math.pi)
            amp = (
                rng.normal(0, 1, 2)
                * config.local_motion_a
                / pixel_size_a
                / math.sqrt(N_LOCAL_MODES)
            )
            rows.append([kx, ky, phase, amp[0], amp[1], 0.0])
        modes = np.array(rows)
        yy, xx = np.mgrid[0:ny:16, 0:nx:16] + 0.5
        for row in modes:
            row[5] = float(np.mean(np.sin(2 * math.pi * (row[0] * xx + row[1] * yy) + row[2])))
    return MotionModel(frame_shifts_px=shifts, time_profile=saturation, modes=modes, shape=(ny, nx))
