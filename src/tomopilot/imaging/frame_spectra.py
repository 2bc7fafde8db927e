"""Real FFTs of movie frames into reusable memory.

A 4096² frame's half-spectrum is 67 MB; a movie keeps one per frame until its frames are summed.
Fresh memory of that size is mapped page by page on first touch, which on some machines costs
as much as the FFT itself. :class:`SpectrumWorkspace` keeps one stack of spectra per process and
hands out views of it, and :func:`rfft2_into` transforms straight into such a view.

Examples
--------
>>> import numpy as np
>>> workspace = SpectrumWorkspace()
>>> stack = workspace.spectra(3, (8, 8))
>>> stack.shape, stack.dtype
((3, 8, 5), dtype('complex64'))
>>> frame = np.arange(64, dtype=np.float32).reshape(8, 8)
>>> _ = rfft2_into(frame, stack[0])
>>> bool(np.allclose(stack[0], np.fft.rfft2(frame)))
True
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray


def _pocketfft() -> Any:
    """scipy's pocketfft kernels, which accept output arrays, if present."""
    try:
        module: Any = importlib.import_module("scipy.fft._pocketfft.pypocketfft")
        if all(hasattr(module, name) for name in ("r2c", "c2r", "c2c")):
            return module
    except ImportError:  # pragma: no cover - other scipy versions
        pass
    return None  # pragma: no cover


_POCKETFFT = _pocketfft()
_R2C = None if _POCKETFFT is None else _POCKETFFT.r2c
ROW_BLOCK = 32
"""Rows transformed at a time by the in-place transforms (a ~0.5 MB buffer at 4096 px)."""


def rfft2_into(frame: NDArray[np.float32], out: NDArray[np.complex64]) -> NDArray[np.complex64]:
    """``scipy.fft.rfft2(frame)`` written into ``out`` (same values, no new memory)."""
    if _R2C is not None and frame.dtype == np.float32 and out.flags.c_contiguous:
        try:
            _R2C(frame, (0, 1), True, 0, out, 1)
            return out
        except (TypeError, ValueError):  # pragma: no cover - a changed private signature
            pass
    out[...] = sfft.rfft2(frame)
    return out


def real_part(spectrum: NDArray[np.complex64], width: int) -> NDArray[np.float32]:
    """The memory of a (ny, width//2 + 1) half-spectrum seen as a (ny, width) float32 image.

    Each row of the image lies at the start of the spectrum's row (which holds 2 or 1 more
    floats), so a frame written here can be transformed in place (:func:`rfft2_in_place`) and
    an inverse transform can leave its image here (:func:`irfft2_in_place`).
    """
    if spectrum.dtype != np.complex64 or not spectrum.flags.c_contiguous:
        raise ValueError("an in-place spectrum must be C-contiguous complex64")
    if spectrum.ndim != 2 or spectrum.shape[1] != width // 2 + 1:
        raise ValueError(f"spectrum {spectrum.shape} does not hold an image {width} px wide")
    real: NDArray[np.float32] = spectrum.view(np.float32)[:, :width]
    return real


def rfft2_in_place(
    spectrum: NDArray[np.complex64],
    width: int,
    threads: int = 1,
    rows: Callable[[int, int, NDArray[np.float32]], None] | None = None,
) -> NDArray[np.complex64]:
    """Replace the image held in ``real_part(spectrum, width)`` by its half-spectrum.

    The same values as ``scipy.fft.rfft2`` of that image, with no image-sized memory: the rows
    are transformed a block at a time into a small buffer that is copied back over the rows
    it came from (pocketfft's r2c must not write over its input), then the columns are
    transformed in place (which its c2c allows).

    ``rows(top, end, out)``, when given, writes the image's rows ``top:end`` into ``out`` (a
    small buffer) just before they are transformed, instead of their being read from the
    spectrum's memory: a frame can so be prepared (gain, bad pixels) while its rows are in
    cache. It may read rows of the spectrum's memory from ``top`` down: those above are
    already transformed.
    """
    real = real_part(spectrum, width)
    height = spectrum.shape[0]
    if _POCKETFFT is None:  # pragma: no cover - other scipy versions
        image = np.array(real)
        if rows is not None:
            for top in range(0, height, ROW_BLOCK):
                rows(top, min(top + ROW_BLOCK, height), image[top : top + ROW_BLOCK])
        spectrum[...] = sfft.rfft2(image)
        return spectrum
    block = np.empty((min(ROW_BLOCK, height), spectrum.shape[1]), np.complex64)
    staging = None if rows is None else np.empty((min(ROW_BLOCK, height), width), np.float32)
    for top in range(0, height, ROW_BLOCK):
        end = min(top + ROW_BLOCK, height)
        part = block[: end - top]
        if staging is None:
            source = real[top:end]
        else:
            source = staging[: end - top]
            assert rows is not None
            rows(top, end, source)
        _POCKETFFT.r2c(source, (1,), True, 0, part, 1)
        spectrum[top:end] = part
    _POCKETFFT.c2c(spectrum, (0,), True, 0, spectrum, max(1, threads))
    return spectrum


