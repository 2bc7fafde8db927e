"""The error types of SerialEM's ``serialem`` Python module, as the twin-backed module raises them.

SerialEM's module has three: ``SEMerror`` (a command failed: bad arguments, an out-of-range
value, an operation the microscope refused), ``SEMmoduleError`` (the module itself: not
connected, SerialEM busy) and ``SEMexited`` (the script was ended: ``Exit``, or the user pressed
STOP). Scripts catch them as ``serialem.SEMerror`` etc.; they are plain ``Exception`` subclasses
exactly as in SerialEM's module, so a script's ``except Exception`` behaves the same on both.

Messages follow SerialEM's style: what went wrong, then the statement it happened in, so the
command is always named.

Because their ``__module__`` is ``serialem`` (a module that exists only where SerialEM, or the
twin's module, is installed), they pickle by name through this module, with their message and
fields: an error raised by a script in a worker process reaches the parent intact.
"""

from __future__ import annotations

from typing import Any

from tomopilot.core.errors import restore_error


def _by_name(error: BaseException) -> tuple[Any, ...]:
    return (_restore_by_name, (type(error).__name__, error.args, dict(vars(error))))


def _restore_by_name(name: str, args: tuple[Any, ...], state: dict[str, Any]) -> BaseException:
    return restore_error(_CLASSES[name], args, state)


class SEMerror(Exception):
    """A script command failed (SerialEM's ``serialem.SEMerror``).

    Attributes
    ----------
    command
        The command's name (``"AlignTo"``), or ``""`` when no command was involved.
    """

    def __init__(self, message: str, command: str = "") -> None:
        super().__init__(message)
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return _by_name(self)


class SEMmoduleError(Exception):
    """The module could not run a command (SerialEM's ``serialem.SEMmoduleError``)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return _by_name(self)


class SEMexited(Exception):
    """The script was ended by ``Exit`` or a user STOP (SerialEM's ``serialem.SEMexited``)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return _by_name(self)


class UnknownCommandError(SEMerror, AttributeError):
    """A name that is not a script command of SerialEM's module.

    It is both a :class:`SEMerror` (the module's own error type, naming the command) and an
    ``AttributeError``, so ``hasattr(serialem, "NoSuchCommand")`` is False as on SerialEM.
    """


_CLASSES: dict[str, type[BaseException]] = {
    cls.__name__: cls for cls in (SEMerror, SEMmoduleError, SEMexited, UnknownCommandError)
}

# Scripts see them as the module's own classes (``serialem.SEMerror`` in a traceback).
for _cls in _CLASSES.values():
    _cls.__module__ = "serialem"


def statement(name: str, args: tuple[object, ...]) -> str:
    """The command as a SerialEM script line: ``AlignTo B 0 1``."""
    return " ".join([name, *(str(a) for a in args)])


def command_error(name: str, args: tuple[object, ...], what: str) -> SEMerror:
    """A SerialEM-style error: what went wrong, then the statement."""
    return SEMerror(f"{what} in script statement: {statement(name, args)}", name)
