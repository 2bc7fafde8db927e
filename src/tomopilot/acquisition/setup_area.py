"""Set-up of an area before its tilt series (pacetomo.md §3.1).

Move to target 1 and find the eucentric height; take each target's Preview map at the selection
tilt (unless the targets file names one already on disk); tilt to the start tilt; re-centre
target 1 on its map, focus it to maxDefocus, and bring every other target in by its approach
shift (foreshortened from the selection tilt) and, with previewAli, by aligning to its map.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import mrcfile
import numpy as np

from tomopilot.acquisition.settings import AcquisitionSettings
from tomopilot.acquisition.side_files import write_target_preview
from tomopilot.acquisition.strategies.geometry_model import approach_scale
from tomopilot.acquisition.strategy import Toolkit
from tomopilot.acquisition.target_defocus import defocus_range_um
from tomopilot.instrument.protocol import Microscope
from tomopilot.instrument.types import Image, LowDoseArea
from tomopilot.targeting.targets import Target

_log = logging.getLogger(__name__)


@dataclass
class AreaSetup:
    """What the set-up found: references, start image shifts and the focus F0."""

    maps: dict[int, Image] = field(default_factory=dict)
    map_exposures: dict[int, int] = field(default_factory=dict)
    start_is_um: dict[int, tuple[float, float]] = field(default_factory=dict)
    focus0_um: float = 0.0


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


def take_maps(
    scope: Microscope,
    targets: list[Target],
    settings: AcquisitionSettings,
    run_dir: Path,
    root: str,
) -> AreaSetup:
    """Preview maps of all targets at the selection tilt, written as ``<root>_tgt_NNN.mrc``."""
    setup = AreaSetup()
    scope.stage.tilt_to(settings.tilt_targets_deg, backlash_compensate=True)
    for number, target in enumerate(targets, start=1):
        if target.skip:
            continue
        scope.optics.set_image_shift_um(target.ss_x_um, target.ss_y_um)
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
    origin = np.zeros(2)
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
