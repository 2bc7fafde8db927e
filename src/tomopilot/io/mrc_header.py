"""Checking MRC headers from any writer before reading their data.

Files reach tomopilot from SerialEM, Direct Electron, EMDB, IMOD, RELION and others, with
quirks the field's tools accept: negative cell dimensions (taken as their absolute value, as
IMOD and RELION do), the machine stamp ``44 41 00 00`` (little-endian, as EMDB maps carry it)
as well as ``44 44 00 00``, any suffix (``.mrc``, ``.mrcs``, ``.map``, ``.st``, ``.ali``,
``.rec``). :func:`mrc_header_info` reads the 1024-byte header, decides the byte order, and checks
the data the header announces against the file's real size before anything is allocated, so a
refusal gives the true reason (truncated, unknown mode, not MRC at all).

Examples
--------
>>> import numpy as np, tempfile, pathlib, mrcfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "m.map"
>>> with mrcfile.new(path) as mrc:
...     mrc.set_data(np.zeros((3, 4, 5), np.float32)); mrc.header.cella = (-10.0, -8.0, -6.0)
>>> info = mrc_header_info(path)
>>> info.shape, info.pixel_size_a, info.byte_order
((3, 4, 5), 2.0, '<')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tomopilot.core.input_files import check_input_path
from tomopilot.io.errors import FormatError, TruncatedFileError, UnknownTypeCodeError

__all__ = ["MRC_HEADER_BYTES", "MRC_MODES", "MrcHeaderInfo", "looks_like_mrc", "mrc_header_info"]

MRC_HEADER_BYTES = 1024

MRC_MODES: dict[int, str] = {
    0: "i1",
    1: "i2",
    2: "f4",
    3: "complex int16",
    4: "c8",
    6: "u2",
    12: "f2",
    101: "4-bit",
}
"""MRC2014 modes → numpy type (or a description for those read by mrcfile only)."""

_ITEM_BYTES = {0: 1.0, 1: 2.0, 2: 4.0, 3: 4.0, 4: 8.0, 6: 2.0, 12: 2.0, 101: 0.5}


@dataclass(frozen=True)
class MrcHeaderInfo:
    """What an MRC header says, checked against the file.

    Attributes
    ----------
    shape
        (nz, ny, nx): sections, rows, columns.
    mode
        MRC mode number.
    byte_order
        ``"<"`` or ``">"``.
    pixel_size_a
        ``|cella.x| / mx`` (mx falling back to nx), or None when the cell is 0.
    extended_header_bytes
        ``nsymbt``.
    space_group
        ``ispg`` (0 for an image stack, 1 for a volume; DE movies write 1).
    file_bytes
        The file's real size.
    """

    shape: tuple[int, int, int]
    mode: int
    byte_order: str
    pixel_size_a: float | None
    extended_header_bytes: int
    space_group: int
    file_bytes: int

    @property
    def data_bytes(self) -> int:
        """Bytes of data the header announces."""
        nz, ny, nx = self.shape
        if self.mode == 101:
            return nz * ny * ((nx + 1) // 2)
        return int(nz * ny * nx * _ITEM_BYTES[self.mode])


def looks_like_mrc(head: bytes) -> bool:
    """True when the first 212+ bytes carry MRC2014's ``MAP `` stamp at byte 208."""
    return len(head) >= 212 and head[208:212] == b"MAP "


def _byte_order(head: bytes) -> str:
    stamp = head[212:214]
    if stamp in (b"\x44\x44", b"\x44\x41", b"\x44\x00"):
        return "<"
    if stamp in (b"\x11\x11", b"\x11\x00"):
        return ">"
    # No (or an unknown) stamp, as old writers leave it: the order whose mode is plausible.
    little = int(np.frombuffer(head[12:16], "<i4")[0])
    return "<" if little in MRC_MODES else ">"


def mrc_header_info(path: Path | str) -> MrcHeaderInfo:
    """Read and check an MRC header against the file's size (no data is read).

    Raises
    ------
    FormatError
        If the path is not a readable file, is not MRC (no ``MAP`` stamp and no plausible
        header), has an unknown mode or negative dimensions.
    TruncatedFileError
        If the file is shorter than the header and the data it announces.
    """
    path = Path(path)
    size = check_input_path(path, what="MRC", error=FormatError)
    with path.open("rb") as handle:
        head = handle.read(MRC_HEADER_BYTES)
    if len(head) < MRC_HEADER_BYTES:
        raise TruncatedFileError(
            f"only {len(head)} bytes: shorter than the {MRC_HEADER_BYTES}-byte MRC header",
            path=path,
        )
    order = _byte_order(head)
    words = np.frombuffer(head[:56], f"{order}i4")
    nx, ny, nz, mode = (int(v) for v in words[:4])
    mx = int(words[7])
    cell_x = float(np.frombuffer(head[40:44], f"{order}f4")[0])
    nsymbt = int(np.frombuffer(head[92:96], f"{order}i4")[0])
    ispg = int(np.frombuffer(head[88:92], f"{order}i4")[0])
    if not looks_like_mrc(head) and not (mode in MRC_MODES and min(nx, ny, nz) > 0):
        raise FormatError(
            f"not an MRC file: no 'MAP ' stamp at byte 208 (first bytes {head[:8].hex(' ')})",
            path=path,
        )
    if mode not in MRC_MODES:
        raise UnknownTypeCodeError(
            f"unknown MRC mode {mode} (known: {', '.join(map(str, MRC_MODES))})",
            path=path,
            field="mode",
        )
    for name, value in (("nx", nx), ("ny", ny), ("nz", nz)):
        if value < 1:
            raise FormatError(f"{name} must be at least 1, got {value}", path=path, field=name)
    if nsymbt < 0:
        raise FormatError(f"negative extended-header size {nsymbt}", path=path, field="nsymbt")
    divisor = mx if mx > 0 else nx
    pixel = abs(cell_x) / divisor if np.isfinite(cell_x) and cell_x != 0 else None
    info = MrcHeaderInfo((nz, ny, nx), mode, order, pixel, nsymbt, ispg, size)
    needed = MRC_HEADER_BYTES + nsymbt + info.data_bytes
    if size < needed:
        raise TruncatedFileError(
            f"the header announces {nz}×{ny}×{nx} mode-{mode} values ({needed} bytes with the "
            f"headers) but the file has {size} bytes: it is truncated",
            path=path,
        )
    return info
