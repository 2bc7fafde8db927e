"""The module object: SerialEM's ``serialem`` Python module, served by a microscope backend.

:func:`make_module` returns a module object whose attributes are the script commands
(``sem.AlignTo("B")``), the module functions (``bufferImage``, ``PutImageInBuffer``,
``ConnectToSEM``, ``ReturnAllValuesAsTuples``) and the error types (``SEMerror``,
``SEMmoduleError``, ``SEMexited``). :func:`installed` puts it in ``sys.modules['serialem']`` so
that ``import serialem`` in a script finds it.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

import tomopilot.instrument.twin_serialem.all_commands  # noqa: F401  (fills the table)
from tomopilot.instrument.protocol import Microscope
from tomopilot.instrument.twin_serialem.camera_commands import need, put_image
from tomopilot.instrument.twin_serialem.commands import BUFFER_LETTERS, COMMANDS, run_command
from tomopilot.instrument.twin_serialem.errors import (
    SEMerror,
    SEMexited,
    SEMmoduleError,
    UnknownCommandError,
)
from tomopilot.instrument.twin_serialem.session import Session


class SerialEMModule(types.ModuleType):
    """A ``serialem`` module bound to one :class:`Session`."""

    SEMerror = SEMerror
    SEMmoduleError = SEMmoduleError
    SEMexited = SEMexited
    #: ReportClock is the twin's simulated clock: no time passes between commands (the
    #: backend's clock then reuses its last reading instead of asking again)
    simulated_clock = True

    def __init__(self, session: Session) -> None:
        super().__init__("serialem", __doc__)
        self.session = session
        for name in COMMANDS:
            setattr(self, name, self._bound(name))

    def _bound(self, name: str) -> Callable[..., object]:
        session = self.session

        def call(*args: Any) -> object:
            return run_command(session, name, args)

        call.__name__ = name
        call.__qualname__ = name
        call.__doc__ = COMMANDS[name].handler.__doc__
        return call

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise UnknownCommandError(
            f"{name} is not a script command of the serialem module (the twin-backed module "
            f"implements {len(COMMANDS)} commands; see docs/serialem-scripts.md)",
            name,
        )

    # -- module functions (not script commands) ------------------------------------------------
    def bufferImage(self, letter: str) -> np.ndarray:
        """The image in a buffer, as an array (the module returns a buffer-protocol object)."""
        if not isinstance(letter, str) or letter.upper() not in BUFFER_LETTERS or len(letter) != 1:
            raise SEMerror(
                f"Argument 1 must be a buffer letter A to T, not {letter!r} in script "
                f"statement: bufferImage {letter}",
                "bufferImage",
            )
        image = need(self.session, letter.upper(), "bufferImage")
        out = image.data.copy()
        out.flags.writeable = False
        return out

    def PutImageInBuffer(self, image: object, letter: str, *args: Any) -> None:
        """Put an array (2-D, or with its nx ny given) into a buffer; A rolls the buffers."""
        if not isinstance(letter, str) or letter.upper() not in BUFFER_LETTERS or len(letter) != 1:
            raise SEMerror(
                f"Argument 2 must be a buffer letter A to T, not {letter!r} in script "
                f"statement: PutImageInBuffer",
                "PutImageInBuffer",
            )
        array = np.asarray(image)
        if array.ndim == 1 and len(args) >= 2:
            array = array.reshape(int(args[1]), int(args[0]))
        try:
            put_image(self.session, array, letter.upper())
        except ValueError as exc:
            raise SEMerror(
                f"{exc} in script statement: PutImageInBuffer", "PutImageInBuffer"
            ) from None

    def ConnectToSEM(self, port: int = 48888, ip: str = "127.0.0.1") -> None:
        """Already connected: the module is served in-process."""

    def IsCommandAvailable(self, name: str) -> int:
        """1 if the module implements a command."""
        return 1 if name in COMMANDS else 0


def make_module(
    scope: Microscope,
    *,
    directory: Path | str | None = None,
    answers: Mapping[str, object] | None = None,
    on_log: Callable[[str], None] | None = None,
    record_dir: Path | str | None = None,
    properties: Mapping[str, float] | None = None,
) -> SerialEMModule:
    """A ``serialem`` module driving ``scope``.

    Parameters
    ----------
    scope
        The microscope (normally the twin).
    directory
        The working directory for relative file names.
    answers
        Replies to dialogs (prompt text or part of it -> answer).
    on_log
        Receives every line printed to SerialEM's log.
    record_dir
        Where to keep the side record for the ground-truth report (None: memory only).
    properties
        Property values to start with (Voltage, Cs, ImageShiftLimit ...).
    """
    session = Session(
        scope, directory=directory, answers=answers, on_log=on_log, record_dir=record_dir
    )
    for name, value in (properties or {}).items():
        key = session.properties.key(name) or name
        session.properties.values[key] = float(value)
    return SerialEMModule(session)


def finish(module: SerialEMModule) -> None:
    """What SerialEM does when a script ends: restore changed parameter sets and settings."""
    session = module.session
    for area, preset in list(session.saved_presets.items()):
        session.scope.optics.set_preset(area, preset)
    session.saved_presets.clear()
    for key, value in session.settings.originals.items():
        session.settings.values[key] = value
    session.settings.originals.clear()
    from tomopilot.instrument.twin_serialem.file_commands import files_of

    for image_file in files_of(session).files:
        image_file.write_autodoc()
    session.save_persistent()


@contextmanager
def installed(module: SerialEMModule) -> Iterator[SerialEMModule]:
    """``import serialem`` finds ``module`` while inside."""
    previous = sys.modules.get("serialem")
    sys.modules["serialem"] = module
    try:
        yield module
    finally:
        if previous is None:
            sys.modules.pop("serialem", None)
        else:
            sys.modules["serialem"] = previous
