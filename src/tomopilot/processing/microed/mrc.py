"""MRC files for diffraction frames, written without losing a count.

MRC has no 32-bit integer mode, while Ceta diffraction frames are int32. Each frame is stored in
the narrowest MRC mode that holds every value exactly:

=====================  ==============================================
source dtype           MRC mode
=====================  ==============================================
int8                   0 (int8)
int16                  1 (int16)
uint8, uint16          6 (uint16)
float32                2 (float32)
int32, uint32, float64 2 (float32), only if every value is exact in it
=====================  ==============================================

A value that float32 cannot hold exactly (most int32 values beyond ±2²⁴, a float64 with more
than 24 significant bits or beyond the float32 range) makes the conversion refuse with
:class:`~tomopilot.io.errors.LossyConversionError`. The source dtype and the frame metadata are
recorded in the header labels as ``tomopilot: key=value ...`` records, so that
:func:`read_diffraction_mrc` restores the exact source array and ``mrc2smv`` finds the geometry.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
from numpy.typing import NDArray

from tomopilot.io.errors import FormatError, LossyConversionError
from tomopilot.processing.microed.metadata import FrameMetadata

__all__ = [
    "DiffractionMrc",
    "mrc_storage_dtype",
    "read_diffraction_mrc",
    "write_diffraction_mrc",
]

_log = logging.getLogger(__name__)

LABEL_PREFIX = "tomopilot: "
_LABEL_CHARS = 80
_TITLE = "tomopilot microED diffraction frame, stored without loss (see source_dtype)"
_NATIVE_MODES: dict[str, np.dtype[Any]] = {
    "int8": np.dtype(np.int8),
    "int16": np.dtype(np.int16),
    "uint8": np.dtype(np.uint16),
    "uint16": np.dtype(np.uint16),
    "float32": np.dtype(np.float32),
}
_MODES = {"int8": 0, "int16": 1, "uint16": 6, "float32": 2}


def mrc_storage_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype in which frames of ``dtype`` are stored in MRC (see the module table).

    Raises
    ------
    FormatError
        For dtypes that are neither integer nor real floating point.
    """
    dtype = np.dtype(dtype)
    if dtype.name in _NATIVE_MODES:
        return _NATIVE_MODES[dtype.name]
    if dtype.kind in "iuf":
        return np.dtype(np.float32)
    raise FormatError(f"{dtype.name} data cannot be stored in MRC by this converter")


def _check_exact(data: NDArray[Any], stored: NDArray[Any], path: Path | None) -> None:
    """Raise unless ``stored`` holds every value of ``data`` exactly."""
    with np.errstate(over="ignore", invalid="ignore"):
        same = stored.astype(np.float64) == data.astype(np.float64)
    if data.dtype.kind == "f":
        same |= np.isnan(data) & np.isnan(stored)
    if np.all(same):
        return
    bad = np.argwhere(~same)
    row, column = (int(v) for v in bad[0][-2:])
    value = data[tuple(bad[0])].item()
    raise LossyConversionError(
        f"{len(bad)} pixel value(s) of this {data.dtype.name} frame cannot be stored exactly "
        f"in MRC mode 2 (float32), e.g. {value!r} at row {row}, column {column}; MRC has no "
        f"{data.dtype.name} mode, and the conversion refuses to change a value",
        path=path,
    )


def _labels(metadata: FrameMetadata | None, source_dtype: np.dtype[Any]) -> list[str]:
    tokens = [f"source_dtype={source_dtype.name}"]
    if metadata is not None:
        tokens += [f"{k}={v}" for k, v in metadata.to_tokens().items()]
    labels = [_TITLE]
    line = LABEL_PREFIX
    for token in tokens:
        if len(line) + len(token) + 1 > _LABEL_CHARS and line != LABEL_PREFIX:
            labels.append(line.rstrip())
            line = LABEL_PREFIX
        line += token + " "
    labels.append(line.rstrip())
    if len(labels) > 10 or any(len(label) > _LABEL_CHARS for label in labels):
        raise FormatError("the frame metadata do not fit in the ten 80-character MRC labels")
    return labels


