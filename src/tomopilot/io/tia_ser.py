"""Reader for TIA ``.ser`` series files (FEI/Thermo Fisher TIA's default format).

Written from the format's public description (the "SER file format" notes TIA users have
circulated since the 2000s); no code was taken from other readers. All values little-endian::

    offset  type    field
    0       int16   byte order, 0x4949 ("II")
    2       int16   series id, 0x0197
    4       int16   series version: 0x0210 (32-bit offsets) or 0x0220 (64-bit offsets)
    6       int32   data type: 0x4120 1-D spectra, 0x4122 2-D images
    10      int32   tag type: 0x4152 time only, 0x4142 time and 2-D position
    14      int32   total number of elements (frames) the file has room for
    18      int32   valid number of elements (frames written)
    22      int32/64  offset of the offset arrays
    26/30   int32   number of dimensions of the series (then their descriptions)

At the array offset come ``total`` data offsets, then ``total`` tag offsets (int32 or int64
by version). A 2-D element, at its data offset, is::

    float64 x calibration offset, float64 x step, int32 x calibration element,
    float64 y calibration offset, float64 y step, int32 y calibration element,
    int16 data type (TIA's codes, as in .bin files: 1 uint8 ... 8 float64),
    int32 nx, int32 ny, then nx * ny values, x fastest.

Every offset and size is checked against the file's real size before anything is read or
allocated; errors name the file and the field. A 1-D (spectrum) series is refused with what it
is. The ``.emi`` file beside a series holds TIA's metadata as XML-like text;
:func:`read_emi_metadata` returns its simple ``<Tag>value</Tag>`` items.

Examples
--------
>>> import numpy as np, tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "run_1.ser"
>>> frames = np.arange(2 * 3 * 4, dtype=np.int32).reshape(2, 3, 4)
>>> _ = write_ser(path, frames, pixel_size_m=1e-10)
>>> header = read_ser_header(path)
>>> header.n_frames, read_ser_frame(path, 1).tolist()[0]
(2, [12, 13, 14, 15])
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tomopilot.core.input_files import check_input_path, decode_text, describe_exception
from tomopilot.io.errors import FormatError, SizeMismatchError, TruncatedFileError
from tomopilot.io.tia import TIA_DTYPES

__all__ = [
    "SER_BYTE_ORDER",
    "SerHeader",
    "is_ser",
    "read_emi_metadata",
    "read_ser_frame",
    "read_ser_header",
    "write_ser",
]

SER_BYTE_ORDER = 0x4949
SER_SERIES_ID = 0x0197
SER_VERSIONS = (0x0210, 0x0220)
SER_DATA_1D = 0x4120
SER_DATA_2D = 0x4122
SER_TAG_TIME = 0x4152
SER_TAG_POSITION = 0x4142
_ELEMENT_HEADER = struct.Struct("<ddiddihii")  # 50 bytes before a 2-D element's pixels
_MAX_ELEMENTS = 10_000_000


@dataclass(frozen=True)
class SerHeader:
    """The checked header of a ``.ser`` file.

    Attributes
    ----------
    version
        0x0210 or 0x0220.
    n_frames
        Valid elements (frames written).
    data_offsets
        File offset of each valid frame.
    shape
        (ny, nx) of the frames (all equal).
    type_code
        TIA data-type code of the pixels.
    pixel_size_m
        The x calibration step of the first frame (metres), as TIA records it.
    """

    version: int
    n_frames: int
    data_offsets: tuple[int, ...]
    shape: tuple[int, int]
    type_code: int
    pixel_size_m: float

    @property
    def dtype(self) -> np.dtype[Any]:
        """The pixels' little-endian dtype."""
        return TIA_DTYPES[self.type_code]


def is_ser(head: bytes) -> bool:
    """True when ``head`` starts like a ``.ser`` file (``II``, series id 0x0197)."""
    return len(head) >= 4 and struct.unpack_from("<HH", head) == (SER_BYTE_ORDER, SER_SERIES_ID)