def irfft2_in_place(
    spectrum: NDArray[np.complex64], width: int, threads: int = 1
) -> NDArray[np.float32]:
    """Replace a half-spectrum by its inverse transform; returns the image (a view of it).

    The same values as ``scipy.fft.irfft2(spectrum, s=(ny, width))`` (normalised by 1/N),
    with no image-sized memory (see :func:`rfft2_in_place`): columns in place, then rows a
    block at a time into a small buffer, scaled on the way into the image's rows.
    """
    real = real_part(spectrum, width)
    height = spectrum.shape[0]
    scale = np.float32(1.0 / (height * width))
    if _POCKETFFT is None:  # pragma: no cover - other scipy versions
        image = sfft.irfft2(spectrum, s=(height, width))
        real[...] = image
        return real
    threads = max(1, threads)
    _POCKETFFT.c2c(spectrum, (0,), False, 0, spectrum, threads)
    rows = ROW_BLOCK * threads
    block = np.empty((min(rows, height), width), np.float32)
    for top in range(0, height, rows):
        end = min(top + rows, height)
        part = block[: end - top]
        _POCKETFFT.c2r(spectrum[top:end], (1,), width, False, 0, part, threads)
        np.multiply(part, scale, out=real[top:end])
    return real


class SpectrumWorkspace:
    """Reusable memory for the spectra of one movie at a time (one per worker process)."""

    def __init__(self) -> None:
        self._stack: NDArray[np.complex64] | None = None
        self._frame: NDArray[np.float32] | None = None
        self._scratch: NDArray[np.complex64] | None = None

    def spectra(self, n: int, shape: tuple[int, int]) -> NDArray[np.complex64]:
        """An (n, ny, nx//2 + 1) complex64 stack; its contents are left over from earlier use."""
        wanted = (n, shape[0], shape[1] // 2 + 1)
        stack = self._stack
        if stack is None or stack.shape[1:] != wanted[1:] or stack.shape[0] < n:
            self._stack = stack = np.empty(wanted, np.complex64)
        return stack[:n]

    def frame(self, shape: tuple[int, int]) -> NDArray[np.float32]:
        """A float32 frame buffer of ``shape``."""
        frame: NDArray[np.float32] = self.frames(1, shape)[0]
        return frame

    def frames(self, count: int, shape: tuple[int, int]) -> NDArray[np.float32]:
        """``count`` float32 frame buffers of ``shape`` (one per thread)."""
        frame = self._frame
        if frame is None or frame.shape[1:] != shape or frame.shape[0] < count:
            self._frame = frame = np.empty((count, *shape), np.float32)
        return frame[:count]

    def scratch(self, shape: tuple[int, int]) -> NDArray[np.complex64]:
        """One full-size half-spectrum, for frames that are Fourier-cropped afterwards."""
        scratch: NDArray[np.complex64] = self.scratches(1, shape)[0]
        return scratch

    def scratches(self, count: int, shape: tuple[int, int]) -> NDArray[np.complex64]:
        """``count`` full-size half-spectra (one per thread)."""
        wanted = (shape[0], shape[1] // 2 + 1)
        scratch = self._scratch
        if scratch is None or scratch.shape[1:] != wanted or scratch.shape[0] < count:
            self._scratch = scratch = np.empty((count, *wanted), np.complex64)
        return scratch[:count]

    def release(self) -> None:
        """Drop the memory (the next movie allocates afresh)."""
        self._stack = None
        self._frame = None
        self._scratch = None
