"""Appendable MRC image stacks (tilt series), written the way SerialEM writes them.

A stack is an MRC2014 file with space group 0 (an image stack), mode 1 (int16), 2 (float32)
or 6 (uint16), no extended header, the pixel size as voxel size and SerialEM-style labels.
:class:`MrcStackWriter` appends one section at a time so that a crash at any instant loses at
most the section in flight:

1. the section's bytes are written after the last complete section and fsync'd;
2. only then is the header (``nz`` and the min / max / mean / RMS statistics) rewritten in
   place and fsync'd.

The header therefore never announces a section that is not on disk, and after every append
the file is a valid MRC file (``mrcfile.validate`` passes). :func:`repair_stack` brings a
stack left by a crash back to exactly the sections the caller knows were committed.

Examples
--------
>>> import numpy as np, tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "ts.mrc"
>>> stack = MrcStackWriter(path, shape_yx=(4, 6), dtype=np.int16, pixel_size_a=2.5)
>>> stack.append(np.full((4, 6), 7.4))
0
>>> MrcStackWriter.open(path).n_sections
1
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mrcfile.dtypes import HEADER_DTYPE
from numpy.typing import ArrayLike, DTypeLike, NDArray

from tomopilot.core.files import atomic_write_bytes
from tomopilot.core.input_files import check_input_path
from tomopilot.io.errors import FormatError, TruncatedFileError
from tomopilot.io.stack_pixels import (
    MODES,
    SectionStats,
    mode_of,
    pool_stats,
    section_stats,
    to_stack_dtype,
)

_log = logging.getLogger(__name__)

HEADER_BYTES = 1024
MAX_LABELS = 10
LABEL_LENGTH = 80
_HEADER = HEADER_DTYPE.newbyteorder("<")


class ImageShapeError(FormatError):
    """An image does not have the shape of the stack's sections."""


class CorruptStackError(FormatError):
    """An existing stack is not a stack this module can continue (or repair)."""


class TornStackError(CorruptStackError):
    """A stack holds bytes beyond its last complete section (a crash mid-append)."""


def _new_header(
    shape_yx: tuple[int, int], mode: int, pixel_size_a: float, labels: Sequence[str]
) -> NDArray[Any]:
    header = np.zeros((), dtype=_HEADER)
    ny, nx = shape_yx
    header["nx"], header["ny"], header["nz"] = nx, ny, 0
    header["mode"] = mode
    header["mx"], header["my"], header["mz"] = nx, ny, 1  # mz = 1: an image stack (MRC2014)
    header["cella"] = (nx * pixel_size_a, ny * pixel_size_a, pixel_size_a)
    header["cellb"] = (90.0, 90.0, 90.0)
    header["mapc"], header["mapr"], header["maps"] = 1, 2, 3
    header["dmin"], header["dmax"], header["dmean"], header["rms"] = 0.0, -1.0, -2.0, -1.0
    header["ispg"] = 0
    header["nversion"] = 20141
    header["map"] = b"MAP "
    header["machst"] = (0x44, 0x44, 0x00, 0x00)  # little-endian
    header["nlabl"] = len(labels)
    for index, label in enumerate(labels):
        header["label"][index] = label.encode("ascii")
    return header