def _field(path: Path, field: str, message: str) -> FormatError:
    return FormatError(message, path=path, field=field)


def read_ser_header(path: Path | str) -> SerHeader:
    """Read and check a ``.ser`` file's header, offset arrays and element headers.

    Raises
    ------
    FormatError
        (or a subclass) naming the file and field: not a ``.ser`` file, an unknown version, a
        1-D spectrum series, an offset outside the file, frames of different sizes or types.
    """
    path = Path(path)
    size = check_input_path(path, what="TIA .ser", error=FormatError)
    with path.open("rb") as handle:
        head = handle.read(64)
        if len(head) < 30:
            raise TruncatedFileError(
                f"only {len(head)} bytes: shorter than a .ser header", path=path
            )
        order, series_id, version = struct.unpack_from("<HHH", head)
        if order != SER_BYTE_ORDER or series_id != SER_SERIES_ID:
            raise _field(
                path,
                "byte order",
                f"not a TIA .ser file (starts {head[:4].hex(' ')}, expected 49 49 97 01)",
            )
        if version not in SER_VERSIONS:
            raise _field(path, "series version", f"unknown .ser version 0x{version:04x}")
        data_type, _tag_type, total, valid = struct.unpack_from("<iiii", head, 6)
        if data_type == SER_DATA_1D:
            raise _field(
                path,
                "data type",
                "a series of 1-D spectra (data type 0x4120), not of diffraction images",
            )
        if data_type != SER_DATA_2D:
            raise _field(path, "data type", f"unknown .ser data type 0x{data_type & 0xFFFF:04x}")
        if not 0 <= valid <= total <= _MAX_ELEMENTS:
            raise _field(
                path,
                "number of elements",
                f"{valid} valid of {total} elements is impossible",
            )
        if valid == 0:
            raise _field(path, "number of elements", "the series holds no frame")
        wide = version == 0x0220
        offset_size = 8 if wide else 4
        (array_offset,) = struct.unpack_from("<q" if wide else "<i", head, 22)
        if array_offset < 30 or array_offset + 2 * total * offset_size > size:
            raise TruncatedFileError(
                f"the offset arrays ({total} entries at byte {array_offset}) lie beyond the "
                f"end of the {size}-byte file",
                path=path,
            )
        handle.seek(array_offset)
        raw = handle.read(valid * offset_size)
        offsets = np.frombuffer(raw, "<i8" if wide else "<i4").astype(np.int64)
        shape: tuple[int, int] | None = None
        type_code = 0
        pixel_size_m = 0.0
        for index, offset in enumerate(offsets.tolist()):
            if offset < 30 or offset + _ELEMENT_HEADER.size > size:
                raise TruncatedFileError(
                    f"frame {index} starts at byte {offset}, outside the {size}-byte file",
                    path=path,
                    field="data offset",
                )
            handle.seek(offset)
            values = _ELEMENT_HEADER.unpack(handle.read(_ELEMENT_HEADER.size))
            code, nx, ny = values[6], values[7], values[8]
            if code not in TIA_DTYPES:
                raise _field(path, "data type code", f"frame {index} has pixel type code {code}")
            if nx < 1 or ny < 1:
                raise _field(path, "array size", f"frame {index} is {nx}×{ny} pixels")
            end = offset + _ELEMENT_HEADER.size + nx * ny * TIA_DTYPES[code].itemsize
            if end > size:
                raise TruncatedFileError(
                    f"frame {index} ({nx}×{ny} {TIA_DTYPES[code].name}) ends at byte {end}, "
                    f"beyond the end of the {size}-byte file",
                    path=path,
                )
            if shape is None:
                shape, type_code, pixel_size_m = (ny, nx), code, float(values[1])
            elif (ny, nx) != shape or code != type_code:
                raise SizeMismatchError(
                    f"frame {index} is {nx}×{ny} of type {code}, frame 0 is "
                    f"{shape[1]}×{shape[0]} of type {type_code}",
                    path=path,
                )
    assert shape is not None
    return SerHeader(version, int(valid), tuple(offsets.tolist()), shape, type_code, pixel_size_m)


