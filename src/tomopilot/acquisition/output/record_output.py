"""From a Record to its tilt series' files: the stack it opens and the mdoc section it adds.

The section carries what SerialEM writes plus PACEtomo's extended keys (SpecimenShift,
EucentricOffset, and the CTF fit under the key of the program PACEtomo would have run).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from tomopilot.acquisition.output.tilt_series_files import TiltSeriesFiles, section_from_image
from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.strategies.base import ExposureRequest, Outcome, Toolkit
from tomopilot.instrument.types import Image
from tomopilot.io.mdoc_format import MdocSection

DEFAULT_VOLTAGE_KV = 300.0  # for a backend that does not report the microscope's state


def camera_rotation_deg(toolkit: Toolkit, image: Image) -> float:
    """The image's rotation (SerialEM's RotationAngle) from its specimen-to-camera matrix."""
    matrix = toolkit.camera_matrix(image)
    return math.degrees(math.atan2(matrix[1, 0], matrix[0, 0]))


# Brighter Records than the first (the start tilt, usually the thinnest view) must still fit.
INT16_HEADROOM = 1.5


def stack_dtype(image: Image) -> np.dtype[Any]:
    """How SerialEM stores a counting camera's Record: integer counts, signed 16-bit (MRC mode
    1) when they fit with headroom, else unsigned 16-bit (mode 6).

    The first Record of a series decides, since a stack has one mode; later values beyond the
    type are clipped and logged by the writer.
    """
    peak = float(np.max(image.data)) if image.data.size else 0.0
    return np.dtype(np.int16 if peak * INT16_HEADROOM <= np.iinfo(np.int16).max else np.uint16)


def open_series(
    run_dir: Path, stem: str, image: Image, toolkit: Toolkit, frame_suffix: str
) -> TiltSeriesFiles:
    """A target's stack and mdoc, shaped after its first Record, with the microscope's
    voltage, spot size and camera in the header and titles."""
    state = image.state
    return TiltSeriesFiles(
        run_dir,
        stem,
        pixel_size_a=image.pixel_size_a,
        shape_yx=(int(image.data.shape[0]), int(image.data.shape[1])),
        dtype=stack_dtype(image),
        voltage_kv=state.voltage_kv if state is not None else DEFAULT_VOLTAGE_KV,
        tilt_axis_deg=camera_rotation_deg(toolkit, image) - 90.0,
        binning=image.binning,
        spot_size=state.spot_size or 1 if state is not None else 1,
        camera_index=state.camera_index or 0 if state is not None else 0,
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
    # The key PACEtomo writes names the program it ran, and only when it was asked to run it.
    ctffind, plotter = settings.do_ctffind and not settings.do_ctfplotter, settings.do_ctfplotter
    return section_from_image(
        image,
        target_defocus_um=request.target_defocus_um,
        prior_record_dose_e_a2=prior_dose_e_a2,
        rotation_angle_deg=rotation_deg,
        navigator_label=label,
        specimen_shift_um=outcome.specimen_shift_um if extended else None,
        eucentric_offset_um=outcome.eucentric_offset_um if extended else None,
        ctf_find_um=ctf_um if extended and ctffind else None,
        ctfplotter_um=ctf_um if extended and plotter else None,
    )
