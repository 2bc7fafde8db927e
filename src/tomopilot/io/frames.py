"""Movie frame stacks: MRC (mrcfile), TIFF (tifffile) and EER (tifffile's decoder).

:func:`read_frames` returns an (n, height, width) array of counts whatever the format;
:func:`frame_stack_info` reads only the header (frame count, size, pixel size) for dry runs;
:func:`write_frames` writes a stack in the format its suffix names (``.mrc``/``.mrcs``,
``.tif``/``.tiff``, ``.eer``). Every failure names the file in a
:class:`~tomopilot.io.errors.FormatError`.

Orientation: arrays are in MRC order (row 0 is the first row of an MRC section). TIFF stores
rows top-down, so a TIFF's rows are reversed on reading and on writing, as IMOD (``tif2mrc``)
and RELION do (checked against ``relion_run_motioncorr``: the micrograph of a TIFF movie is the
TIFF's frames upside down, that of the same frames in an MRC stack is not). SerialEM writes TIFF
frames the same way, so a TIFF movie, its MRC gain reference and the MRC tilt stack line up.
EER frames keep the order the file's events give (RELION renders them without a flip).

Examples
--------
>>> import numpy as np, tempfile, pathlib
>>> stack = np.arange(24, dtype=np.uint16).reshape(2, 3, 4)
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> for name in ("m.mrc", "m.tif"):
...     _ = write_frames(folder / name, stack)
...     assert np.array_equal(read_frames(folder / name), stack)
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from tomopilot.io.eer import eer_info, read_eer, split_counts_into_events, write_eer
from tomopilot.io.errors import FormatError
from tomopilot.io.mrc_header import looks_like_mrc, mrc_header_info

FrameFormat = Literal["mrc", "tiff", "eer"]

_SUFFIXES: dict[str, FrameFormat] = {
    ".mrc": "mrc",
    ".mrcs": "mrc",
    ".st": "mrc",
    ".map": "mrc",
    ".ali": "mrc",
    ".rec": "mrc",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".eer": "eer",
}


MRC_LABEL = b"tomopilot".ljust(80)
"""The first MRC header label of files tomopilot writes (no time stamp: same data, same bytes)."""


class MissingFrameFileError(FormatError):
    """A movie named by a STAR or mdoc file does not exist."""


@dataclass(frozen=True)
class FrameStackInfo:
    """Header facts of a frame stack.

    Attributes
    ----------
    n_frames
        Frames in the file (hardware frames for EER).
    shape
        (height, width) of one frame as stored (the physical grid for EER).
    pixel_size_a
        Pixel size the header records, if any.
    fmt
        ``"mrc"``, ``"tiff"`` or ``"eer"``.
    """

    n_frames: int
    shape: tuple[int, int]
    pixel_size_a: float | None
    fmt: FrameFormat


def frame_format(path: Path | str, fmt: FrameFormat | None = None) -> FrameFormat:
    """The stack format from an explicit ``fmt``, the file's suffix, or (for another suffix)
    the file's first bytes: MRC's ``MAP`` stamp or a TIFF byte-order mark."""
    if fmt is not None:
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    sniffed = _sniff(Path(path))
    if sniffed is None:
        raise FormatError(
            f"unknown frame-stack suffix {suffix!r} and the file is neither MRC nor TIFF "
            "(use .mrc, .mrcs, .map, .st, .tif, .tiff or .eer)",
            path=path,
        )
    return sniffed


def _sniff(path: Path) -> FrameFormat | None:
    try:
        with path.open("rb") as handle:
            head = handle.read(1024)
    except (OSError, ValueError):
        return None
    if looks_like_mrc(head):
        return "mrc"
    if head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "tiff"
    return None


def _require(path: Path) -> None:
    if path.is_dir():
        raise FormatError("is a directory, not a movie file", path=path)
    if not path.is_file():
        raise MissingFrameFileError("movie file not found", path=path)


def frame_stack_info(path: Path | str, *, fmt: FrameFormat | None = None) -> FrameStackInfo:
    """Read the header of a frame stack without decoding its frames."""
    path = Path(path)
    kind = frame_format(path, fmt)
    _require(path)
    if kind == "eer":
        info = eer_info(path)
        return FrameStackInfo(info.n_hardware_frames, info.shape, info.pixel_size_a, "eer")
    if kind == "mrc":
        header = mrc_header_info(path)
        n, height, width = header.shape
        return FrameStackInfo(n, (height, width), header.pixel_size_a, "mrc")
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            height, width = int(page.imagelength), int(page.imagewidth)
            n_pages = len(tif.pages)
    except Exception as exc:
        raise FormatError(f"cannot read TIFF header: {exc}", path=path) from exc
    return FrameStackInfo(n_pages, (height, width), None, "tiff")


def read_frames(
    path: Path | str,
    *,
    fmt: FrameFormat | None = None,
    eer_fractionation: int = 32,
    eer_upsampling: int = 1,
) -> NDArray[Any]:
    """Read a movie as an (n, height, width) array in the file's own data type.

    Parameters
    ----------
    path
        The frame stack.
    fmt
        Force a format instead of guessing it from the suffix.
    eer_fractionation
        EER only: hardware frames summed per output frame; leftover frames are dropped.
    eer_upsampling
        EER only: 1 = physical (4K) grid, 2 = 8K super-resolution, 4 = 16K.

    Raises
    ------
    MissingFrameFileError
        If the file does not exist.
    FormatError
        If the file cannot be decoded (corrupt TIFF, truncated MRC, ...).
    """
    path = Path(path)
    kind = frame_format(path, fmt)
    _require(path)
    if kind == "eer":
        return read_eer(path, fractionation=eer_fractionation, upsampling=eer_upsampling)
    if kind == "mrc":
        return _read_mrc(path)
    return _read_tiff(path)


PLAIN_MRC_MODES = (0, 1, 2, 4, 6, 12)
"""Modes whose data block is the array itself, byte for byte (read without mrcfile's copy)."""
READ_THREADS = max(1, min(os.cpu_count() or 1, 4))
READ_CHUNK_BYTES = 1 << 24


def _read_into(path: Path, array: NDArray[Any], offset: int) -> None:
    """Fill ``array`` with the file's bytes from ``offset``, in chunks on a few threads.

    The reads go straight into the array (no intermediate copy), and the chunks are read at
    once: copying a movie out of the page cache is memory-bound work that one thread cannot
    finish as fast as two.
    """
    view = array.reshape(-1).view(np.uint8).data
    size = view.nbytes
    starts = range(0, size, READ_CHUNK_BYTES)
    fd = os.open(path, os.O_RDONLY)
    try:

        def read(start: int) -> None:
            end = min(start + READ_CHUNK_BYTES, size)
            while start < end:
                got = os.preadv(fd, [view[start:end]], offset + start)
                if got <= 0:
                    raise FormatError(f"unexpected end of file at byte {offset + start}", path=path)
                start += got

        if READ_THREADS > 1 and len(starts) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(READ_THREADS, len(starts))) as pool:
                for future in [pool.submit(read, start) for start in starts]:
                    future.result()
        else:
            for start in starts:
                read(start)
    finally:
        os.close(fd)