def write_diffraction_mrc(
    path: Path | str,
    data: NDArray[Any],
    *,
    metadata: FrameMetadata | None = None,
    source: Path | str | None = None,
) -> int:
    """Write one 2-D diffraction frame as MRC, atomically and without loss.

    Parameters
    ----------
    path
        The ``.mrc`` file.
    data
        The frame, shape ``(rows, columns)``, of any integer or real dtype.
    metadata
        Frame metadata to record in the labels.
    source
        The file the frame came from, named in errors.

    Returns
    -------
    int
        The MRC mode written.

    Raises
    ------
    LossyConversionError
        If a value cannot be stored exactly; nothing is written then.
    """
    path = Path(path)
    if data.ndim != 2:
        raise FormatError(f"expected one 2-D frame, got shape {data.shape}", path=source)
    storage = mrc_storage_dtype(data.dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        stored = data.astype(storage)
    _check_exact(data, stored, Path(source) if source is not None else path)
    labels = _labels(metadata, data.dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with (
            warnings.catch_warnings(record=True) as caught,
            np.errstate(over="ignore", invalid="ignore"),
            mrcfile.new(tmp_name, overwrite=True) as mrc,
        ):
            warnings.simplefilter("always")
            mrc.set_data(np.ascontiguousarray(stored))
            # mrcfile sums in float32, which overflows near the float32 limits: redo in float64.
            wide = stored.astype(np.float64)
            mrc.header.dmean = wide.mean()
            mrc.header.rms = wide.std()
            mrc.header.label[:] = b""
            for i, label in enumerate(labels):
                mrc.header.label[i] = label.encode("ascii")
            mrc.header.nlabl = len(labels)
        with open(tmp_name, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    for warning in caught:  # e.g. "Data array contains infinite values": stored exactly anyway
        _log.warning("%s: %s", path, warning.message)
    return _MODES[storage.name]


@dataclass(frozen=True)
class DiffractionMrc:
    """A diffraction frame read back from MRC.

    Attributes
    ----------
    data
        The frame in its source dtype when one is recorded, else as stored.
    mode
        The MRC mode of the file.
    source_dtype
        The recorded source dtype, or ``None`` for an MRC written by other software.
    metadata
        The recorded frame metadata (all ``None`` when there is none).
    """

    data: NDArray[Any]
    mode: int
    source_dtype: np.dtype[Any] | None
    metadata: FrameMetadata


def _tokens(labels: list[str]) -> dict[str, str]:
    tokens: dict[str, str] = {}
    for label in labels:
        if label.startswith(LABEL_PREFIX):
            for token in label[len(LABEL_PREFIX) :].split():
                key, sep, value = token.partition("=")
                if sep:
                    tokens[key] = value
    return tokens


def read_diffraction_mrc(path: Path | str) -> DiffractionMrc:
    """Read a single-frame MRC, restoring the source dtype that tomopilot recorded.

    Raises
    ------
    FormatError
        Naming the file, if it is not a readable MRC, holds more than one frame, or its
        recorded source dtype cannot hold the stored values.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with mrcfile.open(path, permissive=False) as mrc:
                data = np.array(mrc.data)
                mode = int(mrc.header.mode)
                count = int(mrc.header.nlabl)
                labels = [bytes(v).decode("ascii", "replace").strip() for v in mrc.header.label]
    except (ValueError, OSError) as exc:
        raise FormatError(f"not a readable MRC file: {exc}", path=path) from exc
    for warning in caught:
        _log.warning("%s: %s", path, warning.message)
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise FormatError(
            f"expected a single 2-D frame, got shape {data.shape}: split stacks first", path=path
        )
    tokens = _tokens(labels[:count])
    metadata = FrameMetadata.from_tokens(tokens, path=path)
    source_dtype = None
    if "source_dtype" in tokens:
        try:
            source_dtype = np.dtype(tokens["source_dtype"])
        except TypeError:
            raise FormatError(
                f"unknown recorded dtype {tokens['source_dtype']!r}", path=path, field="labels"
            ) from None
        with np.errstate(over="ignore", invalid="ignore"):
            restored = data.astype(source_dtype)
        try:
            _check_exact(data, restored, path)
        except LossyConversionError:
            raise FormatError(
                f"the stored values do not fit the recorded source dtype {source_dtype.name}",
                path=path,
                field="labels",
            ) from None
        data = restored
    return DiffractionMrc(data=data, mode=mode, source_dtype=source_dtype, metadata=metadata)
