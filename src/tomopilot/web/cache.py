"""Answers kept until something new is recorded: many viewers cost one render per change.

The archive's revision (a number that grows with every recorded event) is read at most once per
``ttl_s`` per session; a page or API answer is rendered once per (request, revision) and then
served from memory to every viewer who asks before the next change (and at most ``max_age_s``,
so changes that record no event, such as an import filling columns, show up too).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from tomopilot.store import Store
from tomopilot.web import queries

T = TypeVar("T")


class RevisionCache:
    """Rendered answers keyed by request and revision (a small LRU, thread-safe)."""

    def __init__(
        self, store: Store, *, ttl_s: float = 0.25, size: int = 256, max_age_s: float = 10.0
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.max_age_s = max_age_s
        self.size = size
        self._lock = threading.Lock()
        self._revisions: dict[int | None, tuple[float, int]] = {}
        self._answers: OrderedDict[Hashable, tuple[int, float, Any]] = OrderedDict()
        self.hits = 0
        self.renders = 0

    def revision(self, session_id: int | None) -> int:
        """The revision of a session (or of the whole archive), at most ``ttl_s`` old."""
        now = time.monotonic()
        with self._lock:
            known = self._revisions.get(session_id)
            if known is not None and now - known[0] < self.ttl_s:
                return known[1]
        with self.store.reader() as db:
            value = queries.revision(db, session_id)
        with self._lock:
            self._revisions[session_id] = (now, value)
        return value

    def get(self, key: Hashable, session_id: int | None, render: Callable[[], T]) -> T:
        """The answer for ``key`` at the current revision, rendered only if not kept."""
        revision = self.revision(session_id)
        with self._lock:
            kept = self._answers.get(key)
            fresh = kept is not None and time.monotonic() - kept[1] < self.max_age_s
            if kept is not None and kept[0] == revision and fresh:
                self._answers.move_to_end(key)
                self.hits += 1
                return kept[2]  # type: ignore[no-any-return]
        value = render()
        with self._lock:
            self.renders += 1
            self._answers[key] = (revision, time.monotonic(), value)
            self._answers.move_to_end(key)
            while len(self._answers) > self.size:
                self._answers.popitem(last=False)
        return value
