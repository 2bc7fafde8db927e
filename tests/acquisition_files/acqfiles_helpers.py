"""Helpers for the tilt-series output-file tests: readers through mrcfile/mdocfile, sections."""

from __future__ import annotations

import contextlib
import io
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from tomopilot.io.mdoc_format import MdocSection

REAL_PACETOMO_MDOC = "mdoc/krios-d3645_sem4.1.0beta_pacetomo_L1_ts_001.mrc.mdoc"
REAL_EMBL_MDOC = "mdoc/embl-krios-2015_TS_01.mrc.mdoc"
T0 = datetime(2023, 8, 11, 17, 44, 49)


def read_with_mdocfile(path: Path) -> pd.DataFrame:
    """mdocfile's table of an mdoc, with its log chatter and any stdout silenced."""
    import mdocfile

    logger = logging.getLogger("mdocfile")
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.CRITICAL)
    logger.propagate = False
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return mdocfile.read(path)
    finally:
        logger.setLevel(level)
        logger.propagate = propagate


def read_stack(path: Path) -> NDArray[Any]:
    """All sections of a stack through mrcfile, as (n, ny, nx)."""
    with mrcfile.open(path, mode="r") as mrc:
        data = np.array(mrc.data)
    return data[None] if data.ndim == 2 else data


def validate(path: Path) -> bool:
    """mrcfile's MRC2014 validation, its report captured."""
    return bool(mrcfile.validate(path, print_file=io.StringIO()))


def real_section_texts(path: Path) -> list[str]:
    """The ``[ZValue]`` sections of a real mdoc file, LF line ends, without blank lines."""
    text = path.read_bytes().decode("utf-8").replace("\r\n", "\n")
    chunks = text.split("\n[ZValue = ")[1:]
    return ["[ZValue = " + chunk.strip("\n") + "\n" for chunk in chunks]


def keys_of(section_text: str) -> list[str]:
    """Keys of one section's text, in order."""
    return [line.split(" = ", 1)[0] for line in section_text.splitlines()[1:] if line.strip()]


def make_section(index: int, tilt_deg: float, **fields: Any) -> MdocSection:
    """A realistic Record section, as the engine fills it for exposure ``index``."""
    values: dict[str, Any] = {
        "tilt_angle_deg": tilt_deg,
        "stage_position_um": (-94.305 + 0.01 * index, -309.024),
        "stage_z_um": -2.56436,
        "magnification": 33000,
        "intensity": 0.115275,
        "exposure_dose_e_a2": 3.1,
        "dose_rate_e_px_s": 11.2815,
        "pixel_spacing_a": 2.663,
        "spot_size": 6,
        "defocus_um": -5.30089 + 0.1 * index,
        "image_shift_um": (-0.000211323, 0.104945 + 0.01 * index),
        "rotation_angle_deg": -176.0,
        "exposure_time_s": 0.988016,
        "binning": 1.0,
        "camera_index": 0,
        "divided_by_2": False,
        "operating_mode": 1,
        "using_cds": True,
        "mag_index": 26,
        "low_dose_con_set": 4,
        "counts_per_electron": 32.0,
        "target_defocus_um": -5.0 + 0.25 * index,
        "prior_record_dose_e_a2": 3.1 * index,
        "date_time": T0 + timedelta(seconds=48 * index),
        "filter_slit_and_loss_ev": (15.0, 0.0),
        "specimen_shift_um": (-0.040779743981150154 * index, 0.09708426746044542),
        "eucentric_offset_um": 0.3030851742051379 * index,
        "ctf_find_um": -4.63612890625 - 0.1 * index,
    }
    values.update(fields)
    return MdocSection(**values)


def dose_symmetric_tilts(n: int, step_deg: float = 3.0) -> list[float]:
    """0, +3, −3, −6, +6, +9, −9 … (Hagen grouping of two), with a small stage error."""
    angles = [0.0]
    k, sign = 1, 1.0
    while len(angles) < n:
        angles += [sign * k * step_deg, -sign * k * step_deg]
        k, sign = k + 1, -sign
    return [a + 0.0013 * (i % 3 - 1) for i, a in enumerate(angles[:n])]
