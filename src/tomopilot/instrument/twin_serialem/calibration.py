"""Frames and calibration matrices: image shift units, specimen µm, camera pixels, stage µm.

Matrices are SerialEM's (xpx, xpy, ypx, ypy): ``out_x = xpx·in_x + xpy·in_y``,
``out_y = ypx·in_x + ypy·in_y``. Camera matrices refer to unbinned pixels (column, row of the
image array). Specimen coordinates are µm with x along the tilt axis. IS units are the optics'
own (the twin's are calibrated to about a µm, as on Thermo Fisher microscopes); the calibration
between them comes from the microscope and, on the twin, carries a small error that only the
ground truth knows about.

Stage and specimen: a stage move of +d brings the specimen point +d (at zero tilt) under the
beam, so at tilt θ a specimen shift (x, y) corresponds to a stage move (x, y / cos θ), the
foreshortening SerialEM applies when it resets image shift with the stage.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from tomopilot.instrument.twin_serialem.session import SET_AREAS, Session
from tomopilot.instrument.types import LowDoseArea

Matrix = NDArray[np.float64]


def as_reported(matrix: Matrix) -> tuple[float, float, float, float]:
    """(xpx, xpy, ypx, ypy) of a 2×2 matrix."""
    return (
        float(matrix[0, 0]),
        float(matrix[0, 1]),
        float(matrix[1, 0]),
        float(matrix[1, 1]),
    )


def mag_table(session: Session) -> list[int]:
    """The microscope's magnification table: mag index i (1-based) is entry i − 1."""
    return list(session.scope.optics.magnifications())


def mag_index(session: Session, area: LowDoseArea) -> int:
    """The mag index of an area's magnification (1-based; the nearest entry of the table)."""
    table = mag_table(session)
    mag = session.scope.optics.preset(area).magnification
    ratios = [abs(math.log(mag / m)) for m in table]
    return ratios.index(min(ratios)) + 1


def magnification_of_index(session: Session, index: int) -> int:
    """The magnification at mag index ``index`` (1-based); a clear error outside the table."""
    table = mag_table(session)
    if not 1 <= index <= len(table):
        raise ValueError(f"mag index {index} is not in the magnification table (1 to {len(table)})")
    return table[index - 1]


def specimen_to_camera_at(session: Session, index: int) -> Matrix:
    """Specimen µm -> unbinned camera pixels at mag index ``index`` (0 = the current area).

    At a magnification some area images at, that area's matrix; elsewhere the current area's
    rotation with the microscope's calibrated pixel at that magnification.
    """
    if index == 0:
        return specimen_to_camera(session, session.ld_area)
    mag = magnification_of_index(session, index)
    optics = session.scope.optics
    area = next((a for a in SET_AREAS if optics.preset(a).magnification == mag), None)
    if area is not None:
        return specimen_to_camera(session, area)
    current = specimen_to_camera(session, session.ld_area)
    unit = current / math.sqrt(abs(float(np.linalg.det(current))))
    return np.asarray(unit * (1e4 / optics.pixel_size_a(mag)), np.float64)


def specimen_to_camera(session: Session, area: LowDoseArea) -> Matrix:
    """Specimen µm -> unbinned camera pixels of content displacement, at ``area``'s mag."""
    binned = session.scope.camera.specimen_to_camera_matrix(area)
    binning = session.scope.optics.preset(area).binning
    return np.asarray(binned, np.float64) * binning


def specimen_to_is(session: Session) -> Matrix:
    """Specimen µm -> IS units."""
    return np.asarray(session.scope.optics.specimen_to_is_matrix(), np.float64)


def is_to_specimen(session: Session) -> Matrix:
    """IS units -> specimen µm."""
    return np.asarray(np.linalg.inv(specimen_to_is(session)), np.float64)


def specimen_to_stage(tilt_deg: float = 0.0) -> Matrix:
    """Specimen µm -> stage µm at a tilt (Y foreshortened by cos θ)."""
    return np.array([[1.0, 0.0], [0.0, 1.0 / math.cos(math.radians(tilt_deg))]])


def image_shift_specimen_um(session: Session) -> tuple[float, float]:
    """The current image shift in specimen µm (through the calibration)."""
    units = np.asarray(session.scope.optics.image_shift_units(), np.float64)
    spec = is_to_specimen(session) @ units
    return float(spec[0]), float(spec[1])


def camera_shift_of_is(session: Session, units: tuple[float, float]) -> tuple[float, float]:
    """Unbinned camera pixels an image shift moves the image content by, at the current area.

    An image shift of +d µm moves the field over the specimen by d, so content moves by −M·d.
    """
    spec = is_to_specimen(session) @ np.asarray(units, np.float64)
    px = -specimen_to_camera(session, session.ld_area) @ spec
    return float(px[0]), float(px[1])


def stage_for_specimen(session: Session, spec_um: tuple[float, float]) -> tuple[float, float]:
    """The stage move that brings a specimen shift under the beam at the current tilt."""
    tilt = session.scope.stage.position().tilt_deg
    move = specimen_to_stage(tilt) @ np.asarray(spec_um, np.float64)
    return float(move[0]), float(move[1])
