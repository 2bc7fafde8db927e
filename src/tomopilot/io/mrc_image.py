"""Single images and small stacks as MRC files, written atomically through mrcfile."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import mrcfile
import numpy as np
from numpy.typing import NDArray

from tomopilot.io.errors import FormatError

MAX_LABELS = 10
LABEL_LENGTH = 80


def write_mrc(
    path: Path | str,
    data: NDArray[np.generic],
    *,
    pixel_size_a: float,
    labels: Sequence[str] = (),
    overwrite: bool = True,
) -> Path:
    """Write a 2D image or (n, h, w) stack as MRC (mode from the dtype), atomically.

    Parameters
    ----------
    path
        Output file; written to a temporary file in the same folder, then renamed.
    data
        float32, int16, uint16 or int8 arrays keep their mode; float64 becomes float32.
    pixel_size_a
        Pixel size (Å), stored as the voxel size.
    labels
        Up to ten header labels of at most 80 characters.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to overwrite it")
    array = np.asarray(data)
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    if array.ndim not in (2, 3):
        raise FormatError(f"an MRC image must be 2D or 3D, not shape {array.shape}", path=path)
    if len(labels) > MAX_LABELS or any(len(label) > LABEL_LENGTH for label in labels):
        raise FormatError("MRC headers hold at most 10 labels of 80 characters", path=path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(array))
            mrc.voxel_size = pixel_size_a
            if array.ndim == 3:
                mrc.header.ispg = 0  # an image stack, as SerialEM writes tilt series
            for label in labels:
                mrc.add_label(label)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
