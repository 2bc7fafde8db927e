"""Set-up of an area before its tilt series (pacetomo.md §3.1).

Move to target 1 and find the eucentric height; when target 1's View image from selection
(``viewfile``) is on disk, realign to it with the X,Y-positioning routine (stage move, View
alignment, image shift reset into the stage, final alignment); take each target's Preview map
at the selection tilt (unless the targets file names one already on disk); tilt to the start
tilt; re-centre target 1 on its map, focus it to maxDefocus, and bring every other target in by
its approach shift (foreshortened from the selection tilt) and, with previewAli, by aligning to
its map. Image shifts are relative to the area's origin: whatever image shift the realignment
left, so that its last correction is kept.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import mrcfile
import numpy as np

from tomopilot.acquisition.settings import AcquisitionSettings
from tomopilot.acquisition.side_files import write_target_preview
from tomopilot.acquisition.strategies.geometry_model import approach_scale
from tomopilot.acquisition.strategy import Toolkit
from tomopilot.acquisition.target_defocus import defocus_range_um
from tomopilot.core.errors import ConfigError
from tomopilot.instrument.protocol import Microscope
from tomopilot.instrument.types import Image, LowDoseArea, StagePosition
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


def _saved_map(run_dir: Path, target: Target, like: Image) -> Image | None:
    """A target map named in the targets file and present on disk, as an Image."""
    if not target.tgt_file:
        return None
    path = run_dir / target.tgt_file
    if not path.exists():
        return None
    with mrcfile.open(path, permissive=True) as mrc:
        data = np.asarray(mrc.data, dtype=np.float32)
    if data.ndim == 3:
        data = data[0]
    if data.shape != like.data.shape:
        return None
    return Image(**{**like.__dict__, "data": data})


def saved_view_map(
    scope: Microscope, target: Target, run_dir: Path, centre_um: tuple[float, float]
) -> MapImage | None:
    """Target 1's View image from selection (``viewfile``), as a map centred at ``centre_um``.

    None when the targets file names no View image or it is not on disk. A file whose size
    differs from the View preset's binned field is refused with its name.
    """
    if not target.view_file:
        return None
    path = run_dir / target.view_file
    if not path.exists():
        return None
    with mrcfile.open(path, permissive=True) as mrc:
        data = np.asarray(mrc.data, dtype=np.float32)
    if data.ndim == 3:
        data = data[0]
    preset = scope.optics.preset(LowDoseArea.VIEW)
    width, height = preset.camera_area_px or scope.camera.size_px
    expected = (height // preset.binning, width // preset.binning)
    if data.shape != expected:
        raise ConfigError(
            f"the View image is {data.shape[1]}×{data.shape[0]} px, but the View preset "
            f"gives {expected[1]}×{expected[0]}",
            path=path,
            field="viewfile",
        )
    matrix = scope.camera.specimen_to_camera_matrix(LowDoseArea.VIEW)
    stage = scope.stage.position()
    conditions = Image(  # the View preset's conditions, which realignment reproduces
        data=data,
        area=LowDoseArea.VIEW,
        pixel_size_a=preset.unbinned_pixel_size_a * preset.binning,
        binning=preset.binning,
        magnification=preset.magnification,
        exposure_s=preset.exposure_s,
        dose_e_a2=0.0,
        defocus_um=preset.defocus_offset_um,
        stage=StagePosition(centre_um[0], centre_um[1], stage.z_um, 0.0),
        image_shift_um=(0.0, 0.0),
        time_s=0.0,
        datetime=datetime.fromtimestamp(path.stat().st_mtime, tz=UTC),
        exposure_id=-1,
    )
    return MapImage(data, centre_um, matrix, conditions)


def realign_first_target(scope: Microscope, view_map: MapImage) -> str:
    """Bring the field onto target 1 with the X,Y-positioning routine; a one-line account."""
    first, final = realign(scope, view_map)
    last = math.hypot(*first.corrections_um[-1]) * 1e3
    return (
        f"{first.iterations} View image(s), last correction {last:.0f} nm; after the image "
        f"shift reset {math.hypot(*final.correction_um) * 1e3:.0f} nm"
    )


def take_maps(
    scope: Microscope,
    targets: list[Target],
    settings: AcquisitionSettings,
    run_dir: Path,
    root: str,
) -> AreaSetup:
    """Preview maps of all targets at the selection tilt, written as ``<root>_tgt_NNN.mrc``.

    The image shift in force when called is the area's origin: target shifts add to it.
    """
    origin = scope.optics.image_shift_um()
    setup = AreaSetup(origin_is_um=origin)
    scope.stage.tilt_to(settings.tilt_targets_deg, backlash_compensate=True)
    for number, target in enumerate(targets, start=1):
        if target.skip:
            continue
        scope.optics.set_image_shift_um(origin[0] + target.ss_x_um, origin[1] + target.ss_y_um)
        image = scope.camera.acquire(LowDoseArea.PREVIEW)
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
) -> AreaSetup:
    """Tilt to the start tilt, centre and focus target 1, bring the others in."""
    scope.stage.tilt_to(start_tilt_deg, backlash_compensate=True)
    sigma = 1.0
    if settings.tilt_targets_deg == 0:
        sigma = approach_scale(settings.pretilt_deg, settings.rotation_deg, start_tilt_deg)
    origin = np.array(setup.origin_is_um)
    most_underfocus = defocus_range_um(settings)[0]
    for number, target in enumerate(targets, start=1):
        if target.skip:
            continue
        shift = origin + np.array([target.ss_x_um, sigma * target.ss_y_um])
        scope.optics.set_image_shift_um(float(shift[0]), float(shift[1]))
        if settings.preview_align and number in setup.maps:
            preview = scope.camera.acquire(LowDoseArea.PREVIEW)
            found = toolkit.shift_um(setup.maps[number], preview)
            if found is not None and math.hypot(*found[0]) < 2.0:
                shift = shift + found[0]
            else:
                _log.warning(
                    "target %d: no reliable alignment to its map at the start tilt", number
                )
        if number == 1:
            origin = shift.copy()
            scope.optics.set_image_shift_um(float(shift[0]), float(shift[1]))
            scope.measurements.autofocus(most_underfocus)
            setup.focus0_um = scope.optics.focus_um()
        setup.start_is_um[number] = (float(shift[0]), float(shift[1]))
    return setup
