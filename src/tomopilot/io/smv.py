"""SMV (ADSC-style) images: a text header of ``KEY=value;`` lines, then uint16 pixels.

Layout written here::

    {\\n
    HEADER_BYTES=  512;\\n        <- always the second line, value right-aligned in 5 columns
    DIM=2;\\n
    BYTE_ORDER=little_endian;\\n
    TYPE=unsigned_short;\\n
    SIZE1=<columns>;\\n           <- fast axis
    SIZE2=<rows>;\\n              <- slow axis
    KEY=value;\\n ...             <- the caller's keys, in the caller's order
    }\\n
    <spaces up to HEADER_BYTES, a multiple of 512>
    <rows * columns uint16 pixels, row-major>

The first 15 bytes are always ``{\\nHEADER_BYTES=``, which is how DIALS/dxtbx recognises SMV.
Keys and values are checked so that any reader that splits records on ``\\n``, ``;`` and ``=``
(as dxtbx and FabIO do) reads back exactly what was written.

Examples
--------
>>> header = format_smv_header({"DISTANCE": 750.0}, shape=(2, 3))
>>> header[:15], len(header)
(b'{\\nHEADER_BYTES=', 512)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tomopilot.core.files import atomic_write_bytes
from tomopilot.io.errors import (
    FormatError,
    MissingFieldError,
    SizeMismatchError,
    TruncatedFileError,
    UnknownTypeCodeError,
)

__all__ = [
    "SMV_BLOCK_BYTES",
    "SMV_MAGIC",
    "SmvImage",
    "format_smv_header",
    "format_smv_value",
    "parse_smv_header",
    "read_smv",
    "write_smv",
]

SMV_MAGIC = b"{\nHEADER_BYTES="
"""The first 15 bytes of every SMV file (dxtbx's recognition test)."""

SMV_BLOCK_BYTES = 512
"""The header is padded to a multiple of this many bytes."""

_LAYOUT_KEYS = ("HEADER_BYTES", "DIM", "BYTE_ORDER", "TYPE", "SIZE1", "SIZE2")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_FORBIDDEN_IN_VALUE = re.compile(r"[;={}\n\r\f\x00]")
_BYTE_ORDERS = {"little_endian": "<", "big_endian": ">"}


def format_smv_value(value: str | int | float) -> str:
    """The text of one header value.

    Integers are written as they are, floats in positional notation with at most 12
    significant digits and no trailing zeros (``0.0250793404505``, ``1855.0``), strings as
    given.

    Raises
    ------
    FormatError
        For booleans and non-finite floats, which SMV readers cannot parse.
    """
    if isinstance(value, bool):
        raise FormatError(f"a boolean is not an SMV header value: {value!r}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FormatError(f"a header value must be finite, got {value!r}")
        return np.format_float_positional(
            value, precision=12, unique=True, fractional=False, trim="0"
        )
    return str(value)


def _check_entry(key: str, text: str) -> None:
    if not _KEY.match(key):
        raise FormatError("an SMV header key is letters, digits and '_' only", field=key)
    if _FORBIDDEN_IN_VALUE.search(text) or text != text.strip() or not text.isascii():
        raise FormatError(
            f"an SMV header value must be ASCII without ';', '=', braces, line breaks or "
            f"leading/trailing spaces, got {text!r}",
            field=key,
        )


def format_smv_header(
    header: Mapping[str, str | int | float],
    *,
    shape: tuple[int, int],
    byte_order: str = "little_endian",
) -> bytes:
    """The complete, padded header of an SMV image.

    Parameters
    ----------
    header
        Keys and values after the layout keys, in the order they are to appear.
    shape
        The image shape ``(rows, columns)``; SIZE1 is the columns (fast axis).
    byte_order
        ``little_endian`` or ``big_endian``.

    Returns
    -------
    bytes
        ASCII text, ``HEADER_BYTES`` long (a multiple of 512).

    Raises
    ------
    FormatError
        If a key is malformed, a value cannot be written safely, or ``header`` sets one of
        the layout keys (HEADER_BYTES, DIM, BYTE_ORDER, TYPE, SIZE1, SIZE2).
    """
    if byte_order not in _BYTE_ORDERS:
        raise FormatError(f"byte order must be little_endian or big_endian, not {byte_order!r}")
    rows, columns = shape
    lines: list[str] = [
        "DIM=2;\n",
        f"BYTE_ORDER={byte_order};\n",
        "TYPE=unsigned_short;\n",
        f"SIZE1={columns};\n",
        f"SIZE2={rows};\n",
    ]
    for key, value in header.items():
        if key.upper() in _LAYOUT_KEYS:
            raise FormatError("this key is set from the image and may not be given", field=key)
        text = format_smv_value(value)
        _check_entry(key, text)
        lines.append(f"{key}={text};\n")
    body = "".join(lines) + "}\n"
    # "{\n" + "HEADER_BYTES=" + 5 digits + ";\n" is 22 bytes whatever the size.
    used = len("{\nHEADER_BYTES=00000;\n") + len(body)
    size = -(-used // SMV_BLOCK_BYTES) * SMV_BLOCK_BYTES
    if size > 99999:
        raise FormatError(f"the header would need {size} bytes, more than SMV allows")
    text = f"{{\nHEADER_BYTES={size:5d};\n{body}"
    return text.ljust(size).encode("ascii")


def write_smv(
    path: Path | str,
    data: NDArray[np.uint16],
    header: Mapping[str, str | int | float],
    *,
    byte_order: str = "little_endian",
) -> Path:
    """Write an SMV image atomically (a temporary file renamed into place).

    Parameters
    ----------
    path
        The ``.img`` file to write.
    data
        A 2-D uint16 array ``(rows, columns)``.
    header
        Keys and values after the layout keys (see :func:`format_smv_header`).
    byte_order
        ``little_endian`` (the default, what detectors write) or ``big_endian``.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    FormatError
        If ``data`` is not a 2-D uint16 array or the header cannot be written.
    """
    path = Path(path)
    if data.ndim != 2 or data.dtype != np.uint16:
        raise FormatError(
            f"SMV holds one 2-D uint16 image, got a {data.ndim}-D {data.dtype} array", path=path
        )
    try:
        head = format_smv_header(
            header, shape=(data.shape[0], data.shape[1]), byte_order=byte_order
        )
    except FormatError as exc:
        raise FormatError(exc.message, path=path, field=exc.field) from exc
    pixels = np.ascontiguousarray(data, dtype=np.dtype(_BYTE_ORDERS[byte_order] + "u2"))
    return atomic_write_bytes(path, head + pixels.tobytes())


@dataclass(frozen=True)
class SmvImage:
    """An SMV image as read from a file.

    Attributes
    ----------
    path
        The file it was read from.
    data
        The pixels, uint16, shape ``(SIZE2, SIZE1)`` (rows, columns), native byte order.
    header
        Every header key and its value text, in file order.
    header_bytes
        The size of the header, i.e. the offset of the first pixel.
    """

    path: Path
    data: NDArray[np.uint16]
    header: dict[str, str] = field(repr=False)
    header_bytes: int

    def number(self, key: str) -> float:
        """A header value as a float.

        Raises
        ------
        MissingFieldError
            If the key is absent.
        FormatError
            If its value is not a number.
        """
        if key not in self.header:
            raise MissingFieldError("the header has no such key", path=self.path, field=key)
        try:
            return float(self.header[key])
        except ValueError:
            raise FormatError(
                f"not a number: {self.header[key]!r}", path=self.path, field=key
            ) from None


def parse_smv_header(raw: bytes, *, path: Path | str | None = None) -> tuple[int, dict[str, str]]:
    """Decode the header at the start of an SMV file.

    Parameters
    ----------
    raw
        At least the first ``HEADER_BYTES`` bytes of the file.
    path
        The file, named in errors.

    Returns
    -------
    tuple of (int, dict)
        ``HEADER_BYTES`` and the ``KEY -> value`` text of every record before ``}``.

    Raises
    ------
    FormatError
        If the file does not start like SMV, or the header is not closed within HEADER_BYTES.
    TruncatedFileError
        If the file is shorter than its header.
    """
    if not raw.startswith(SMV_MAGIC):
        raise FormatError(
            "not an SMV image: it does not start with '{\\nHEADER_BYTES='", path=path, line=1
        )
    first, _, _ = raw[2:].partition(b"\n")
    try:
        header_bytes = int(first.decode("ascii").split("=", 1)[1].rstrip().rstrip(";"))
    except (UnicodeDecodeError, ValueError):
        raise FormatError(
            f"HEADER_BYTES is not an integer: {first!r}", path=path, line=2, field="HEADER_BYTES"
        ) from None
    if header_bytes < len(SMV_MAGIC):
        raise FormatError(f"HEADER_BYTES={header_bytes} is too small", path=path, line=2)
    if len(raw) < header_bytes:
        raise TruncatedFileError(
            f"the file has {len(raw)} bytes, fewer than its {header_bytes}-byte header", path=path
        )
    text = raw[:header_bytes].decode("ascii", errors="replace")
    header: dict[str, str] = {}
    for number, record in enumerate(text.split("\n"), start=1):
        if record.startswith("}"):
            return header_bytes, header
        if number == 1 or "=" not in record:
            continue
        key, _, value = record.partition("=")
        header[key.strip()] = value.strip().rstrip(";").strip()
    raise FormatError(f"the header has no closing '}}' within its {header_bytes} bytes", path=path)


def _positive_int(header: Mapping[str, str], key: str, path: Path) -> int:
    if key not in header:
        raise MissingFieldError("the SMV header lacks this key", path=path, field=key)
    try:
        value = int(header[key])
    except ValueError:
        value = 0
    if value < 1:
        raise FormatError(f"expected a positive integer, got {header[key]!r}", path=path, field=key)
    return value


def read_smv(path: Path | str) -> SmvImage:
    """Read an SMV image with unsigned 16-bit pixels.

    Parameters
    ----------
    path
        The ``.img`` file.

    Returns
    -------
    SmvImage
        Pixels of shape ``(SIZE2, SIZE1)`` and the header text.

    Raises
    ------
    FormatError
        (or a subclass) naming the file and field: not SMV, an unclosed header, a missing
        SIZE1/SIZE2/BYTE_ORDER, a pixel type other than unsigned_short, a file size that
        disagrees with the header.
    """
    path = Path(path)
    raw = path.read_bytes()
    header_bytes, header = parse_smv_header(raw, path=path)
    if header.get("DIM", "2") != "2":
        raise FormatError(f"only 2-D images are read, got DIM={header['DIM']}", path=path)
    pixel_type = header.get("TYPE", "unsigned_short")
    if pixel_type != "unsigned_short":
        raise UnknownTypeCodeError(
            f"only unsigned_short pixels are read, got {pixel_type!r}", path=path, field="TYPE"
        )
    if "BYTE_ORDER" not in header:
        raise MissingFieldError("the SMV header lacks this key", path=path, field="BYTE_ORDER")
    order = _BYTE_ORDERS.get(header["BYTE_ORDER"])
    if order is None:
        raise FormatError(
            f"expected little_endian or big_endian, got {header['BYTE_ORDER']!r}",
            path=path,
            field="BYTE_ORDER",
        )
    columns = _positive_int(header, "SIZE1", path)
    rows = _positive_int(header, "SIZE2", path)
    expected = header_bytes + 2 * rows * columns
    if len(raw) != expected:
        message = (
            f"a {header_bytes}-byte header and {columns}×{rows} uint16 pixels make "
            f"{expected} bytes, but the file has {len(raw)}"
        )
        if len(raw) < expected:
            raise TruncatedFileError(message + ": it is truncated", path=path)
        raise SizeMismatchError(message, path=path)
    pixels = np.frombuffer(raw, dtype=np.dtype(order + "u2"), offset=header_bytes)
    data: NDArray[np.uint16] = pixels.reshape(rows, columns).astype(np.uint16)
    return SmvImage(path=path, data=data, header=header, header_bytes=header_bytes)
