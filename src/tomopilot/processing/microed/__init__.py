"""MicroED: TIA raw diffraction series → lossless MRC → SMV that DIALS reads.

- :func:`tia_to_mrc`, :func:`mrc_to_smv`, :func:`convert_tia_series`: whole-series conversions,
  all-or-nothing, with a JSON summary (:class:`ConversionReport`).
- :func:`series_levels`, :func:`to_uint16`: Leginon's LEGINON_OFFSET / IMAGE_PEDESTAL rules.
- :class:`SeriesMetadata`, :class:`FrameMetadata`: angles, exposure, voltage, camera length and
  pixel size, carried from TIA through the MRC labels into the SMV header.
- :func:`write_diffraction_mrc`, :func:`read_diffraction_mrc`: exact MRC storage of any TIA type.
"""

from tomopilot.processing.microed.errors import ConversionError, OutputExistsError
from tomopilot.processing.microed.levels import (
    LEGINON_OFFSET_CAP,
    SeriesLevels,
    Uint16Frame,
    series_levels,
    to_uint16,
)
from tomopilot.processing.microed.metadata import FrameMetadata, SeriesMetadata
from tomopilot.processing.microed.mrc import (
    DiffractionMrc,
    mrc_storage_dtype,
    read_diffraction_mrc,
    write_diffraction_mrc,
)
from tomopilot.processing.microed.pipeline import convert_tia_series, mrc_to_smv, tia_to_mrc
from tomopilot.processing.microed.report import ConversionReport, FrameReport, SeriesProgress
from tomopilot.processing.microed.smv_header import (
    DEFAULT_BEAMLINE,
    SmvOptions,
    diffraction_smv_header,
)

__all__ = [
    "DEFAULT_BEAMLINE",
    "LEGINON_OFFSET_CAP",
    "ConversionError",
    "ConversionReport",
    "DiffractionMrc",
    "FrameMetadata",
    "FrameReport",
    "OutputExistsError",
    "SeriesLevels",
    "SeriesMetadata",
    "SeriesProgress",
    "SmvOptions",
    "Uint16Frame",
    "convert_tia_series",
    "diffraction_smv_header",
    "mrc_storage_dtype",
    "mrc_to_smv",
    "read_diffraction_mrc",
    "series_levels",
    "tia_to_mrc",
    "to_uint16",
    "write_diffraction_mrc",
]