def read_plain_mrc(path: Path | str) -> NDArray[Any]:
    """The data of an MRC file of a plain mode (:data:`PLAIN_MRC_MODES`), as a new writable
    array shaped as stored (2D for one section).

    mrcfile finds the data block (type, byte order, shape, offset) without reading it; the
    data then go straight into an array numpy allocated (large pages where the kernel gives
    them, far fewer page faults than a buffer of 4 KiB pages), read on a few threads.
    """
    path = Path(path)
    info = mrc_header_info(path)  # the true reason for a refusal, before anything allocates
    if info.mode not in PLAIN_MRC_MODES:
        raise FormatError(f"MRC mode {info.mode} is not read as plain data", path=path)
    dtype, shape, offset = mrc_data_layout(path, "MRC data")
    try:
        array = np.empty(shape, dtype)
        _read_into(path, array, offset)
    except Exception as exc:
        raise FormatError(f"cannot read MRC data: {exc}", path=path) from exc
    return array


def mrc_data_layout(
    path: Path, what: str = "MRC data"
) -> tuple[np.dtype[Any], tuple[int, ...], int]:
    """Where an MRC file's data block is: its type (with byte order), its shape as stored and
    its byte offset, found by mrcfile without reading the data. ``what`` names the data in
    the error (``cannot read <what>: ...``)."""
    import mrcfile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.mmap(path, mode="r", permissive=True) as mrc:
                mapped = mrc.data
                if mapped is None:
                    raise FormatError("MRC file holds no data (truncated?)", path=path)
                layout = (mapped.dtype, tuple(mapped.shape), int(mapped.offset))
                del mapped
    except FormatError:
        raise
    except Exception as exc:
        raise FormatError(f"cannot read {what}: {exc}", path=path) from exc
    return layout


