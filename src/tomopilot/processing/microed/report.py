"""What a series conversion did: per-frame numbers, the series' offset and pedestal, progress."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tomopilot.core.events import Event
from tomopilot.processing.microed.levels import SeriesLevels

__all__ = ["ConversionReport", "FrameReport", "SeriesProgress"]


@dataclass(frozen=True, kw_only=True)
class SeriesProgress(Event):
    """One file of a series was handled.

    Attributes
    ----------
    step
        ``check`` (headers), ``tia2mrc``, ``scan`` (frame minima) or ``mrc2smv``.
    done, total
        Files handled so far in this step, and in all.
    path
        The file just handled.
    """

    step: str
    done: int
    total: int
    path: str


@dataclass(frozen=True, kw_only=True)
class FrameReport:
    """One frame of a converted series.

    Attributes
    ----------
    index
        0-based position in the series.
    source
        The input file.
    mrc, smv
        The output files (final paths, or would-be paths in a dry run), when written.
    source_dtype
        The input pixel type.
    mrc_mode
        The MRC mode written or read.
    minimum, maximum, mean
        Statistics of the frame's values before any offset.
    clipped_low
        Pixels below ``-LEGINON_OFFSET``, clipped to 0 in SMV.
    clipped_high
        Pixels above ``65535 - LEGINON_OFFSET`` (uint16 overflow), clipped to 65535.
    osc_start_deg, osc_range_deg
        OSC_START and OSC_RANGE written to SMV.
    """

    index: int
    source: Path
    mrc: Path | None = None
    smv: Path | None = None
    source_dtype: str = ""
    mrc_mode: int | None = None
    minimum: float = 0.0
    maximum: float = 0.0
    mean: float = 0.0
    clipped_low: int | None = None
    clipped_high: int | None = None
    osc_start_deg: float | None = None
    osc_range_deg: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dictionary."""
        return {
            "index": self.index,
            "source": str(self.source),
            "mrc": str(self.mrc) if self.mrc else None,
            "smv": str(self.smv) if self.smv else None,
            "source_dtype": self.source_dtype,
            "mrc_mode": self.mrc_mode,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "mean": self.mean,
            "clipped_low": self.clipped_low,
            "clipped_high": self.clipped_high,
            "osc_start_deg": self.osc_start_deg,
            "osc_range_deg": self.osc_range_deg,
        }


@dataclass(frozen=True, kw_only=True)
class ConversionReport:
    """A whole series conversion.

    Attributes
    ----------
    step
        ``tia2mrc``, ``mrc2smv`` or ``convert``.
    out_dir
        The output folder.
    frames
        One report per frame, in series order.
    levels
        The series' LEGINON_OFFSET and IMAGE_PEDESTAL (SMV steps only).
    wavelength_a
        The electron wavelength written to SMV (SMV steps only).
    written
        The files moved into ``out_dir`` (empty in a dry run).
    summary
        The JSON summary file, when one is written.
    dry_run
        Whether the outputs were discarded instead of written.
    """

    step: str
    out_dir: Path
    frames: tuple[FrameReport, ...]
    levels: SeriesLevels | None = None
    wavelength_a: float | None = None
    written: tuple[Path, ...] = ()
    summary: Path | None = None
    dry_run: bool = False

    @property
    def clipped_low(self) -> int:
        """Pixels clipped to 0 over the series."""
        return sum(f.clipped_low or 0 for f in self.frames)

    @property
    def clipped_high(self) -> int:
        """Pixels clipped to 65535 (uint16 overflow) over the series."""
        return sum(f.clipped_high or 0 for f in self.frames)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dictionary, as written to the summary file."""
        levels = self.levels
        return {
            "step": self.step,
            "out_dir": str(self.out_dir),
            "dry_run": self.dry_run,
            "n_frames": len(self.frames),
            "leginon_offset": levels.offset if levels else None,
            "image_pedestal": levels.pedestal if levels else None,
            "offset_cap": levels.cap if levels else None,
            "offset_capped": levels.capped if levels else None,
            "lowest_frame_minimum": levels.lowest_minimum if levels else None,
            "highest_frame_minimum": levels.highest_minimum if levels else None,
            "wavelength_a": self.wavelength_a,
            "clipped_low_total": self.clipped_low if levels else None,
            "clipped_high_total": self.clipped_high if levels else None,
            "frames": [frame.to_dict() for frame in self.frames],
        }
