"""The typed ``Microscope`` protocol that every backend implements.

A microscope is a bundle of small parts, each its own protocol so that code asks for only what
it uses: :class:`Stage`, :class:`Optics`, :class:`Camera`, :class:`Measurements` and
:class:`Housekeeping`, plus the :class:`~tomopilot.core.clock.Clock` that every wait goes
through. Units follow DESIGN.md §3: µm on the specimen and stage, degrees, seconds, Å pixels.

Conventions
-----------
- Specimen frame: x along the tilt axis, y perpendicular to it in the plane normal to the beam,
  z along the beam (down the column). A stage tilt θ maps (y, z) to
  (y cos θ − z sin θ, y sin θ + z cos θ).
- Image shift is expressed in specimen µm (``*_um``) or in the optics' own IS units
  (``*_units``); ``specimen_to_is_matrix`` is the calibration between them.
- ``focus_um`` is the objective focus readout for the Record area: the defocus of a point at
  the eucentric height (z = 0). The defocus of a point at depth z is ``focus_um + z`` (a point
  higher up the column is more underfocused); negative is underfocus, as SerialEM reports it.
  This is the z of PACEtomo's geometry model, signed like a measured defocus.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from tomopilot.core.clock import Clock
from tomopilot.core.events import EventBus
from tomopilot.instrument.types import (
    AreaPreset,
    DewarStatus,
    Image,
    LowDoseArea,
    Movie,
    StageLimits,
    StagePosition,
)


@runtime_checkable
class Stage(Protocol):
    """The goniometer: x, y, z translation and tilt."""

    @property
    def limits(self) -> StageLimits:
        """The stage travel."""
        ...

    def position(self) -> StagePosition:
        """The stage readout (encoders), which is not where the specimen really is."""
        ...

    def move_to(
        self,
        *,
        x_um: float | None = None,
        y_um: float | None = None,
        z_um: float | None = None,
        backlash_compensate: bool = False,
    ) -> None:
        """Move to an absolute position; axes left as None stay where they are.

        With ``backlash_compensate`` the final approach of every moved axis is made in the
        positive direction from beyond the backlash, so repeated moves land alike.
        """
        ...

    def move_by(
        self,
        *,
        dx_um: float = 0.0,
        dy_um: float = 0.0,
        dz_um: float = 0.0,
        backlash_compensate: bool = False,
    ) -> None:
        """Move relative to the current readout."""
        ...

    def tilt_to(self, tilt_deg: float, *, backlash_compensate: bool = False) -> None:
        """Tilt to an absolute angle; with compensation the last approach is in +."""
        ...

    @property
    def tilt_axis_offset_um(self) -> float:
        """The tilt-axis offset the software applies (SerialEM ``TiltAxisOffset``)."""
        ...

    def set_tilt_axis_offset_um(self, offset_um: float) -> None:
        """Set the lateral (specimen y) offset of the tilt axis from the optic axis."""
        ...


@runtime_checkable
class Optics(Protocol):
    """Image shift, objective focus and the low-dose area presets."""

    @property
    def image_shift_limit_um(self) -> float:
        """Hard limit of the image shift, per axis, in specimen µm."""
        ...

    def image_shift_um(self) -> tuple[float, float]:
        """Current image shift in specimen µm (through the calibration)."""
        ...

    def set_image_shift_um(self, x_um: float, y_um: float) -> None:
        """Set the image shift in specimen µm; raises ImageShiftLimitError beyond the limit."""
        ...

    def image_shift_units(self) -> tuple[float, float]:
        """Current image shift in the optics' IS units."""
        ...

    def set_image_shift_units(self, x: float, y: float) -> None:
        """Set the image shift in IS units."""
        ...

    def specimen_to_is_matrix(self) -> NDArray[np.float64]:
        """The calibrated 2×2 matrix from specimen µm to IS units."""
        ...

    def focus_um(self) -> float:
        """Objective focus readout (µm, negative = underfocus at the eucentric height)."""
        ...

    def set_focus_um(self, focus_um: float) -> None:
        """Set the objective focus readout."""
        ...

    def magnifications(self) -> tuple[int, ...]:
        """The microscope's magnification table in imaging mode (nominal ×, ascending).

        A preset's magnification must be one of these: the lenses have no others.
        """
        ...

    def pixel_size_a(self, magnification: int) -> float:
        """The camera's unbinned pixel on the specimen (Å) at a magnification of the table,
        from the microscope's own calibration."""
        ...

    def preset(self, area: LowDoseArea) -> AreaPreset:
        """The imaging conditions of a low-dose area."""
        ...

    def set_preset(self, area: LowDoseArea, preset: AreaPreset) -> None:
        """Replace the imaging conditions of a low-dose area."""
        ...