def _read_mrc(path: Path) -> NDArray[Any]:
    import mrcfile

    info = mrc_header_info(path)  # the true reason for a refusal, before mrcfile allocates
    if info.mode in PLAIN_MRC_MODES:
        array = read_plain_mrc(path)
        array.flags.writeable = False  # as mrcfile's read-only data
        return array[None] if array.ndim == 2 else array
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.open(path, mode="r", permissive=True) as mrc:
                data = mrc.data
                if data is None:
                    raise FormatError("MRC file holds no data (truncated?)", path=path)
                array = np.asarray(data)  # read-only, kept alive by the array
    except FormatError:
        raise
    except Exception as exc:
        raise FormatError(f"cannot read MRC stack: {exc}", path=path) from exc
    return array[None] if array.ndim == 2 else array


TIFF_DECODE_THREADS = max(1, min(os.cpu_count() or 1, 8))


def _read_tiff(path: Path) -> NDArray[Any]:
    """All pages; compressed pages are decoded on :data:`TIFF_DECODE_THREADS` threads (the
    codecs release the GIL), which a lone movie's job would otherwise do on one core."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            pages = len(tif.pages)
            array = tif.asarray(
                key=slice(0, pages) if pages > 1 else None, maxworkers=TIFF_DECODE_THREADS
            )
    except Exception as exc:
        raise FormatError(f"cannot decode TIFF stack: {exc}", path=path) from exc
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise FormatError(f"expected a stack of 2D frames, got shape {array.shape}", path=path)
    return array[:, ::-1]  # TIFF rows are top-down: MRC order (see the module docstring)


def write_frames(
    path: Path | str,
    frames: NDArray[Any],
    *,
    fmt: FrameFormat | None = None,
    pixel_size_a: float | None = None,
    eer_hardware_frames: int | None = None,
    seed: int = 0,
) -> Path:
    """Write an (n, height, width) frame stack in the format its suffix names.

    Parameters
    ----------
    path
        Output file: ``.mrc``/``.mrcs`` (mrcfile), ``.tif``/``.tiff`` (tifffile, one page per
        frame, deflate-compressed when integer), ``.eer`` (our EER encoder).
    frames
        The frames; for EER non-negative integer counts.
    pixel_size_a
        Recorded in the MRC header / EER metadata when given.
    eer_hardware_frames
        EER only: hardware frames per frame (default: the largest pixel count). Reading back
        with ``eer_fractionation`` equal to it returns ``frames`` exactly.
    seed
        EER only: seed for splitting counts over hardware frames and for sub-pixel bits.
    """
    path = Path(path)
    kind = frame_format(path, fmt)
    data = np.asarray(frames)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise FormatError(f"frames must be (n, h, w), got shape {data.shape}", path=path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "eer":
        if data.dtype.kind == "f":
            if not np.all(np.isclose(data, np.round(data))) or data.min() < 0:
                raise FormatError("EER stores electron counts: non-negative integers", path=path)
            data = np.round(data).astype(np.int64)
        try:
            events, _ = split_counts_into_events(data, eer_hardware_frames, seed=seed)
        except ValueError as exc:
            raise FormatError(str(exc), path=path) from exc
        return write_eer(path, events, pixel_size_a=pixel_size_a or 1.0, seed=seed)
    if kind == "mrc":
        import mrcfile

        if data.dtype == np.float64:
            data = data.astype(np.float32)
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(data)
            mrc.header.label[0] = MRC_LABEL
            if pixel_size_a:
                mrc.voxel_size = pixel_size_a
        return path
    import tifffile

    compression = "zlib" if data.dtype.kind in "iub" else None
    tifffile.imwrite(path, data[:, ::-1], compression=compression, photometric="minisblack")
    return path
