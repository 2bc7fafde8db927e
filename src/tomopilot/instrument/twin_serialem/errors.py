"""The error types of SerialEM's ``serialem`` Python module, as the twin-backed module raises them.

SerialEM's module has three: ``SEMerror`` (a command failed: bad arguments, an out-of-range
value, an operation the microscope refused), ``SEMmoduleError`` (the module itself: not
connected, SerialEM busy) and ``SEMexited`` (the script was ended: ``Exit``, or the user pressed
STOP). Scripts catch them as ``serialem.SEMerror`` etc.; they are plain ``Exception`` subclasses
exactly as in SerialEM's module, so a script's ``except Exception`` behaves the same on both.

Messages follow SerialEM's style: what went wrong, then the statement it happened in, so the
command is always named.
"""

from __future__ import annotations


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


class SEMmoduleError(Exception):
    """The module could not run a command (SerialEM's ``serialem.SEMmoduleError``)."""


class SEMexited(Exception):
    """The script was ended by ``Exit`` or a user STOP (SerialEM's ``serialem.SEMexited``)."""


class UnknownCommandError(SEMerror, AttributeError):
    """A name that is not a script command of SerialEM's module.

    It is both a :class:`SEMerror` (the module's own error type, naming the command) and an
    ``AttributeError``, so ``hasattr(serialem, "NoSuchCommand")`` is False as on SerialEM.
    """


# Scripts see them as the module's own classes (``serialem.SEMerror`` in a traceback).
for _cls in (SEMerror, SEMmoduleError, SEMexited, UnknownCommandError):
    _cls.__module__ = "serialem"


def statement(name: str, args: tuple[object, ...]) -> str:
    """The command as a SerialEM script line: ``AlignTo B 0 1``."""
    return " ".join([name, *(str(a) for a in args)])


def command_error(name: str, args: tuple[object, ...], what: str) -> SEMerror:
    """A SerialEM-style error: what went wrong, then the statement."""
    return SEMerror(f"{what} in script statement: {statement(name, args)}", name)
