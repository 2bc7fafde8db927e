"""Electron Event Representation (EER) files: rendering with fractionation, and an encoder.

Reading goes through :mod:`tifffile`, whose EER decoder (``imagecodecs.eer_decode``) renders each
hardware frame at 4K (``upsampling=1``), 8K (2) or 16K (4) from the events' sub-pixel codes.
Fractionation sums ``fractionation`` consecutive hardware frames into one output frame, as RELION's
``--eer_grouping`` does: ``n_out = n_raw // fractionation`` and leftover hardware frames are
dropped (a warning-worthy fact the caller can read from :class:`EerInfo`).

No library writes EER, so :func:`write_eer` is our own encoder. Each hardware frame becomes one
BigTIFF page compressed with scheme 65001 (7-bit run lengths of skipped pixels followed by 4
sub-pixel bits per electron, packed least-significant bit first); the acquisition metadata is the
XML ``<metadata>`` block in tag 65001 of the first page, as Falcon 4 files carry it. Files written
here decode with :mod:`tifffile` and :mod:`eerfile`.

Examples
--------
>>> import numpy as np, tempfile, pathlib
>>> counts = np.zeros((2, 16, 16), np.uint8); counts[0, 3, 5] = 1; counts[1, 9, 2] = 1
>>> path = pathlib.Path(tempfile.mkdtemp()) / "movie.eer"
>>> _ = write_eer(path, counts, pixel_size_a=1.0)
>>> frames = read_eer(path, fractionation=2)
>>> frames.shape, int(frames[0, 3, 5]), int(frames[0, 9, 2])
((1, 16, 16), 1, 1)
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tomopilot.core.input_files import check_input_path, describe_exception
from tomopilot.io.errors import FormatError, TruncatedFileError

_RUN_BITS = 7
_MAX_RUN = (1 << _RUN_BITS) - 1
_CODE_BITS = _RUN_BITS + 4
_COMPRESSION_EER_7BIT = 65001
_METADATA_TAG = 65001
_EER_COMPRESSIONS = (65000, 65001, 65002)
MAX_SENSOR_PIXELS = 8192
"""Largest EER sensor side accepted (Falcon 4 and 4i are 4096 pixels)."""
MAX_RENDER_BYTES = 8 * 2**30
"""Largest rendered output of one :func:`read_eer` call (8 GiB)."""


@dataclass(frozen=True)
class EerInfo:
    """What an EER file's header says.

    Attributes
    ----------
    n_hardware_frames
        Pages (hardware frames) in the file.
    shape
        (height, width) of the physical sensor grid (4K on a Falcon 4).
    pixel_size_a
        Physical pixel size from ``sensorPixelSize``, if present.
    metadata
        All acquisition metadata items, as tifffile parses them.
    """

    n_hardware_frames: int
    shape: tuple[int, int]
    pixel_size_a: float | None
    metadata: dict[str, Any]


def _tifffile() -> Any:
    import tifffile

    return tifffile


def eer_info(path: Path | str) -> EerInfo:
    """Read the header of an EER file (no frames are decoded)."""
    path = Path(path)
    size = check_input_path(path, what="EER", error=FormatError)
    tifffile = _tifffile()
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.is_eer:
                raise FormatError("not an EER file (no EER metadata in tag 65001)", path=path)
            metadata = dict(tif.eer_metadata or {})
            shape = _check_pages(tif, path, size)
            n_pages = len(tif.pages)
    except FormatError:
        raise
    except Exception as exc:
        raise FormatError(f"cannot read EER file: {describe_exception(exc)}", path=path) from exc
    size_m = metadata.get("sensorPixelSize.width")
    pixel_a = float(size_m) * 1e10 if isinstance(size_m, int | float) and size_m > 0 else None
    return EerInfo(n_pages, shape, pixel_a, metadata)


def read_eer(
    path: Path | str,
    *,
    fractionation: int,
    upsampling: int = 1,
    frame_range: tuple[int, int] | None = None,
) -> NDArray[np.uint16]:
    """Render an EER file into fractions of ``fractionation`` hardware frames each.

    Parameters
    ----------
    path
        The ``.eer`` file.
    fractionation
        Hardware frames summed into one output frame (RELION's EER fractionation).
    upsampling
        1 renders on the physical grid (4K), 2 on the 8K super-resolution grid, 4 on 16K.
    frame_range
        Optional (first, stop) range of *output* fractions to render.

    Returns
    -------
    numpy.ndarray
        (n_fractions, height · upsampling, width · upsampling) counts, uint16.

    Raises
    ------
    FormatError
        If the file is not EER, is corrupt, or holds fewer hardware frames than one fraction.
    """
    path = Path(path)
    if fractionation < 1:
        raise FormatError(f"EER fractionation must be ≥ 1, got {fractionation}", path=path)
    if upsampling not in (1, 2, 4):
        raise FormatError(f"EER upsampling must be 1, 2 or 4, got {upsampling}", path=path)
    superres = {1: 0, 2: 1, 4: 2}[upsampling]
    size = check_input_path(path, what="EER", error=FormatError)
    tifffile = _tifffile()
    try:
        with tifffile.TiffFile(path, superres=superres) as tif:
            if not tif.is_eer:
                raise FormatError("not an EER file (no EER metadata in tag 65001)", path=path)
            shape = _check_pages(tif, path, size, upsampling)
            n_raw = len(tif.pages)
            n_out = n_raw // fractionation
            if n_out == 0:
                raise FormatError(
                    f"{n_raw} hardware frames cannot make one fraction of {fractionation}",
                    path=path,
                )
            first, stop = frame_range if frame_range is not None else (0, n_out)
            first, stop = max(0, first), min(n_out, stop)
            n_bytes = max(0, stop - first) * shape[0] * shape[1] * 2
            if n_bytes > MAX_RENDER_BYTES:
                raise FormatError(
                    f"rendering {stop - first} fractions of {shape[1]}×{shape[0]} needs "
                    f"{n_bytes / 2**30:.1f} GiB; read fewer fractions at a time (frame_range) "
                    "or group more hardware frames",
                    path=path,
                )
            out = np.zeros((max(0, stop - first), *shape), np.uint16)
            for index in range(first, stop):
                for page_index in range(index * fractionation, (index + 1) * fractionation):
                    frame = tif.pages[page_index].asarray()
                    if frame.shape != shape:  # never add a frame not decoded whole
                        raise FormatError(
                            f"hardware frame {page_index} decodes to {frame.shape}, not {shape}",
                            path=path,
                        )
                    out[index - first] += frame.astype(np.uint16)
    except FormatError:
        raise
    except Exception as exc:
        raise FormatError(f"cannot decode EER file: {describe_exception(exc)}", path=path) from exc
    return out


def _check_pages(tif: Any, path: Path, file_bytes: int, upsampling: int = 1) -> tuple[int, int]:
    """Check every page against the first and the file's size before anything is decoded.

    Every hardware frame must have the first one's size, an EER compression, and strips that
    lie inside the file; the sensor may be at most :data:`MAX_SENSOR_PIXELS` on a side.
    Returns the (height, width) of a rendered frame (tifffile gives pages the size of the
    ``upsampling`` the file was opened with).
    """
    limit = MAX_SENSOR_PIXELS * upsampling
    pages = tif.pages
    n_pages = len(pages)
    # A page (IFD) of a BigTIFF takes at least 8 + 8 + 8 bytes: more pages than that cannot fit.
    if n_pages * 24 > file_bytes:
        raise FormatError(f"{n_pages} pages cannot fit in {file_bytes} bytes", path=path)
    shape: tuple[int, int] | None = None
    for index in range(n_pages):
        page = pages[index]
        page_shape = (int(page.imagelength), int(page.imagewidth))
        if shape is None:
            shape = page_shape
            if min(shape) < 1 or max(shape) > limit:
                raise FormatError(
                    f"hardware frame 0 is {shape[1]}×{shape[0]} pixels; an EER sensor is "
                    f"1 to {MAX_SENSOR_PIXELS} pixels on a side (× {upsampling} upsampled)",
                    path=path,
                )
        elif page_shape != shape:
            raise FormatError(
                f"hardware frame {index} is {page_shape[1]}×{page_shape[0]} pixels but frame 0 "
                f"is {shape[1]}×{shape[0]}",
                path=path,
            )
        if int(page.compression) not in _EER_COMPRESSIONS:
            raise FormatError(
                f"hardware frame {index} has compression {int(page.compression)}, not an EER "
                "scheme (65000, 65001, 65002)",
                path=path,
            )
        for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False):
            if int(offset) < 0 or int(count) < 0 or int(offset) + int(count) > file_bytes:
                raise TruncatedFileError(
                    f"hardware frame {index} has {int(count)} bytes at offset {int(offset)}, "
                    f"beyond the end of the {file_bytes}-byte file",
                    path=path,
                )
    assert shape is not None
    return shape


def _encode_page(
    flat_index: NDArray[np.int64], subpixel: NDArray[np.uint8], n_pixels: int
) -> bytes:
    """Encode one hardware frame's sorted electron positions as an EER 7-bit bit stream."""
    # The position after the last electron is closed by a pseudo-electron at ``n_pixels``,
    # where the decoder stops.
    positions = np.append(flat_index, n_pixels)
    codes_sub = np.append(subpixel, 0).astype(np.int64)
    previous_end = np.concatenate([[0], flat_index + 1])
    gaps = positions - previous_end
    if np.any(gaps < 0):
        raise ValueError("at most one electron per pixel and hardware frame can be encoded")
    n_skip = gaps // _MAX_RUN
    remainder = gaps - n_skip * _MAX_RUN
    lengths = n_skip * _RUN_BITS + _CODE_BITS
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    total = int(lengths.sum())
    total += (-total) % 64
    bits = np.ones(total, np.uint8)  # padding and skip codes are all ones
    code = remainder | (codes_sub << _RUN_BITS)
    field_start = starts + n_skip * _RUN_BITS
    offsets = np.arange(_CODE_BITS)
    bits[(field_start[:, None] + offsets[None, :]).ravel()] = (
        (code[:, None] >> offsets[None, :]) & 1
    ).ravel()
    end = int(field_start[-1]) + _CODE_BITS
    bits[end:] = 0
    return np.packbits(bits, bitorder="little").tobytes()


def _metadata_xml(
    n_frames: int, shape: tuple[int, int], pixel_size_a: float, total_counts: float
) -> bytes:
    height, width = shape
    size_m = pixel_size_a * 1e-10
    per_pixel = total_counts / float(height * width)
    items = [
        ("acquisitionID", "tomopilot", None),
        ("cameraName", "tomopilot-eer", None),
        ("commercialName", "tomopilot EER encoder", None),
        ("eerCompressionVersion", "1", None),
        ("numberOfFrames", str(n_frames), None),
        ("sensorImageHeight", str(height), "pixel"),
        ("sensorImageWidth", str(width), "pixel"),
        ("sensorPixelSize.height", f"{size_m:.6e}", "m"),
        ("sensorPixelSize.width", f"{size_m:.6e}", "m"),
        ("totalDose", f"{per_pixel:.6f}", "e/pixel"),
    ]
    body = "".join(
        f'<item name="{name}"' + (f' unit="{unit}"' if unit else "") + f">{value}</item>"
        for name, value, unit in items
    )
    return f"<metadata>{body}</metadata>".encode()


def write_eer(
    path: Path | str,
    events: NDArray[np.integer],
    *,
    pixel_size_a: float,
    subpixel_factor: int = 1,
    seed: int = 0,
) -> Path:
    """Write hardware frames of electron events as an EER file.

    Parameters
    ----------
    path
        Output ``.eer`` file (overwritten).
    events
        (n_hardware_frames, h, w) with 0 or 1 electron per pixel, on a grid ``subpixel_factor``
        (1, 2 or 4) times finer than the physical grid. Sub-pixel bits the grid does not
        resolve are drawn at random (seeded).
    pixel_size_a
        Physical pixel size (Å), written as ``sensorPixelSize``.
    seed
        Seed for the unresolved sub-pixel bits.

    Raises
    ------
    FormatError
        If a pixel holds more than one electron in a hardware frame, or the grid is not a
        multiple of ``subpixel_factor``.
    """
    path = Path(path)
    data = np.asarray(events)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise FormatError(f"EER events must be (n, h, w), got shape {data.shape}", path=path)
    if subpixel_factor not in (1, 2, 4):
        raise FormatError(f"sub-pixel factor must be 1, 2 or 4, not {subpixel_factor}", path=path)
    n, fine_h, fine_w = data.shape
    if fine_h % subpixel_factor or fine_w % subpixel_factor:
        raise FormatError(f"grid {fine_h}×{fine_w} is not a multiple of {subpixel_factor}")
    if data.size and (data.min() < 0 or data.max() > 1):
        raise FormatError(
            "an EER hardware frame holds 0 or 1 electron per pixel; split the dose over more "
            "hardware frames",
            path=path,
        )
    height, width = fine_h // subpixel_factor, fine_w // subpixel_factor
    rng = np.random.default_rng(seed)
    known_bits = {1: 0, 2: 1, 4: 2}[subpixel_factor]
    pages: list[bytes] = []
    for frame in data:
        fy, fx = np.nonzero(frame)
        py, px = fy // subpixel_factor, fx // subpixel_factor
        sub_y = (fy % subpixel_factor) << (2 - known_bits)
        sub_x = (fx % subpixel_factor) << (2 - known_bits)
        if known_bits < 2:
            unresolved = 1 << (2 - known_bits)
            sub_y = sub_y + rng.integers(0, unresolved, size=sub_y.size)
            sub_x = sub_x + rng.integers(0, unresolved, size=sub_x.size)
        flat = (py * width + px).astype(np.int64)
        order = np.argsort(flat, kind="stable")
        if np.any(np.diff(flat[order]) == 0):
            raise FormatError(
                "an EER hardware frame holds at most one electron per physical pixel",
                path=path,
            )
        # The stored sub-pixel code is the position within the pixel XOR 2, per axis.
        code = ((sub_x ^ 2) | ((sub_y ^ 2) << 2)).astype(np.uint8)
        pages.append(_encode_page(flat[order], code[order], height * width))
    xml = _metadata_xml(n, (height, width), pixel_size_a, float(data.sum()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_bigtiff(pages, (height, width), xml))
    return path


def _bigtiff(pages: list[bytes], shape: tuple[int, int], xml: bytes) -> bytes:
    """A little-endian BigTIFF with one EER-compressed strip per page."""
    height, width = shape
    out = bytearray(struct.pack("<2sHHHQ", b"II", 43, 8, 0, 0))
    ifd_offsets: list[int] = []
    xml_offset = len(out)
    out += xml + b"\0" * ((-len(xml)) % 8)
    for index, strip in enumerate(pages):
        strip_offset = len(out)
        out += strip + b"\0" * ((-len(strip)) % 8)
        # (tag, type, count, value): 3 SHORT, 4 LONG, 7 UNDEFINED, 16 LONG8
        entries = [
            (256, 4, 1, width),
            (257, 4, 1, height),
            (258, 3, 1, 1),
            (259, 3, 1, _COMPRESSION_EER_7BIT),
            (262, 3, 1, 1),
            (273, 16, 1, strip_offset),
            (277, 3, 1, 1),
            (278, 4, 1, height),
            (279, 16, 1, len(strip)),
        ]
        if index == 0:
            entries.append((_METADATA_TAG, 7, len(xml), xml_offset))
        ifd_offsets.append(len(out))
        out += struct.pack("<Q", len(entries))
        for tag, kind, count, value in entries:
            if kind == 3:
                packed = struct.pack("<H6x", value)
            elif kind == 4:
                packed = struct.pack("<I4x", value)
            else:
                packed = struct.pack("<Q", value)
            out += struct.pack("<HHQ", tag, kind, count) + packed
        out += struct.pack("<Q", 0)  # next IFD, patched below
    struct.pack_into("<Q", out, 8, ifd_offsets[0] if ifd_offsets else 0)
    for this, following in itertools.pairwise(ifd_offsets):
        n_entries = struct.unpack_from("<Q", out, this)[0]
        struct.pack_into("<Q", out, this + 8 + 20 * n_entries, following)
    return bytes(out)


def split_counts_into_events(
    counts: NDArray[np.integer], hardware_frames: int | None = None, *, seed: int = 0
) -> tuple[NDArray[np.uint8], int]:
    """Spread each frame's counts over hardware frames holding at most one electron per pixel.

    Parameters
    ----------
    counts
        (n, h, w) non-negative integer counts per frame.
    hardware_frames
        Hardware frames per input frame; default the largest count in any pixel (at least 1).

    Returns
    -------
    events, hardware_frames
        (n · hardware_frames, h, w) 0/1 events, and the number used, so that reading with
        ``fractionation=hardware_frames`` gives ``counts`` back exactly.
    """
    data = np.asarray(counts)
    if data.ndim == 2:
        data = data[None]
    peak = int(data.max()) if data.size else 0
    k = max(1, peak) if hardware_frames is None else int(hardware_frames)
    if peak > k:
        raise ValueError(f"a pixel holds {peak} counts, more than {k} hardware frames can carry")
    rng = np.random.default_rng(seed)
    n, h, w = data.shape
    events = np.zeros((n * k, h, w), np.uint8)
    for index, frame in enumerate(data):
        # Rank k random keys per pixel; the electrons go to the hardware frames of the lowest
        # ``count`` keys, which spreads them without repetition.
        keys = rng.random((k, h, w), dtype=np.float32)
        ranks = np.argsort(np.argsort(keys, axis=0), axis=0)
        events[index * k : (index + 1) * k] = ranks < frame[None].astype(np.int64)
    return events, k
