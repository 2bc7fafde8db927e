"""Set-up of an area before its tilt series (pacetomo.md §3.1).

Move to target 1 and find the eucentric height; when target 1's View image from selection
(``viewfile``) is on disk, realign to it with the X,Y-positioning routine (stage move, View
alignment, image shift reset into the stage, final alignment); take each target's Preview map
at the selection tilt (unless the targets file names one already on disk); tilt to the start
tilt; re-centre target 1 on its map, focus it to maxDefocus (at its own focus point when the
targets file gives one, Leginon's focus target), and bring every other target in by
its approach shift (foreshortened from the selection tilt) and, with previewAli, by aligning to
its map. Image shifts are relative to the area's origin: whatever image shift the realignment
left, so that its last correction is kept.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tomopilot.acquisition.output.saved_images import image_from_file, read_section
from tomopilot.acquisition.output.side_files import write_target_preview
from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.plan.target_defocus import defocus_range_um
from tomopilot.acquisition.setup.autofocus_scale import autofocus_with_scale
from tomopilot.acquisition.strategies.base import Toolkit
from tomopilot.acquisition.strategies.geometry_model import approach_scale
from tomopilot.acquisition.strategies.map_register import register_to_map
from tomopilot.core.errors import ConfigError
from tomopilot.geometry.scope_state import temporary_preset
from tomopilot.instrument.protocol import Microscope
from tomopilot.instrument.types import Image, LowDoseArea
from tomopilot.targeting.map_image import MapImage
from tomopilot.targeting.realign import realign
from tomopilot.targeting.targets import Target

_log = logging.getLogger(__name__)


@dataclass
class AreaSetup:
    """What the set-up found: references, start image shifts and the focus F0."""

    maps: dict[int, Image] = field(default_factory=dict)
    map_exposures: dict[int, int] = field(default_factory=dict)
    start_is_um: dict[int, tuple[float, float]] = field(default_factory=dict)
    focus0_um: float = 0.0
    origin_is_um: tuple[float, float] = (0.0, 0.0)
    dose_e_a2: dict[int, float] = field(default_factory=dict)
    """Per target, the dose of the images taken at it (the realignment's Views, its map, its
    start Preview)."""
    views: dict[int, Image] = field(default_factory=dict)
    """Per target, the View from selection it was realigned to (the hole and its edge)."""


@dataclass(frozen=True)
class Realignment:
    """What :func:`reach_area`'s realignment to target 1's View did: the dose its Views put on
    target 1 (e/Å²) and that View (None without a realignment)."""

    dose_e_a2: float = 0.0
    view: Image | None = None


def _saved_map(run_dir: Path, target: Target, like: Image) -> Image | None:
    """A target map named in the targets file and present on disk, as an Image."""
    if not target.tgt_file:
        return None
    data = read_section(run_dir / target.tgt_file)
    if data is None or data.shape != like.data.shape:
        return None
    return Image(**{**like.__dict__, "data": data})


def saved_view_map(
    scope: Microscope, target: Target, run_dir: Path, centre_um: tuple[float, float]
) -> MapImage | None:
    """Target 1's View image from selection (``viewfile``), as a map centred at ``centre_um``.

    None when the targets file names no View image or it is not on disk. A file whose size
    differs from the View preset's binned field is refused with its name.
    """
    image = saved_view_image(scope, target, run_dir)
    if image is None:
        return None
    matrix = scope.camera.specimen_to_camera_matrix(LowDoseArea.VIEW)
    return MapImage(image.data, centre_um, matrix, image)


def has_saved_view(target: Target, run_dir: Path) -> bool:
    """Whether the set-up will realign to this target's View (``viewfile`` named and on disk)."""
    return bool(target.view_file) and (run_dir / str(target.view_file)).is_file()


