"""Reader for TIA raw ``.bin`` images (FEI/Thermo Fisher TIA, e.g. from a Ceta camera).

Layout, all little-endian::

    offset  size  type   field
    0       2     int16  data-type code (see :data:`TIA_DTYPES`)
    2       4     int32  nx, the number of columns (fast axis)
    6       4     int32  ny, the number of rows
    10      ...   code   nx * ny pixels, row-major

The returned array has shape ``(ny, nx)``. Every one of the eight type codes is read, float64
(code 8) included. The file size must be exactly ``10 + nx * ny * itemsize``: a shorter file is
truncated, a longer one is not a TIA raw file of the announced shape, and both are refused with
an error that names the file.

Examples
--------
>>> import struct
>>> raw = struct.pack("<hii", 6, 3, 2) + struct.pack("<6i", -1, 0, 1, 2, 3, 4)
>>> parse_tia(raw).tolist()
[[-1, 0, 1], [2, 3, 4]]
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tomopilot.io.errors import (
    FormatError,
    SizeMismatchError,
    TruncatedFileError,
    UnknownTypeCodeError,
)

__all__ = [
    "TIA_DTYPES",
    "TIA_HEADER_BYTES",
    "TiaHeader",
    "parse_tia",
    "parse_tia_header",
    "read_tia",
    "read_tia_header",
]

TIA_HEADER_BYTES = 10
"""Bytes before the first pixel: a 2-byte type code and two 4-byte dimensions."""

TIA_DTYPES: Mapping[int, np.dtype[Any]] = MappingProxyType(
    {
        1: np.dtype("<u1"),
        2: np.dtype("<u2"),
        3: np.dtype("<u4"),
        4: np.dtype("<i1"),
        5: np.dtype("<i2"),
        6: np.dtype("<i4"),
        7: np.dtype("<f4"),
        8: np.dtype("<f8"),
    }
)
"""TIA data-type code → little-endian numpy dtype (6, int32, is what Ceta writes for microED)."""

_HEADER = struct.Struct("<hii")


def _known_codes() -> str:
    return ", ".join(f"{code} {dtype.name}" for code, dtype in TIA_DTYPES.items())


@dataclass(frozen=True)
class TiaHeader:
    """The 10-byte header of a TIA raw file.

    Attributes
    ----------
    type_code
        The TIA data-type code, a key of :data:`TIA_DTYPES`.
    nx
        Columns (the fast axis).
    ny
        Rows.
    """

    type_code: int
    nx: int
    ny: int

    @property
    def dtype(self) -> np.dtype[Any]:
        """The pixels' little-endian dtype."""
        return TIA_DTYPES[self.type_code]

    @property
    def shape(self) -> tuple[int, int]:
        """The array shape ``(ny, nx)``."""
        return (self.ny, self.nx)

    @property
    def data_bytes(self) -> int:
        """Bytes of pixel data the header announces."""
        return self.nx * self.ny * self.dtype.itemsize

    @property
    def file_bytes(self) -> int:
        """The exact size a file with this header must have."""
        return TIA_HEADER_BYTES + self.data_bytes


def parse_tia_header(head: bytes, *, path: Path | str | None = None) -> TiaHeader:
    """Decode and check the first 10 bytes of a TIA raw file.

    Parameters
    ----------
    head
        At least the first :data:`TIA_HEADER_BYTES` bytes of the file.
    path
        The file, named in errors.

    Raises
    ------
    TruncatedFileError
        If fewer than 10 bytes are given.
    UnknownTypeCodeError
        If the type code is not one of :data:`TIA_DTYPES`.
    FormatError
        If a dimension is not positive.
    """
    if len(head) < TIA_HEADER_BYTES:
        raise TruncatedFileError(
            f"the file has {len(head)} bytes, fewer than the {TIA_HEADER_BYTES}-byte TIA raw "
            "header",
            path=path,
        )
    if head[:4] == b"II\x97\x01":
        raise UnknownTypeCodeError(
            "this is a TIA .ser series (byte order 'II', series id 0x0197), not a raw .bin "
            "image: read it with tomopilot.io.tia_ser (tia2mrc and convert accept it as is)",
            path=path,
            field="data type code",
        )
    code, nx, ny = _HEADER.unpack_from(head)
    if code not in TIA_DTYPES:
        raise UnknownTypeCodeError(
            f"unknown TIA data-type code {code} (known: {_known_codes()})",
            path=path,
            field="data type code",
        )
    for name, value in (("nx", nx), ("ny", ny)):
        if value < 1:
            raise FormatError(
                f"the image dimension must be at least 1, got {value}", path=path, field=name
            )
    return TiaHeader(type_code=code, nx=nx, ny=ny)


def _check_size(header: TiaHeader, size: int, path: Path | str | None) -> None:
    if size == header.file_bytes:
        return
    announced = (
        f"the header announces {header.nx}×{header.ny} {header.dtype.name} pixels "
        f"({header.file_bytes} bytes with the header)"
    )
    if size < header.file_bytes:
        raise TruncatedFileError(
            f"{announced}, but the file has {size} bytes: it is truncated "
            f"({header.file_bytes - size} bytes missing)",
            path=path,
        )
    raise SizeMismatchError(
        f"{announced}, but the file has {size} bytes ({size - header.file_bytes} extra): "
        "it is not a TIA raw file of that shape",
        path=path,
    )


def parse_tia(buffer: bytes, *, path: Path | str | None = None) -> NDArray[Any]:
    """Decode a whole TIA raw file held in memory.

    Parameters
    ----------
    buffer
        The file's bytes.
    path
        The file, named in errors.

    Returns
    -------
    numpy.ndarray
        The pixels, shape ``(ny, nx)``, in native byte order and the file's type.

    Raises
    ------
    FormatError
        (or a subclass) if the header is invalid or the size disagrees with it.
    """
    header = parse_tia_header(buffer[:TIA_HEADER_BYTES], path=path)
    _check_size(header, len(buffer), path)
    pixels = np.frombuffer(buffer, dtype=header.dtype, offset=TIA_HEADER_BYTES)
    return pixels.reshape(header.shape).astype(header.dtype.newbyteorder("="))


def read_tia_header(path: Path | str) -> TiaHeader:
    """Read and check the header of a TIA raw file, including the file size.

    This reads only the header, so a whole series can be checked before any of it is
    converted.

    Raises
    ------
    FormatError
        (or a subclass) if the header is invalid or the size disagrees with it.
    FileNotFoundError
        If the file does not exist.
    """
    path = Path(path)
    with path.open("rb") as handle:
        head = handle.read(TIA_HEADER_BYTES)
    header = parse_tia_header(head, path=path)
    _check_size(header, path.stat().st_size, path)
    return header


def read_tia(path: Path | str) -> NDArray[Any]:
    """Read a TIA raw ``.bin`` image.

    Parameters
    ----------
    path
        The file.

    Returns
    -------
    numpy.ndarray
        The pixels, shape ``(ny, nx)``, in native byte order and the file's type.

    Raises
    ------
    FormatError
        (or a subclass: :class:`TruncatedFileError`, :class:`SizeMismatchError`,
        :class:`UnknownTypeCodeError`) naming the file, if it is not a valid TIA raw file.
    """
    path = Path(path)
    return parse_tia(path.read_bytes(), path=path)
