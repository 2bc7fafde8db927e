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
from typing import Any

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray


def _pocketfft_r2c() -> Any:
    """scipy's pocketfft real-to-complex kernel, which accepts an output array, if present."""
    try:
        module: Any = importlib.import_module("scipy.fft._pocketfft.pypocketfft")
        return module.r2c
    except (ImportError, AttributeError):  # pragma: no cover - other scipy versions
        return None


_R2C = _pocketfft_r2c()


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
