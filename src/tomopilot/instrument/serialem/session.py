"""One conversation with SerialEM: sending commands through a ``serialem`` module.

Everything tomopilot says to SerialEM goes through :meth:`SerialEMSession.call`, which

- sends one command of SerialEM's Python module (``module.<Command>(*args)``) and returns its
  reported values as floats or strings (the module's rule: None, one value, or a tuple);
- turns the module's three exceptions into tomopilot's typed errors: ``SEMerror`` (the command
  failed) → :class:`SerialEMCommandError`; ``SEMmoduleError`` (the socket, or SerialEM busy) →
  retried with exponential back-off while SerialEM answers "busy", else
  :class:`SerialEMConnectionError`; ``SEMexited`` (the operator pressed STOP, or a script called
  ``Exit``) → :class:`~tomopilot.instrument.errors.OperatorStop`, after which nothing more is
  sent;
- keeps a bounded log of the commands sent (name, arguments), for ``serialem check`` and for
  tests that compare command sequences with SerialEM's documented semantics.

The module is any object with the interface of SerialEM's ``serialem`` module: SerialEM's own
(see :func:`~tomopilot.instrument.serialem.connect.import_serialem`), the twin-backed one, or a
recording fake in tests.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from tomopilot.instrument.errors import InstrumentError, OperatorStop

_log = logging.getLogger(__name__)

Reported = float | str
"""One value SerialEM reports: a number (always a float in the module) or a string."""


class SerialEMError(InstrumentError):
    """Base of the errors of the SerialEM backend."""


class SerialEMUnavailableError(SerialEMError):
    """SerialEM's Python module cannot be imported (it ships with SerialEM, not with tomopilot)."""


class SerialEMConnectionError(SerialEMError):
    """The module could not reach SerialEM, or SerialEM stayed busy."""


class SerialEMCommandError(SerialEMError):
    """SerialEM refused or failed a command (the module raised ``SEMerror``).

    Attributes
    ----------
    command
        The command's name, e.g. ``'MoveStageTo'``.
    detail
        What SerialEM said.
    """

    def __init__(self, command: str, detail: str) -> None:
        self.command = command
        self.detail = detail
        super().__init__(f"SerialEM command {command} failed: {detail}")


class SerialEMSession:
    """Send commands to SerialEM through a ``serialem``-like module.

    Parameters
    ----------
    module
        The module (or any object with its functions and its ``SEMerror``, ``SEMmoduleError``
        and ``SEMexited`` exception classes).
    busy_retries
        How many times a command answered "busy" is sent again before giving up.
    busy_backoff_s
        The first wait after a "busy" answer; each further wait doubles, up to 5 s.
    sleep
        How to wait between retries (``time.sleep``; tests pass a recorder).
    log_size
        How many recent commands :attr:`sent` keeps.
    """

    def __init__(
        self,
        module: Any,
        *,
        busy_retries: int = 8,
        busy_backoff_s: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
        log_size: int = 100_000,
    ) -> None:
        self.module = module
        self.busy_retries = busy_retries
        self.busy_backoff_s = busy_backoff_s
        self._sleep = sleep
        self.sent: deque[tuple[str, tuple[Any, ...]]] = deque(maxlen=log_size)
        self.n_sent = 0
        self.stopped = False
        self.n_busy_retries = 0
        self._sem_error = _exception(module, "SEMerror")
        self._module_error = _exception(module, "SEMmoduleError")
        self._exited = _exception(module, "SEMexited")

    def call(self, command: str, *args: Any) -> Any:
        """Send ``command`` with ``args``; returns what the module returns.

        Raises
        ------
        OperatorStop
            The operator pressed STOP (now or earlier in this session).
        SerialEMCommandError
            SerialEM refused the command.
        SerialEMConnectionError
            The module lost SerialEM, or SerialEM stayed busy through every retry.
        """
        if self.stopped:
            raise OperatorStop(f"SerialEM was stopped by the operator; {command} was not sent")
        function = getattr(self.module, command, None)
        if function is None:
            raise SerialEMCommandError(command, "this SerialEM's Python module has no such command")
        wait = self.busy_backoff_s
        for attempt in range(self.busy_retries + 1):
            self.sent.append((command, args))
            self.n_sent += 1
            try:
                return function(*args)
            except self._exited as exc:
                self.stopped = True
                raise OperatorStop(
                    f"SerialEM stopped during {command} ({exc or 'User STOP'}); "
                    "continue with tomopilot acquire --resume"
                ) from exc
            except self._sem_error as exc:
                raise SerialEMCommandError(command, str(exc) or "no message") from exc
            except self._module_error as exc:
                if "busy" not in str(exc).lower() or attempt == self.busy_retries:
                    raise SerialEMConnectionError(
                        f"SerialEM did not run {command}: {exc}"
                        + (f" (still busy after {attempt} retries)" if attempt else "")
                    ) from exc
                self.n_busy_retries += 1
                _log.info("SerialEM busy during %s; retrying in %.2f s", command, wait)
                self._sleep(wait)
                wait = min(5.0, wait * 2)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- typed helpers ------------------------------------------------------------------------
    def values(self, command: str, *args: Any) -> tuple[Reported, ...]:
        """The reported values of ``command`` as a tuple (empty if it reported nothing)."""
        out = self.call(command, *args)
        if out is None:
            return ()
        if isinstance(out, tuple | list):
            return tuple(out)
        return (out,)

    def floats(self, command: str, *args: Any, n: int = 1) -> tuple[float, ...]:
        """The first ``n`` reported values of ``command`` as floats."""
        got = self.values(command, *args)
        if len(got) < n:
            raise SerialEMCommandError(
                command, f"reported {len(got)} value(s), {n} expected: {got!r}"
            )
        try:
            return tuple(float(v) for v in got[:n])
        except (TypeError, ValueError) as exc:
            raise SerialEMCommandError(command, f"reported non-numbers {got!r}") from exc

    def number(self, command: str, *args: Any) -> float:
        """The first reported value of ``command`` as a float."""
        return self.floats(command, *args, n=1)[0]

    def matrix(self, command: str, *args: Any) -> tuple[float, float, float, float]:
        """A 2×2 calibration matrix as SerialEM reports it: (xpx, xpy, ypx, ypy)."""
        a, b, c, d = self.floats(command, *args, n=4)
        return a, b, c, d

    def commands(self) -> list[str]:
        """The names of the commands sent so far (oldest first, bounded by ``log_size``)."""
        return [name for name, _ in self.sent]

    def since(self, mark: int) -> list[tuple[str, tuple[Any, ...]]]:
        """The commands sent after :meth:`mark` returned ``mark`` (as far as still kept)."""
        kept = list(self.sent)
        start = len(kept) - (self.n_sent - mark)
        return kept[max(0, start) :]

    def mark(self) -> int:
        """A position in the stream of commands, for :meth:`since`."""
        return self.n_sent


def _exception(module: Any, name: str) -> type[BaseException]:
    """The module's exception class ``name`` (a class that never matches if it has none)."""
    found = getattr(module, name, None)
    if isinstance(found, type) and issubclass(found, BaseException):
        return found
    return type(f"_No{name}", (Exception,), {})