def saved_view_image(scope: Microscope, target: Target, run_dir: Path) -> Image | None:
    """A target's View image from selection (``viewfile``), checked against the View preset."""
    if not target.view_file:
        return None
    path = run_dir / target.view_file
    image = image_from_file(path, 0, LowDoseArea.VIEW, scope)
    if image is None:
        return None
    preset = scope.optics.preset(LowDoseArea.VIEW)
    width, height = preset.camera_area_px or scope.camera.size_px
    expected = (height // preset.binning, width // preset.binning)
    if image.data.shape != expected:
        raise ConfigError(
            f"the View image is {image.data.shape[1]}×{image.data.shape[0]} px, but the View "
            f"preset gives {expected[1]}×{expected[0]}",
            path=path,
            field="viewfile",
        )
    return image


def realign_first_target(scope: Microscope, view_map: MapImage) -> tuple[str, float]:
    """Bring the field onto target 1 with the X,Y-positioning routine; a one-line account and
    the dose its View images put on the target (e/Å²: the realignment's Views and the final
    one, all under the View map's conditions, centred on the target)."""
    first, final = realign(scope, view_map)
    last = math.hypot(*first.corrections_um[-1]) * 1e3
    text = (
        f"{first.iterations} View image(s), last correction {last:.0f} nm; after the image "
        f"shift reset {math.hypot(*final.correction_um) * 1e3:.0f} nm"
    )
    return text, (first.iterations + 1) * first.image.dose_e_a2


def reach_area(
    scope: Microscope,
    targets: list[Target],
    area_stage_um: tuple[float, float] | None,
    run_dir: Path,
    on_step: Callable[[str, str], None],
    *,
    view_tilt_deg: float | None = None,
) -> Realignment:
    """Stage to the area, eucentric height, and realignment to target 1's View when saved.

    Afterwards the image shift in force is the area's origin (see :func:`take_maps`).
    ``on_step(step, detail)`` reports each stage of it. ``view_tilt_deg``: the tilt the View
    was taken at (the selection's); the stage tilts there before realigning (an area of a
    session starts where the last series ended, ±60° say, where the View's field is
    foreshortened across the axis). Returns what the realignment did, for :func:`take_maps`
    (its dose is counted with the set-up's other images; its View is kept for the recentring).
    """
    if area_stage_um is not None:
        x, y = area_stage_um
        scope.stage.move_to(x_um=x, y_um=y, backlash_compensate=True)
    scope.optics.set_image_shift_um(0.0, 0.0)
    scope.measurements.eucentricity()
    on_step("eucentricity", f"stage z {scope.stage.position().z_um:.2f} µm")
    first = targets[0] if targets else None
    if first is not None:
        stage = scope.stage.position()
        x, y = area_stage_um or (stage.x_um, stage.y_um)
        centre = (x + first.ss_x_um, y + first.ss_y_um)
        view_map = saved_view_map(scope, first, run_dir, centre)
        if view_map is not None:
            tilt = scope.stage.position().tilt_deg
            if view_tilt_deg is not None and abs(tilt - view_tilt_deg) > 0.05:
                scope.stage.tilt_to(view_tilt_deg, backlash_compensate=True)
            text, dose = realign_first_target(scope, view_map)
            text += f" (from {tilt:.1f}°)"
            on_step("realign", text)
            # The field now sits on target 1: the area's origin is its shift back.
            ix, iy = scope.optics.image_shift_um()
            scope.optics.set_image_shift_um(ix - first.ss_x_um, iy - first.ss_y_um)
            return Realignment(dose, view_map.image)
    return Realignment()


def take_maps(
    scope: Microscope,
    targets: list[Target],
    settings: AcquisitionSettings,
    run_dir: Path,
    root: str,
    realigned: Realignment | None = None,
) -> AreaSetup:
    """Preview maps of all targets at the selection tilt, written as ``<root>_tgt_NNN.mrc``.

    The image shift in force when called is the area's origin: target shifts add to it.
    ``realigned``: :func:`reach_area`'s realignment to target 1's View, whose dose is counted
    with the maps' and whose View is kept (``views``).
    """
    origin = scope.optics.image_shift_um()
    setup = AreaSetup(origin_is_um=origin)
    if realigned is not None and realigned.view is not None:
        setup.dose_e_a2[1] = realigned.dose_e_a2
        setup.views[1] = realigned.view
    scope.stage.tilt_to(settings.tilt_targets_deg, backlash_compensate=True)
    for number, target in enumerate(targets, start=1):
        if target.skip:
            continue
        scope.optics.set_image_shift_um(origin[0] + target.ss_x_um, origin[1] + target.ss_y_um)
        image = scope.camera.acquire(LowDoseArea.PREVIEW)
        setup.dose_e_a2[number] = setup.dose_e_a2.get(number, 0.0) + image.dose_e_a2
        saved = _saved_map(run_dir, target, image)
        if saved is not None:
            image = saved
        else:
            write_target_preview(
                run_dir,
                root,
                number,
                image.data,
                pixel_size_a=image.pixel_size_a,
                labels=[f"tomopilot target {number} map, tilt {image.tilt_deg:g}"],
            )
        setup.maps[number] = image
        setup.map_exposures[number] = image.exposure_id
    return setup


def prepare_start(
    scope: Microscope,
    targets: list[Target],
    settings: AcquisitionSettings,
    start_tilt_deg: float,
    setup: AreaSetup,
    toolkit: Toolkit,
    *,
    calibrate_autofocus: bool = True,
) -> AreaSetup:
    """Tilt to the start tilt, centre and focus target 1, bring the others in.

    ``calibrate_autofocus``: the autofocus's scale is read from two known lens changes and
    taken out (:func:`autofocus_with_scale`, kept in ``toolkit.autofocus_scale``); off, one
    plain autofocus."""
    scope.stage.tilt_to(start_tilt_deg, backlash_compensate=True)
    sigma = 1.0
    if settings.tilt_targets_deg == 0:
        sigma = approach_scale(settings.pretilt_deg, settings.rotation_deg, start_tilt_deg)
    origin = np.array(setup.origin_is_um)
    most_underfocus = defocus_range_um(settings)[0]
    for number, target in enumerate(targets, start=1):
        shift = origin + np.array([target.ss_x_um, sigma * target.ss_y_um])
        if target.skip:  # never imaged: its nominal place, for the strategies' bookkeeping
            setup.start_is_um[number] = (float(shift[0]), float(shift[1]))
            continue
        scope.optics.set_image_shift_um(float(shift[0]), float(shift[1]))
        if settings.preview_align and number in setup.maps:
            preview = scope.camera.acquire(LowDoseArea.PREVIEW)
            setup.dose_e_a2[number] = setup.dose_e_a2.get(number, 0.0) + preview.dose_e_a2
            found = register_to_map(toolkit, setup.maps[number], preview)
            if found is not None:
                shift = shift + found
            else:
                _log.warning(
                    "target %d: no reliable alignment to its map at the start tilt", number
                )
        if number == 1:
            origin = shift.copy()
            focus_point = target.focus_offset_um
            if focus_point is None:  # the Focus area, on the tilt axis beside the target
                scope.optics.set_image_shift_um(float(shift[0]), float(shift[1]))
                _autofocus(scope, toolkit, most_underfocus, calibrate_autofocus)
            else:  # Leginon's focus target: the Focus area centred on the target's focus point
                at = shift + np.array([focus_point[0], sigma * focus_point[1]])
                scope.optics.set_image_shift_um(float(at[0]), float(at[1]))
                with temporary_preset(scope, LowDoseArea.FOCUS, offset_along_axis_um=0.0):
                    _autofocus(scope, toolkit, most_underfocus, calibrate_autofocus)
                scope.optics.set_image_shift_um(float(shift[0]), float(shift[1]))
            setup.focus0_um = scope.optics.focus_um()
        setup.start_is_um[number] = (float(shift[0]), float(shift[1]))
    return setup


def _autofocus(scope: Microscope, toolkit: Toolkit, defocus_um: float, calibrate: bool) -> None:
    if calibrate:
        toolkit.autofocus_scale = autofocus_with_scale(scope, defocus_um)
    else:
        scope.measurements.autofocus(defocus_um)
