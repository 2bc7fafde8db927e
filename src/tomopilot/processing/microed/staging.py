"""All-or-nothing output of a series conversion.

Every output file of a series is written into a hidden staging folder inside the output folder
and moved into place only when the whole series has converted. A failure anywhere (a truncated
frame, a value that cannot be stored, a full disk) removes the staging folder, so none of the
series' outputs appears; files that were already in the output folder are left untouched
unless the caller allows overwriting them.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from tomopilot.processing.microed.errors import ConversionError, OutputExistsError

__all__ = ["StagedOutputs"]

_log = logging.getLogger(__name__)


def _fsync(path: Path, *, directory: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        if not directory:
            raise
    finally:
        os.close(fd)


def _file_mode() -> int:
    """The permissions of a new file under the current umask (0o644 under umask 022)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


class StagedOutputs:
    """A context manager that stages output files and moves them into place together.

    Parameters
    ----------
    out_dir
        The output folder; created if absent (and removed again if the conversion fails and
        leaves it empty).
    names
        The file names that will be written, checked up front.
    overwrite
        Whether existing files of those names may be replaced.

    Raises
    ------
    ConversionError
        If two outputs have the same name.
    OutputExistsError
        If an output exists and ``overwrite`` is false (checked again at commit).
    """

    def __init__(self, out_dir: Path | str, names: Sequence[str], *, overwrite: bool) -> None:
        self.out_dir = Path(out_dir)
        self.names = list(names)
        self.overwrite = overwrite
        seen: set[str] = set()
        for name in self.names:
            if name in seen:
                raise ConversionError(
                    f"two inputs would both write {self.out_dir / name}: give files with "
                    "distinct names"
                )
            seen.add(name)
        self._check_existing()
        self._created_dir = False
        self._staging: Path | None = None
        self._committed = False

    def _check_existing(self) -> None:
        if self.overwrite:
            return
        existing = [n for n in self.names if (self.out_dir / n).exists()]
        if existing:
            shown = ", ".join(existing[:3]) + (" ..." if len(existing) > 3 else "")
            raise OutputExistsError(
                f"{len(existing)} output file(s) already exist in {self.out_dir} ({shown}); "
                "allow overwriting to replace them"
            )

    def __enter__(self) -> Self:
        if not self.out_dir.exists():
            self.out_dir.mkdir(parents=True)
            self._created_dir = True
        self._staging = Path(tempfile.mkdtemp(prefix=".tomopilot-staging-", dir=self.out_dir))
        return self

    def path(self, name: str) -> Path:
        """Where to write output ``name`` while the conversion runs."""
        if self._staging is None:
            raise RuntimeError("StagedOutputs.path() outside its with-block")
        if name not in self.names:
            raise ValueError(f"{name!r} was not announced as an output")
        return self._staging / name

    def commit(self) -> list[Path]:
        """Move every staged file into the output folder; return their final paths."""
        if self._staging is None:
            raise RuntimeError("StagedOutputs.commit() outside its with-block")
        self._check_existing()
        mode = _file_mode()
        final: list[Path] = []
        for name in self.names:
            staged = self._staging / name
            if not staged.exists():
                continue
            os.chmod(staged, mode)  # temporary files are private; outputs are not
            _fsync(staged)
            target = self.out_dir / name
            os.replace(staged, target)
            final.append(target)
        _fsync(self.out_dir, directory=True)
        self._committed = True
        return final

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
        if not self._committed and self._created_dir:
            try:
                self.out_dir.rmdir()
            except OSError:
                _log.debug("left %s in place: not empty", self.out_dir)
