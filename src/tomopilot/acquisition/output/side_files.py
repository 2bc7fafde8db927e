"""The run's side files, as PACEtomo writes them next to the tilt series.

- target preview images ``<root>_tgt_NNN.mrc`` (the image each target was picked on);
- a settings dump ``<tgts stem>_settings.txt``, one ``key = value`` line per setting;
- the run log ``<root>.log``, a :class:`logging.FileHandler` on the package's logger (library
  code logs; only the CLI prints).

Every file but the log is written atomically (temporary file, then rename).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from numpy.typing import NDArray

from tomopilot.core.files import atomic_write_text
from tomopilot.io.mrc_image import write_mrc


def write_target_preview(
    run_dir: Path | str,
    root: str,
    target_number: int,
    image: NDArray[Any],
    *,
    pixel_size_a: float,
    labels: Sequence[str] = (),
) -> Path:
    """Write a target's preview image as ``<root>_tgt_NNN.mrc`` (atomic; NNN from 1)."""
    path = Path(run_dir) / f"{root}_tgt_{target_number:03d}.mrc"
    return write_mrc(path, image, pixel_size_a=pixel_size_a, labels=labels)


def _settings_lines(settings: Mapping[str, Any], prefix: str = "") -> list[str]:
    lines = []
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            lines += _settings_lines(value, prefix=f"{name}.")
            continue
        if isinstance(value, float) and math.isfinite(value):
            text = repr(value)
        elif isinstance(value, list | tuple):
            text = ", ".join(str(item) for item in value)
        else:
            text = str(value)
        if "\n" in text or "\r" in text:
            raise ValueError(f"setting {name!r} does not fit on one line")
        lines.append(f"{name} = {text}")
    return lines


def write_settings_dump(run_dir: Path | str, tgts_stem: str, settings: Mapping[str, Any]) -> Path:
    """Write ``<tgts stem>_settings.txt``: one ``key = value`` line per setting, atomically.

    Nested mappings are flattened with dots (``tilt.step_deg = 3.0``); floats are written at
    full precision, sequences comma-separated.
    """
    path = Path(run_dir) / f"{tgts_stem}_settings.txt"
    return atomic_write_text(path, "\n".join(_settings_lines(settings)) + "\n")


class RunLogHandler(logging.FileHandler):
    """The run log's file handler; remembers the logger it serves and that logger's level."""

    def __init__(self, path: Path, logger: logging.Logger) -> None:
        super().__init__(path, mode="a", encoding="utf-8")
        self.logger = logger
        self.previous_level = logger.level


def attach_run_log(
    run_dir: Path | str, root: str, *, level: int = logging.INFO, logger_name: str = "tomopilot"
) -> RunLogHandler:
    """Send the package's log records to ``<run_dir>/<root>.log`` (appended, UTF-8).

    The logger's level is lowered to ``level`` if needed while the log is attached. Returns
    the handler; pass it to :func:`detach_run_log` at the end of the run.
    """
    path = Path(run_dir) / f"{root}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(logger_name)
    handler = RunLogHandler(path, logger)
    handler.setLevel(level)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    )
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)
    return handler


def detach_run_log(handler: RunLogHandler) -> None:
    """Remove and close a handler made by :func:`attach_run_log`, restoring the level."""
    handler.logger.removeHandler(handler)
    handler.logger.setLevel(handler.previous_level)
    handler.close()
