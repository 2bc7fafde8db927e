"""A tiny TIA raw writer, for tests only (tomopilot itself only reads TIA files).

It is written from the layout (int16 type code, int32 nx, int32 ny, little-endian pixels),
independently of :mod:`tomopilot.io.tia`, and can also write inconsistent files on purpose.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

TYPE_CODES = {
    "uint8": 1,
    "uint16": 2,
    "uint32": 3,
    "int8": 4,
    "int16": 5,
    "int32": 6,
    "float32": 7,
    "float64": 8,
}


def tia_bytes(
    data: np.ndarray,
    *,
    type_code: int | None = None,
    nx: int | None = None,
    ny: int | None = None,
) -> bytes:
    """The bytes of a TIA raw file holding the 2-D array ``data`` (rows, columns).

    ``type_code``, ``nx`` and ``ny`` override the header fields, to make inconsistent files.
    """
    rows, columns = data.shape
    code = TYPE_CODES[data.dtype.name] if type_code is None else type_code
    header = struct.pack("<hii", code, columns if nx is None else nx, rows if ny is None else ny)
    return header + np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<")).tobytes()


def write_tia(path: Path, data: np.ndarray, **overrides: int) -> Path:
    """Write ``data`` as a TIA raw file at ``path``; see :func:`tia_bytes`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tia_bytes(data, **overrides))
    return path
