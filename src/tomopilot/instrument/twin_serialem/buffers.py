"""SerialEM's image buffers A..T: what an image carries, and how new images roll in.

A camera image always lands in A; the previous A moves to B, B to C and so on up to the last
rolling buffer (C by default, "Roll buffers A -> C"); the image pushed past it is discarded.
Buffers after the rolling ones keep what scripts put there (``Copy A O``). The read buffer (where
``ReadFile`` puts a section) is two past the last rolling buffer, three in Low Dose.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from tomopilot.instrument.twin_serialem.commands import BUFFER_LETTERS


@dataclass
class BufferImage:
    """An image in a buffer, with the conditions SerialEM keeps with it.

    Attributes
    ----------
    data
        Counts, shape (rows, columns), float32.
    camera_set
        Parameter set index (0 View ... 3 Record, 4 Preview, 5 Search), or -1 when unknown
        (an image read from a file).
    specimen_to_camera
        Calibrated 2×2 matrix from a specimen shift (µm) to the displacement of image content
        in this image's (binned) pixels, at the magnification it was taken with.
    stage_xyz_um, tilt_deg, image_shift_units
        Readouts when it was taken.
    align_shift_px
        The shift (binned px, content) that the last ``AlignTo`` measured for this image,
        relative to its reference; ``(0, 0)`` until aligned.
    exposure_id
        The microscope's identifier of the exposure (the twin's ground truth is keyed by it).
    """

    data: NDArray[np.float32]
    camera_set: int
    binning: int
    pixel_size_a: float
    exposure_s: float
    magnification: int
    defocus_um: float
    dose_e_a2: float
    stage_xyz_um: tuple[float, float, float]
    tilt_deg: float
    image_shift_units: tuple[float, float]
    specimen_to_camera: NDArray[np.float64]
    time_s: float
    taken: datetime
    exposure_id: int | None = None
    low_dose: bool = True
    align_shift_px: tuple[float, float] = (0.0, 0.0)
    align_is_units: tuple[float, float] = (0.0, 0.0)
    map_id: int | None = None
    source: str = ""
    saved_to: str = ""
    frames: tuple[str, int, float] | None = None  # (frame file, frames, dose per frame)
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def shape_xy(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.data.shape[1]), int(self.data.shape[0])

    def copy(self) -> BufferImage:
        """An independent copy (pixels included)."""
        return replace(self, data=self.data.copy(), extra=dict(self.extra))


class Buffers:
    """The twenty buffers and the roll.

    Parameters
    ----------
    n_rolling
        How many buffers roll (3 = A, B, C), as in SerialEM's Buffer Control panel.
    """

    def __init__(self, n_rolling: int = 3) -> None:
        if not 1 <= n_rolling <= len(BUFFER_LETTERS) - 2:
            raise ValueError(f"the number of rolling buffers must be 1 to 18, not {n_rolling}")
        self.n_rolling = n_rolling
        self._images: dict[str, BufferImage] = {}
        self.current = "A"

    def get(self, letter: str) -> BufferImage | None:
        """The image in a buffer, or None if it is empty."""
        return self._images.get(letter)

    def put(self, letter: str, image: BufferImage) -> None:
        """Place an image in a buffer without rolling (``Copy``)."""
        self._images[letter] = image
        self.current = letter

    def push_new(self, image: BufferImage) -> None:
        """A new camera image into A, rolling A -> B -> ... down to the last rolling buffer."""
        for index in range(self.n_rolling - 1, 0, -1):
            previous = self._images.get(BUFFER_LETTERS[index - 1])
            if previous is None:
                self._images.pop(BUFFER_LETTERS[index], None)
            else:
                self._images[BUFFER_LETTERS[index]] = previous
        self._images["A"] = image
        self.current = "A"

    def read_buffer(self, low_dose: bool) -> str:
        """Where ``ReadFile`` puts a section: two past the rolling buffers (three in Low Dose)."""
        return BUFFER_LETTERS[self.n_rolling + (2 if low_dose else 1)]

    def occupied(self) -> list[str]:
        """Letters of the buffers holding an image."""
        return [b for b in BUFFER_LETTERS if b in self._images]
