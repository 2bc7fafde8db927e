"""A movie's frames read one at a time into memory the caller provides.

A 4096² × 10-frame movie of 16-bit counts is 335 MB. Read whole (:func:`tomopilot.io.frames.
read_frames`) it lives beside the 670 MB of spectra the motion correction needs, although each
frame is used once, to fill the spectrum it is transformed into. :class:`MrcFrames` instead
reads frame ``i`` straight into a float32 buffer (the spectrum's own memory, see
:func:`tomopilot.imaging.frame_spectra.real_part`), through a 1 MiB block of raw rows: a job
then touches a third less fresh memory, which the kernel (and, on a virtual machine, the host)
must map and zero on first touch.

MRC files of a plain mode (the data block is the array itself) and TIFF files
(:class:`TiffFrames`, a page at a time, decoded strip by strip into the frame's rows) are read
this way; other movies (EER, other MRC modes) are read whole, as before (:func:`open_movie`).

Examples
--------
>>> import numpy as np, tempfile, pathlib
>>> from tomopilot.io.frames import write_frames
>>> folder = tempfile.TemporaryDirectory()
>>> path = pathlib.Path(folder.name) / "movie.mrc"
>>> counts = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
>>> _ = write_frames(path, counts, pixel_size_a=1.0)
>>> movie = open_movie(path)
>>> movie.shape, movie.dtype == np.uint16
((3, 4, 5), True)
>>> out = np.zeros((4, 5), np.float32)
>>> movie.read_into(2, out)
>>> bool(np.array_equal(out, counts[2]))
True
>>> folder.cleanup()
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tomopilot.io.errors import FormatError
from tomopilot.io.frames import frame_format, mrc_data_layout, read_frames
from tomopilot.io.mrc_header import mrc_header_info

LAZY_MRC_MODES = (0, 1, 2, 6, 12)
"""int8, int16, float32, uint16, float16: real data read frame by frame."""
BLOCK_BYTES = 1 << 20


class MrcFrames:
    """The frames of an MRC stack of a plain real mode, read on demand (thread-safe).

    Attributes
    ----------
    path
        The movie.
    shape
        (n, height, width) as stored (MRC row order).
    dtype
        The stored data type (with its byte order).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        info = mrc_header_info(path)  # checks the size the header announces against the file
        if info.mode not in LAZY_MRC_MODES:
            raise FormatError(f"MRC mode {info.mode} is not read frame by frame", path=path)
        dtype, shape, offset = mrc_data_layout(path, "MRC stack")
        if len(shape) == 2:
            shape = (1, *shape)
        self.shape: tuple[int, int, int] = (int(shape[0]), int(shape[1]), int(shape[2]))
        self.dtype: np.dtype[Any] = np.dtype(dtype)
        self._offset = offset
        self._frame_bytes = self.shape[1] * self.shape[2] * self.dtype.itemsize
        end = offset + self.shape[0] * self._frame_bytes
        if path.stat().st_size < end:
            raise FormatError(
                f"MRC data end at byte {end} but the file has {path.stat().st_size}", path=path
            )

    @property
    def ndim(self) -> int:
        """3, as a stack of frames."""
        return 3

    def read_into(self, index: int, out: NDArray[np.float32]) -> None:
        """Frame ``index`` converted into ``out`` ((height, width), any strides)."""
        height, width = self.shape[1:]
        if out.shape != (height, width):
            raise ValueError(f"frame buffer {out.shape} is not {(height, width)}")
        row_bytes = width * self.dtype.itemsize
        step = max(1, BLOCK_BYTES // row_bytes)
        staging = np.empty((min(step, height), width), self.dtype)
        raw = staging.reshape(-1).view(np.uint8).data
        start = self._offset + index * self._frame_bytes
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for top in range(0, height, step):
                rows = min(step, height - top)
                wanted, done = rows * row_bytes, 0
                while done < wanted:
                    got = os.preadv(fd, [raw[done:wanted]], start + top * row_bytes + done)
                    if got <= 0:
                        raise FormatError(
                            f"unexpected end of file in frame {index}", path=self.path
                        )
                    done += got
                np.copyto(out[top : top + rows], staging[:rows], casting="unsafe")
        finally:
            os.close(fd)

    def read_all(self) -> NDArray[Any]:
        """All frames at once, in the stored type (as :func:`read_frames`)."""
        return read_frames(self.path, fmt="mrc")


class TiffFrames:
    """The pages of a TIFF movie, decoded on demand (thread-safe: each read opens the file).

    Rows are returned top-down, in MRC order, as :func:`tomopilot.io.frames.read_frames`
    returns them (see :mod:`tomopilot.io.frames`).
    """

    def __init__(self, path: Path) -> None:
        import tifffile

        self.path = path
        try:
            with tifffile.TiffFile(path) as tif:
                page = tif.pages.first
                height, width = int(page.imagelength), int(page.imagewidth)
                dtype = page.dtype
                n_pages = len(tif.pages)
        except Exception as exc:
            raise FormatError(f"cannot read TIFF header: {exc}", path=path) from exc
        if dtype is None:
            raise FormatError("TIFF pages of an unknown data type", path=path)
        self.shape: tuple[int, int, int] = (n_pages, height, width)
        self.dtype: np.dtype[Any] = np.dtype(dtype)

    @property
    def ndim(self) -> int:
        """3, as a stack of frames."""
        return 3

    def read_into(self, index: int, out: NDArray[np.float32]) -> None:
        """Page ``index`` decoded and converted into ``out`` ((height, width), any strides).

        A page of one sample per pixel is decoded a strip (or tile) at a time, each converted
        into its rows of ``out`` while it is in cache: no page-sized array is made (a fresh
        33 MB per 4096² page of 16-bit counts, which the machine must map and zero). Other
        pages are decoded whole.
        """
        import tifffile

        height, width = self.shape[1:]
        if out.shape != (height, width):
            raise ValueError(f"frame buffer {out.shape} is not {(height, width)}")
        try:
            with tifffile.TiffFile(self.path) as tif:
                page = tif.pages[index]
                if tuple(page.shaped) != (1, 1, height, width, 1) or not _segments_into(page, out):
                    data = tif.asarray(key=index, maxworkers=1)
                    if data.shape != (height, width):
                        raise FormatError(
                            f"TIFF page {index} is {data.shape} but the first page is "
                            f"{(height, width)}",
                            path=self.path,
                        )
                    np.copyto(out, data[::-1], casting="unsafe")  # rows top-down: MRC order
        except FormatError:
            raise
        except Exception as exc:
            raise FormatError(f"cannot decode TIFF page {index}: {exc}", path=self.path) from exc

    def read_all(self) -> NDArray[Any]:
        """All pages at once (as :func:`read_frames`)."""
        return read_frames(self.path, fmt="tiff")


def _segments_into(page: Any, out: NDArray[np.float32]) -> bool:
    """Decode ``page`` (one sample per pixel) segment by segment into ``out``, its rows
    reversed (TIFF rows are top-down: MRC order); False, with ``out`` partly written, when a
    segment is empty (the caller then decodes the page whole)."""
    height, width = out.shape
    for segment, (_, _, top, left, _), _ in page.segments(maxworkers=1):
        if segment is None:
            return False
        rows = min(segment.shape[1], height - top)
        cols = min(segment.shape[2], width - left)
        np.copyto(
            out[height - top - rows : height - top, left : left + cols],
            segment[0, :rows, :cols, 0][::-1],
            casting="unsafe",
        )
    return True


def open_movie(
    path: Path | str, *, eer_fractionation: int = 32, eer_upsampling: int = 1
) -> MrcFrames | TiffFrames | NDArray[Any]:
    """A plain-mode MRC or a TIFF movie as a frame reader; any other movie (EER, other MRC
    modes) read whole."""
    path = Path(path)
    kind = frame_format(path) if path.is_file() else None
    if kind == "mrc" and mrc_header_info(path).mode in LAZY_MRC_MODES:
        return MrcFrames(path)
    if kind == "tiff":
        return TiffFrames(path)
    return read_frames(path, eer_fractionation=eer_fractionation, eer_upsampling=eer_upsampling)