class MrcStackWriter:
    """Append sections to an MRC image stack, crash-safely.

    Parameters
    ----------
    path
        The stack file. A new stack is created (header only, through a temporary file and a
        rename); an existing file is refused: continue it with :meth:`open`.
    shape_yx
        (height, width) of every section, in pixels.
    dtype
        int16 (mode 1), float32 (mode 2) or uint16 (mode 6).
    pixel_size_a
        Pixel size of the saved images (Å), stored as the voxel size.
    labels
        Up to ten ASCII header labels of at most 80 characters (SerialEM's first label is
        ``SerialEM: <site>  dd-Mon-yy  HH:MM:SS``).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        shape_yx: tuple[int, int],
        dtype: DTypeLike,
        pixel_size_a: float,
        labels: Sequence[str] = (),
    ) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists; continue it with MrcStackWriter.open")
        if len(labels) > MAX_LABELS:
            raise FormatError("an MRC header holds at most 10 labels", path=self.path)
        for label in labels:
            if len(label) > LABEL_LENGTH or not label.isascii():
                raise FormatError(f"bad label {label!r}: 80 ASCII characters at most", path=path)
        if min(shape_yx) <= 0 or not pixel_size_a > 0:
            raise FormatError(f"bad stack geometry {shape_yx} at {pixel_size_a} Å", path=path)
        header = _new_header(shape_yx, mode_of(dtype), pixel_size_a, labels)
        atomic_write_bytes(self.path, header.tobytes())
        self._init_from_header(header)

    def _init_from_header(self, header: NDArray[Any]) -> None:
        self._header = header
        self.shape_yx = (int(header["ny"]), int(header["nx"]))
        self.dtype = MODES[int(header["mode"])]
        self.n_sections = int(header["nz"])
        self.section_bytes = self.shape_yx[0] * self.shape_yx[1] * self.dtype.itemsize
        self.data_offset = HEADER_BYTES + int(header["nsymbt"])
        self.clipped_pixels = 0
        n_pixels = self.n_sections * self.shape_yx[0] * self.shape_yx[1]
        self._rms = float(header["rms"])
        self._n, self._mean = n_pixels, float(header["dmean"])
        self._m2 = self._rms * self._rms * n_pixels
        self._min, self._max = float(header["dmin"]), float(header["dmax"])

    @classmethod
    def open(cls, path: Path | str) -> MrcStackWriter:
        """Continue an existing stack written by this class.

        Raises
        ------
        CorruptStackError
            If the file is not such a stack (wrong mode, extended header, big-endian ...).
        TornStackError
            If bytes follow the last complete section (call :func:`repair_stack` first).
        TruncatedFileError
            If the file is shorter than its header announces.
        """
        path = Path(path)
        header = read_stack_header(path)
        writer = cls.__new__(cls)
        writer.path = path
        writer._init_from_header(header)
        expected = writer.data_offset + writer.n_sections * writer.section_bytes
        size = path.stat().st_size
        if size < expected:
            raise TruncatedFileError(
                f"the header announces {writer.n_sections} sections but the file ends "
                f"{expected - size} bytes early",
                path=path,
            )
        if size > expected:
            raise TornStackError(
                f"{size - expected} bytes follow section {writer.n_sections - 1} "
                "(an append interrupted by a crash); repair the stack first",
                path=path,
            )
        if writer.n_sections and float(header["rms"]) < 0:
            writer._recompute_stats()
        return writer

    @property
    def pixel_size_a(self) -> float:
        """Pixel size recorded in the header (Å)."""
        return float(self._header["cella"]["x"]) / self.shape_yx[1]

    @property
    def mode(self) -> int:
        """MRC mode of the stack."""
        return int(self._header["mode"])

    def labels(self) -> list[str]:
        """The header labels in use."""
        count = int(self._header["nlabl"])
        return [bytes(raw).decode("ascii").rstrip() for raw in self._header["label"][:count]]

    def append(self, image: ArrayLike) -> int:
        """Append one section and return its 0-based index once it is durable.

        Float images going to an integer stack are rounded and clipped; clipped pixels are
        counted in :attr:`clipped_pixels` and logged as a warning.

        Raises
        ------
        ImageShapeError
            If the image is not 2D of the stack's shape.
        LossyConversionError
            If the image holds NaN or infinity.
        """
        array = np.asarray(image)
        if array.shape != self.shape_yx:
            raise ImageShapeError(
                f"image of shape {array.shape} cannot go into a stack of "
                f"{self.shape_yx[0]}×{self.shape_yx[1]} sections",
                path=self.path,
            )
        data, n_clipped = to_stack_dtype(array, self.dtype, path=self.path)
        if n_clipped:
            self.clipped_pixels += n_clipped
            _log.warning(
                "%s: %d pixels clipped to the %s range in section %d",
                self.path,
                n_clipped,
                self.dtype.name,
                self.n_sections,
            )
        stats = section_stats(data)
        index = self.n_sections
        fd = os.open(self.path, os.O_WRONLY)
        try:
            _pwrite_all(fd, data.tobytes(), self.data_offset + index * self.section_bytes)
            os.fsync(fd)
            self._add_stats(stats)
            self.n_sections = index + 1
            self._write_header(fd)
        finally:
            os.close(fd)
        return index

    def read_section(self, index: int) -> NDArray[Any]:
        """Read one stored section back (for checks and re-ordering)."""
        if not 0 <= index < self.n_sections:
            raise IndexError(f"{self.path} has no section {index}")
        with self.path.open("rb") as handle:
            handle.seek(self.data_offset + index * self.section_bytes)
            raw = handle.read(self.section_bytes)
        if len(raw) != self.section_bytes:
            raise TruncatedFileError(f"section {index} is incomplete", path=self.path)
        return np.frombuffer(raw, dtype=self.dtype).reshape(self.shape_yx).copy()

    def _add_stats(self, stats: SectionStats) -> None:
        """Pool a section into the header statistics.

        The running mean and RMS are rounded to the header's float32 after every section, so
        the state in memory is always the one on disk: a stack continued after a crash gets
        the same header, bit for bit, as one written without interruption.
        """
        n, mean, m2 = pool_stats(
            self._n, self._mean, self._m2, stats.n_pixels, stats.mean, stats.m2
        )
        self._rms = float(np.float32(np.sqrt(m2 / n)))
        self._n, self._mean, self._m2 = n, float(np.float32(mean)), self._rms * self._rms * n
        first = self._n == stats.n_pixels
        self._min = stats.min if first else min(self._min, stats.min)
        self._max = stats.max if first else max(self._max, stats.max)

    def _recompute_stats(self) -> None:
        self._n, self._mean, self._m2, self._rms = 0, 0.0, 0.0, 0.0
        for index in range(self.n_sections):
            self._add_stats(section_stats(self.read_section(index)))

    def _write_header(self, fd: int) -> None:
        header = self._header
        header["nz"] = self.n_sections
        if self.n_sections:
            header["dmin"], header["dmax"] = self._min, self._max
            header["dmean"] = self._mean
            header["rms"] = self._rms
        else:
            header["dmin"], header["dmax"], header["dmean"], header["rms"] = 0, -1, -2, -1
        _pwrite_all(fd, header.tobytes(), 0)
        os.fsync(fd)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def read_stack_header(path: Path | str) -> NDArray[Any]:
    """Read and check the header of a stack this module can continue.

    Raises
    ------
    CorruptStackError
        If the file is missing, too short, not MRC, big-endian, of another mode, has an
        extended header or is not an image stack.
    """
    path = Path(path)
    check_input_path(path, what="stack", error=CorruptStackError)
    with path.open("rb") as handle:
        raw = handle.read(HEADER_BYTES)
    if len(raw) < HEADER_BYTES:
        raise CorruptStackError(f"only {len(raw)} bytes: no complete MRC header", path=path)
    header = np.frombuffer(raw, dtype=_HEADER).reshape(()).copy()
    if bytes(header["map"]) != b"MAP ":
        raise CorruptStackError("not an MRC file (no 'MAP ' stamp)", path=path, field="map")
    stamp = tuple(int(b) for b in header["machst"][:2])
    if stamp not in ((0x44, 0x44), (0x44, 0x41)):  # both mean little-endian (EMDB: 44 41)
        kind = "a big-endian file" if stamp[0] == 0x11 else f"machine stamp {bytes(stamp).hex(' ')}"
        raise CorruptStackError(
            f"{kind}: only little-endian stacks (stamp 44 44 or 44 41) can be continued",
            path=path,
            field="machst",
        )
    if int(header["mode"]) not in MODES:
        raise CorruptStackError(
            f"mode {int(header['mode'])} is not 1, 2 or 6", path=path, field="mode"
        )
    if int(header["nsymbt"]) != 0:
        raise CorruptStackError("stacks with an extended header cannot be continued", path=path)
    if int(header["nx"]) <= 0 or int(header["ny"]) <= 0:
        raise CorruptStackError(
            f"image size {int(header['nx'])}×{int(header['ny'])} is not positive", path=path
        )
    if int(header["ispg"]) != 0:
        raise CorruptStackError(
            f"space group {int(header['ispg'])}: a volume or crystal map, not an image stack "
            "(ispg 0) that tomopilot wrote",
            path=path,
            field="ispg",
        )
    if int(header["nz"]) < 0:
        raise CorruptStackError("negative section count", path=path, field="nz")
    return header


def stack_section_count(path: Path | str) -> int:
    """Complete sections the stack certainly holds: its header's ``nz``.

    The header is updated only after a section's bytes are durable, so ``nz`` never counts a
    section in flight; bytes beyond it are a torn append.
    """
    return int(read_stack_header(path)["nz"])


def repair_stack(path: Path | str, n_sections: int) -> MrcStackWriter:
    """Make a stack hold exactly its first ``n_sections`` complete sections.

    Trailing bytes (a section torn by a crash, or sections beyond the committed count) are
    truncated and the header's ``nz`` and statistics rewritten. Idempotent: a crash during
    the repair is mended by repairing again.

    Raises
    ------
    TruncatedFileError
        If the file holds fewer than ``n_sections`` complete sections (committed data lost).
    CorruptStackError
        If the file is not a stack this module wrote.
    """
    path = Path(path)
    if n_sections < 0:
        raise ValueError("n_sections must be >= 0")
    header = read_stack_header(path)
    ny, nx, item = int(header["ny"]), int(header["nx"]), MODES[int(header["mode"])].itemsize
    end = HEADER_BYTES + n_sections * ny * nx * item
    size = path.stat().st_size
    if size < end:
        raise TruncatedFileError(
            f"{n_sections} sections were committed but only "
            f"{(size - HEADER_BYTES) // (ny * nx * item)} are complete",
            path=path,
        )
    if size == end and int(header["nz"]) == n_sections:
        return MrcStackWriter.open(path)
    if int(header["nz"]) < n_sections:
        _log.warning(
            "%s: header counted %d sections, repairing to %d", path, header["nz"], n_sections
        )
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, end)
        os.fsync(fd)
        writer = MrcStackWriter.__new__(MrcStackWriter)
        writer.path = path
        header["nz"] = n_sections
        writer._init_from_header(header)
        writer._recompute_stats()
        writer._write_header(fd)
    finally:
        os.close(fd)
    _log.info("%s: repaired to %d sections (%d bytes dropped)", path, n_sections, size - end)
    return writer
