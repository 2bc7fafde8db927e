"""From a Record to its tilt series' files: the stack it opens and the mdoc section it adds.

The section carries what SerialEM writes plus PACEtomo's extended keys (SpecimenShift,
EucentricOffset, and the CTF fit under the key of the program PACEtomo would have run).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tomopilot.acquisition.output.tilt_series_files import TiltSeriesFiles, section_from_image
from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.strategies.base import ExposureRequest, Outcome, Toolkit
from tomopilot.instrument.types import Image
from tomopilot.io.mdoc_format import MdocSection


def camera_rotation_deg(toolkit: Toolkit, image: Image) -> float:
    """The image's rotation (SerialEM's RotationAngle) from its specimen-to-camera matrix."""
    matrix = toolkit.camera_matrix(image)
    return math.degrees(math.atan2(matrix[1, 0], matrix[0, 0]))


def open_series(
    run_dir: Path, stem: str, image: Image, toolkit: Toolkit, frame_suffix: str
) -> TiltSeriesFiles:
    """A target's stack and mdoc, shaped after its first Record."""
    return TiltSeriesFiles(
        run_dir,
        stem,
        pixel_size_a=image.pixel_size_a,
        shape_yx=(int(image.data.shape[0]), int(image.data.shape[1])),
        dtype=np.float32,
        voltage_kv=300.0,
        tilt_axis_deg=camera_rotation_deg(toolkit, image) - 90.0,
        binning=image.binning,
        created=image.datetime,
        frame_suffix=frame_suffix,
    )


def record_section(
    image: Image,
    request: ExposureRequest,
    outcome: Outcome,
    ctf_um: float | None,
    *,
    settings: AcquisitionSettings,
    prior_dose_e_a2: float,
    rotation_deg: float,
    label: str,
) -> MdocSection:
    """The mdoc section of one Record, with the values that were applied."""
    extended = settings.extended_mdoc
    plotter = settings.do_ctfplotter  # the key PACEtomo writes names the program it ran
    return section_from_image(
        image,
        target_defocus_um=request.target_defocus_um,
        prior_record_dose_e_a2=prior_dose_e_a2,
        rotation_angle_deg=rotation_deg,
        navigator_label=label,
        specimen_shift_um=outcome.specimen_shift_um if extended else None,
        eucentric_offset_um=outcome.eucentric_offset_um if extended else None,
        ctf_find_um=ctf_um if extended and not plotter else None,
        ctfplotter_um=ctf_um if extended and plotter else None,
    )
