"""The twin's optics: image shift through an imperfect calibration, focus, low-dose presets."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from tomopilot.instrument.errors import ImageShiftLimitError
from tomopilot.instrument.twin.config import OpticsConfig
from tomopilot.instrument.twin.core import TwinCore, logged
from tomopilot.instrument.twin.image_shift_settling import ShiftTransient, prune
from tomopilot.instrument.types import AreaPreset, LowDoseArea

# The twin's magnification table (nominal ×, a Krios-like EFTEM: LM then SA), whose 1-based
# position SerialEM reports as MagIndex (33 000× is 26, as on a Krios with an energy filter);
# a preset between two entries takes the nearer one.
# fmt: off
MAGNIFICATIONS = (
    34, 46, 62, 84, 115, 155, 210, 280, 380, 510, 700, 940, 1300,  # LM
    1750, 2250, 2850, 3600, 4800, 6500, 8700, 11000, 14000, 18000, 22500, 29000, 33000,
    37000, 47000, 53000, 64000, 81000, 105000, 130000, 165000, 215000, 285000, 380000,
)
# fmt: on
# The illumination value SerialEM reports on a three-condenser Thermo microscope in parallel
# illumination follows the illuminated area: this per µm of beam diameter (a 1.5 µm beam
# reads 0.115, as in a Krios mdoc at 33 000×).
INTENSITY_PER_UM = 0.0768


def mag_index(magnification: int) -> int:
    """SerialEM's MagIndex of a nominal magnification in the twin's table (1-based)."""
    ratios = [abs(math.log(magnification / m)) for m in MAGNIFICATIONS]
    return ratios.index(min(ratios)) + 1


def calibrated_pixel_size_a(
    points: list[tuple[int, float]] | tuple[tuple[int, float], ...], magnification: int
) -> float:
    """The unbinned pixel (Å) at ``magnification`` from calibrated (magnification, pixel) points.

    A pixel shrinks as 1/magnification; the product pixel × magnification (the camera's
    effective pixel over the projector's extra factor) is interpolated in log magnification
    between the calibrated points and held beyond them, so each point is returned exactly.
    """
    if magnification <= 0:
        raise ValueError(f"magnification {magnification} is not positive")
    known = sorted({int(m): float(p) for m, p in points}.items())
    if not known:
        raise ValueError("no calibrated magnification")
    logs = np.log([m for m, _ in known])
    products = np.array([m * p for m, p in known])
    product = float(np.interp(math.log(magnification), logs, products))
    return product / magnification


def intensity(preset: AreaPreset) -> float:
    """The illumination (C2) value SerialEM would read for this preset's beam."""
    return round(INTENSITY_PER_UM * preset.beam_diameter_um, 6)


# Settling after an image shift, Thermo's newer table (SEM-P): (µm moved, seconds).
_IS_SETTLE_TABLE = ((0.0, 0.0), (0.1, 0.0), (0.3, 0.4), (0.5, 0.5), (100.0, 0.5))


def image_shift_delay_s(
    moved_xy_um: tuple[float, float], record_pixel_nm: float, optics: OpticsConfig
) -> float:
    """The settling an image shift of ``moved_xy_um`` needs, as SerialEM computes it.

    SerialEM's ``ShiftManager::ComputeISDelay``: the larger of the two axes' moves (not the
    length of the move) is looked up in the IS delay table, a Record pixel finer than 1 nm adds
    ``is_delay_per_mag_doubling_s`` per halving, and the whole is scaled (``ISdelayScaleFactor``,
    here ``is_settle_s`` / 0.5). No move, no delay. The camera start-up SerialEM takes as built
    into this delay (``StartupForISDelays``) comes on top (``TwinOptics.set_image_shift_units``).
    """
    moved = max(abs(moved_xy_um[0]), abs(moved_xy_um[1]))
    if moved <= 0.0:
        return 0.0
    table = np.array(_IS_SETTLE_TABLE)
    delay = float(np.interp(moved, table[:, 0], table[:, 1]))
    if 0.0 < record_pixel_nm < 1.0:
        delay += optics.is_delay_per_mag_doubling_s * math.log2(1.0 / record_pixel_nm)
    return delay * optics.is_settle_s / 0.5


class TwinOptics:
    """Image shift, focus and presets (implements :class:`~tomopilot.instrument.Optics`).

    IS units are what the deflectors are set to. The calibration the software believes maps
    specimen µm to units by the identity; the truth adds the configured scale and rotation
    error, so asking for d µm moves the beam by (1 + ε)·R(δ)·d.
    """

    _part = "optics"

    def __init__(self, core: TwinCore) -> None:
        self._core = core
        cfg = core.config.optics
        rot = math.radians(cfg.is_rotation_error_deg)
        self._units_to_true_um = (1.0 + cfg.is_scale_error) * np.array(
            [[math.cos(rot), -math.sin(rot)], [math.sin(rot), math.cos(rot)]]
        )
        self._units = np.zeros(2)
        self._focus_um = 0.0
        self._presets = {area: core.config.presets.get(area) for area in LowDoseArea}
        # The pixel calibration: the configured presets' (magnification, pixel) points.
        self._pixel_points = tuple(
            (p.magnification, p.unbinned_pixel_size_a) for p in self._presets.values()
        )

    @property
    def image_shift_limit_um(self) -> float:
        return self._core.config.optics.image_shift_limit_um

    def specimen_to_is_matrix(self) -> NDArray[np.float64]:
        return np.eye(2)

    def image_shift_units(self) -> tuple[float, float]:
        return float(self._units[0]), float(self._units[1])

    def image_shift_um(self) -> tuple[float, float]:
        um = np.linalg.solve(self.specimen_to_is_matrix(), self._units)
        return float(um[0]), float(um[1])

    @logged
    def set_image_shift_units(
        self, x: float, y: float, timeout_factor: float | None = None
    ) -> None:
        """Set the deflectors to (x, y) IS units.

        ``timeout_factor`` is what SerialEM does about the settling: ``None``, the twin's own
        mode (``set_settling_during_startup``: a time-out the next exposure waits out during the
        camera start-up, else a sleep here); a number, a SerialEM image-shift time-out of that
        many times the table's delay (a script's ``SetImageShift`` multiplier ``#D``), and 0 or
        less none at all (``#D`` absent): the next exposure does not wait, and its beam sees
        what is left of the settling (``image_shift_settling``).
        """
        um = np.linalg.solve(self.specimen_to_is_matrix(), np.array([x, y]))
        limit = self.image_shift_limit_um
        if not (math.isfinite(x) and math.isfinite(y)) or np.any(np.abs(um) > limit):
            raise ImageShiftLimitError((float(um[0]), float(um[1])), limit)
        moved = np.linalg.solve(self.specimen_to_is_matrix(), np.array([x, y]) - self._units)
        self._units = np.array([x, y], dtype=np.float64)
        core = self._core
        record = self._presets[LowDoseArea.RECORD]
        seconds = image_shift_delay_s(
            (float(moved[0]), float(moved[1])),
            record.unbinned_pixel_size_a * record.binning / 10.0,
            core.config.optics,
        )
        built_in = core.config.optics.is_settle_startup_s
        now = core.clock.now_s()
        if np.any(moved != 0.0):
            true_move = self._units_to_true_um @ moved
            core.is_transients = prune(core.is_transients, now)
            core.is_transients.append(
                ShiftTransient(
                    now, (float(true_move[0]), float(true_move[1])), now + seconds + built_in
                )
            )
        if seconds <= 0.0:
            return
        # The beam may come on once the delay and the start-up built into it have passed
        # (SerialEM waits for the IS time-out plus StartupForISDelays minus the camera's own
        # start-up before it starts the camera).
        if timeout_factor is not None:  # SerialEM's time-out, as a script asked for it
            if timeout_factor > 0:
                core.settled_s = max(core.settled_s, now + timeout_factor * seconds + built_in)
        elif core.settle_during_startup:  # the next exposure waits for what is left of it
            core.settled_s = max(core.settled_s, now + seconds + built_in)
        else:
            core.spend("image_shift_settle", seconds)
            core.settled_s = max(core.settled_s, core.clock.now_s() + built_in)

    @logged
    def set_settling_during_startup(self, enabled: bool) -> None:
        """Let image-shift settling run while the camera starts up, not before it.

        SerialEM keeps an image-shift time-out (ShiftManager ``SetISTimeOut``) that the next
        exposure waits out, counting the camera's start-up (``StartupForISDelays``), instead of
        sleeping after the shift. Off, the twin sleeps the settling time in the shift command.
        """
        self._core.settle_during_startup = bool(enabled)
        if not enabled:
            self._core.wait_until("image_shift_settle", self._core.settled_s)

    @logged
    def set_image_shift_um(self, x_um: float, y_um: float) -> None:
        units = self.specimen_to_is_matrix() @ np.array([x_um, y_um], dtype=np.float64)
        limit = self.image_shift_limit_um
        if not (math.isfinite(x_um) and math.isfinite(y_um)) or max(abs(x_um), abs(y_um)) > limit:
            raise ImageShiftLimitError((x_um, y_um), limit)
        self.set_image_shift_units(float(units[0]), float(units[1]))

    def true_image_shift_um(self) -> tuple[float, float]:
        """Where the deflectors really put the beam on the specimen (ground truth)."""
        true = self._units_to_true_um @ self._units
        return float(true[0]), float(true[1])

    def focus_um(self) -> float:
        return self._focus_um

    @logged
    def set_focus_um(self, focus_um: float) -> None:
        if not math.isfinite(focus_um) or abs(focus_um) > 1000:
            raise ValueError(f"focus {focus_um} µm is outside the objective's range")
        self._focus_um = float(focus_um)

    def magnifications(self) -> tuple[int, ...]:
        """The twin's magnification table (:data:`MAGNIFICATIONS`, ascending)."""
        return MAGNIFICATIONS

    def pixel_size_a(self, magnification: int) -> float:
        """The camera's unbinned pixel on the specimen at ``magnification`` (Å).

        The twin's pixel calibration runs through its configured presets (each preset's own
        pixel at its magnification) and scales as 1/magnification between and beyond them.
        """
        return calibrated_pixel_size_a(self._pixel_points, int(magnification))

    def preset(self, area: LowDoseArea) -> AreaPreset:
        return self._presets[LowDoseArea(area)]

    @logged
    def set_preset(self, area: LowDoseArea, preset: AreaPreset | dict[str, object]) -> None:
        if not isinstance(preset, AreaPreset):
            preset = AreaPreset.model_validate(preset)
        width, height = self._core.config.camera.size_px
        if preset.camera_area_px is not None:
            w, h = preset.camera_area_px
            if w > width or h > height:
                raise ValueError(f"camera area {w}×{h} exceeds the {width}×{height} sensor")
        self._presets[LowDoseArea(area)] = preset

    def field_centre_lab_um(
        self, area: LowDoseArea, axis_offset_setting_um: float
    ) -> tuple[float, float]:
        """Lab (x, y) of the centre of ``area``'s field: true IS, axis centring, LD offset."""
        x, y = self.true_image_shift_um()
        if self._core.config.center_image_shift_on_tilt_axis:
            y += axis_offset_setting_um
        x += self.preset(area).offset_along_axis_um
        return x, y
