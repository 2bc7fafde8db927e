"""Crash-safe file writing: atomic rewrites and append-only, fsync'd journals.

Files that are rewritten (targets, settings, resolved configuration) go to a temporary file in
the same folder, are flushed to disk and then renamed over the old one, so a crash leaves either
the old or the new file, never a torn one. Journals are JSON lines appended and fsync'd one
record at a time; a torn last line (a crash mid-write) is ignored on reading and cut off before
the next append, so a journal stays readable through any number of crashes.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tomopilot.core.errors import JournalError


def fsync_dir(folder: Path) -> None:
    """Make a folder's entries (a rename, a new file, a link) durable."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: Path | str, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode(encoding))


class AppendOnlyJournal:
    """An append-only journal of JSON records, one per line, each fsync'd before returning.

    Parameters
    ----------
    path
        The journal file; created if absent, never truncated.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tail_checked = False

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record and make it durable before returning.

        The first append of this object first cuts off a torn last line (see
        :meth:`cut_torn_tail`): appended after it, a record would be glued to the torn bytes and
        the journal unreadable from there on.
        """
        line = json.dumps(dict(record), sort_keys=True, separators=(",", ":")) + "\n"
        if not self._tail_checked:
            self.cut_torn_tail()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def cut_torn_tail(self) -> int:
        """Truncate a last line without its newline (a write torn by a crash); bytes removed.

        The torn record was never durable, so nothing that took effect is lost: for a run
        journal it is the exposure in flight, which a resume takes again.
        """
        self._tail_checked = True
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return 0
        try:
            size = os.fstat(fd).st_size
            end = size
            while end > 0:  # back to the last newline, a block at a time
                start = max(0, end - 4096)
                block = os.pread(fd, end - start, start)
                cut = block.rfind(b"\n")
                if cut >= 0:
                    end = start + cut + 1
                    break
                end = start
            if end == size:
                return 0
            os.ftruncate(fd, end)
            os.fsync(fd)
            return size - end
        finally:
            os.close(fd)

    def records(self) -> Iterator[dict[str, Any]]:
        """Yield the records in order; a torn final line from a crash is skipped.

        Raises
        ------
        JournalError
            If a line other than the last one is not a JSON object.
        """
        if not self.path.exists():
            return
        lines = self.path.read_bytes().split(b"\n")
        complete, tail = lines[:-1], lines[-1]
        for number, raw in enumerate(complete, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise JournalError(f"{self.path}:{number}: not a JSON record ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise JournalError(f"{self.path}:{number}: a journal record must be an object")
            yield record
        # ``tail`` is a line without its newline: a write torn by a crash. It is ignored.
        del tail
