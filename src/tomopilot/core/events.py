"""Typed events and a small synchronous event bus.

Library code never prints: it emits events, and the user interfaces (``cli/``, ``web/``)
subscribe to the ones they render. An event is a frozen dataclass deriving from
:class:`Event`; subscribing to a class also delivers its subclasses.

Examples
--------
>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Ping(Event):
...     n: int = 0
>>> bus = EventBus()
>>> seen = []
>>> unsubscribe = bus.subscribe(Ping, seen.append)
>>> bus.emit(Ping(time_s=1.0, n=3))
>>> seen[0].n
3
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

_log = logging.getLogger(__name__)

E = TypeVar("E", bound="Event")


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of all events.

    Attributes
    ----------
    time_s
        The emitter's clock reading when the event happened (simulated seconds on the twin).
    """

    time_s: float = 0.0

    @property
    def kind(self) -> str:
        """The event's class name, as written to journals and logs."""
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dictionary with the event kind under ``"kind"``."""
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True, kw_only=True)
class Message(Event):
    """A human-readable note from library code (rendered by the CLI or the web page)."""

    level: str = "info"
    text: str = ""


@dataclass(frozen=True, kw_only=True)
class Progress(Event):
    """Progress of a long job: ``done`` of ``total`` steps of ``task``."""

    task: str
    done: float
    total: float | None = None
    detail: str = ""


class _Subscription:
    __slots__ = ("critical", "event_type", "handler")

    def __init__(self, event_type: type[Event], handler: Callable[[Any], None], critical: bool):
        self.event_type = event_type
        self.handler = handler
        self.critical = critical


class EventBus:
    """Deliver events synchronously, in subscription order.

    A handler subscribed with ``critical=True`` (a journal writer, say) lets its exceptions
    propagate to the emitter, which must then stop; other handlers' failures are logged and do
    not disturb the run.
    """

    def __init__(self) -> None:
        self._subs: list[_Subscription] = []

    def subscribe(
        self,
        event_type: type[E],
        handler: Callable[[E], None],
        *,
        critical: bool = False,
    ) -> Callable[[], None]:
        """Call ``handler`` for every emitted instance of ``event_type``.

        Returns
        -------
        Callable
            A function that removes this subscription.
        """
        sub = _Subscription(event_type, handler, critical)
        self._subs.append(sub)

        def unsubscribe() -> None:
            if sub in self._subs:
                self._subs.remove(sub)

        return unsubscribe

    def emit(self, event: Event) -> None:
        """Deliver ``event`` to every matching subscriber."""
        for sub in list(self._subs):
            if not isinstance(event, sub.event_type):
                continue
            if sub.critical:
                sub.handler(event)
                continue
            try:
                sub.handler(event)
            except Exception:
                _log.exception("event handler %r failed on %s", sub.handler, event.kind)

    @property
    def n_subscribers(self) -> int:
        """How many subscriptions are active."""
        return len(self._subs)