@runtime_checkable
class Camera(Protocol):
    """The detector: single images and frame movies in a low-dose area."""

    @property
    def size_px(self) -> tuple[int, int]:
        """(width, height) of the full sensor in unbinned pixels."""
        ...

    def specimen_to_camera_matrix(self, area: LowDoseArea) -> NDArray[np.float64]:
        """Calibrated 2×2 matrix from a specimen-plane shift (µm, x along the tilt axis) to
        the shift of image content in ``area``'s (binned) pixels (column, row).

        A specimen feature displaced by d µm appears displaced by M @ d pixels; an image shift
        or stage move of +d µm moves the field over the specimen, so content moves by −M @ d.
        """
        ...

    def acquire(self, area: LowDoseArea = LowDoseArea.RECORD) -> Image:
        """Expose in ``area`` and return the image."""
        ...

    def acquire_movie(
        self, area: LowDoseArea = LowDoseArea.RECORD, n_frames: int | None = None
    ) -> Movie:
        """Expose in ``area`` and return the frames (``n_frames`` overrides the preset)."""
        ...


@runtime_checkable
class Measurements(Protocol):
    """Procedures that measure the specimen with the beam (and spend dose doing it)."""

    def measure_defocus_um(self) -> float:
        """Autofocus measurement in the Focus area, without changing the focus."""
        ...

    def autofocus(self, target_defocus_um: float) -> float:
        """Measure, then set the focus so the Focus area sits at ``target_defocus_um``.

        Returns the defocus measured before the correction.
        """
        ...

    def eucentricity(self, *, fine: bool = False) -> float:
        """Find the eucentric height and move stage z there; returns the z change (µm)."""
        ...


@runtime_checkable
class Housekeeping(Protocol):
    """Slow duties of a long session: cryogen, gun and energy filter."""

    def dewar_status(self) -> DewarStatus:
        """Whether the dewars are filling and when the next fill is due."""
        ...

    def refill_dewar(self) -> None:
        """Start a refill now and wait until it and the settling pause are over."""
        ...

    def wait_for_dewar(self) -> float:
        """Wait while a fill is under way; returns the seconds waited."""
        ...

    def flash_advised(self) -> bool:
        """Whether the cold FEG asks to be flashed."""
        ...

    def flash_feg(self) -> None:
        """Flash the cold field-emission gun."""
        ...

    def refine_zlp(self) -> None:
        """Re-centre the energy-filter slit on the zero-loss peak."""
        ...


@runtime_checkable
class Microscope(Protocol):
    """A whole microscope: the parts above, a clock, and an event bus it reports on."""

    @property
    def name(self) -> str:
        """A human-readable name."""
        ...

    @property
    def clock(self) -> Clock:
        """Every wait goes through it."""
        ...

    @property
    def events(self) -> EventBus:
        """The bus the microscope reports on."""
        ...

    @property
    def stage(self) -> Stage:
        """The goniometer."""
        ...

    @property
    def optics(self) -> Optics:
        """Image shift, focus and presets."""
        ...

    @property
    def camera(self) -> Camera:
        """The detector."""
        ...

    @property
    def measurements(self) -> Measurements:
        """Autofocus and eucentricity."""
        ...

    @property
    def housekeeping(self) -> Housekeeping:
        """Cryogen, gun and energy filter."""
        ...