def read_ser_frame(path: Path | str, index: int, header: SerHeader | None = None) -> NDArray[Any]:
    """Frame ``index`` of a ``.ser`` series, shape ``(ny, nx)``, in native byte order."""
    path = Path(path)
    header = header or read_ser_header(path)
    if not 0 <= index < header.n_frames:
        raise FormatError(f"no frame {index}: the series has {header.n_frames}", path=path)
    count = header.shape[0] * header.shape[1]
    try:
        with path.open("rb") as handle:
            handle.seek(header.data_offsets[index] + _ELEMENT_HEADER.size)
            raw = handle.read(count * header.dtype.itemsize)
    except OSError as exc:
        message = f"cannot read frame {index}: {describe_exception(exc)}"
        raise FormatError(message, path=path) from exc
    if len(raw) != count * header.dtype.itemsize:
        raise TruncatedFileError(f"frame {index} is cut short", path=path)
    pixels = np.frombuffer(raw, header.dtype).reshape(header.shape)
    return pixels.astype(header.dtype.newbyteorder("="))


_EMI_ITEM = re.compile(r"<([A-Za-z][\w .\-]{0,80})>([^<>]{0,200})</\1>")


def read_emi_metadata(path: Path | str) -> dict[str, str]:
    """The simple ``<Tag>value</Tag>`` items of a TIA ``.emi`` file (first one of each tag).

    ``.emi`` files are binary with TIA's metadata as XML-like text inside; this reads what is
    there without interpreting it (values are strings as written).
    """
    path = Path(path)
    check_input_path(path, what="TIA .emi", error=FormatError)
    text = decode_text(path.read_bytes())
    items: dict[str, str] = {}
    for match in _EMI_ITEM.finditer(text):
        items.setdefault(match.group(1).strip(), match.group(2).strip())
    return items


def write_ser(
    path: Path | str,
    frames: NDArray[Any],
    *,
    pixel_size_m: float,
    version: int = 0x0220,
) -> Path:
    """Write (n, ny, nx) frames as a 2-D ``.ser`` series (for tests and the twin)."""
    path = Path(path)
    data = np.asarray(frames)
    if data.ndim != 3:
        raise FormatError(f"frames must be (n, ny, nx), got {data.shape}", path=path)
    codes = {dtype: code for code, dtype in TIA_DTYPES.items()}
    dtype = data.dtype.newbyteorder("<")
    if dtype not in codes:
        raise FormatError(f"TIA has no pixel type for {data.dtype}", path=path)
    n, ny, nx = data.shape
    wide = version == 0x0220
    offset_format = "<q" if wide else "<i"
    header = struct.pack(
        "<HHHiiii", SER_BYTE_ORDER, SER_SERIES_ID, version, SER_DATA_2D, SER_TAG_TIME, n, n
    )
    dims = struct.pack("<i", 1) + struct.pack("<iddi", n, 0.0, 1.0, 0) + struct.pack("<ii", 0, 0)
    array_offset = len(header) + (8 if wide else 4) + len(dims)
    offset_size = 8 if wide else 4
    element_start = array_offset + 2 * n * offset_size
    element_bytes = _ELEMENT_HEADER.size + nx * ny * dtype.itemsize
    data_offsets = [element_start + i * element_bytes for i in range(n)]
    tag_start = element_start + n * element_bytes
    tag_offsets = [tag_start + i * 6 for i in range(n)]
    out = bytearray(header + struct.pack(offset_format, array_offset) + dims)
    for value in (*data_offsets, *tag_offsets):
        out += struct.pack(offset_format, value)
    for frame in data:
        out += _ELEMENT_HEADER.pack(
            0.0, pixel_size_m, 0, 0.0, pixel_size_m, 0, codes[dtype], nx, ny
        )
        out += np.ascontiguousarray(frame, dtype=dtype).tobytes()
    for index in range(n):
        out += struct.pack("<hi", SER_TAG_TIME, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))
    return path
