"""Shared helpers of the microED tests: a small series spec, its metadata, a dxtbx-style parser.

The metadata and SMV options of a twin series are the ones ``tomopilot diffraction demo`` uses.
"""

from __future__ import annotations

from pathlib import Path

from tomopilot.cli.diffraction import metadata_for, options_for
from tomopilot.instrument.twin.diffraction import DiffractionSeriesSpec

__all__ = ["DXTBX_REQUIRED", "SMALL_SPEC", "dxtbx_style_header", "metadata_for", "options_for"]

SMALL_SPEC = DiffractionSeriesSpec(
    n_frames=5,
    shape=(72, 96),  # not square, so SIZE1/SIZE2 and the beam-centre axes cannot be confused
    pixel_size_mm=0.3,
    camera_length_mm=700.0,
    beam_center_px=(55.3, 31.7),
    start_angle_deg=-12.0,
    osc_range_deg=0.4,
    exposure_s=0.8,
    seed=7,
)


# What dxtbx's FormatSMVADSC.understand demands, plus TIME, which its scan model reads.
DXTBX_REQUIRED = (
    "BEAM_CENTER_X",
    "BEAM_CENTER_Y",
    "DISTANCE",
    "WAVELENGTH",
    "PIXEL_SIZE",
    "OSC_START",
    "OSC_RANGE",
    "SIZE1",
    "SIZE2",
    "BYTE_ORDER",
    "TIME",
)


def dxtbx_style_header(path: Path) -> tuple[int, dict[str, str]]:
    """Parse a header the way dxtbx's FormatSMV does: size from line 2, records up to '}'."""
    with path.open("rb") as handle:
        assert handle.read(15) == b"{\nHEADER_BYTES="
        handle.seek(0)
        size = int(handle.read(45).decode().split("\n")[1].split("=")[1].replace(";", "").strip())
        handle.seek(0)
        text = handle.read(size).decode("ascii")
    header = {}
    for record in text.split("\n"):
        if record == "}":
            break
        if "=" not in record:
            continue
        key, value = record.replace(";", "").split("=")  # fails if a value held '='
        header[key.strip()] = value.strip()
    return size, header
