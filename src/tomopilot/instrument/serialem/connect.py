"""Finding SerialEM's Python module and connecting it to a running SerialEM.

SerialEM's ``serialem`` module is not on PyPI: it ships with SerialEM (the ``PythonModules``
folder of the SerialEM installation, one build per Python version) and can be built from
github.com/mastcu/PythonModule. tomopilot imports it only when the SerialEM backend is asked
for, so installing tomopilot never needs it.

The module talks to SerialEM over TCP. SerialEM must have the property
``EnableExternalPython 1``; it listens on 127.0.0.1:48888 unless ``SocketServerPort`` says
otherwise, and the module reads ``PY_SERIALEM_IP`` / ``PY_SERIALEM_PORT`` or takes
``ConnectToSEM(port, ip)`` as its first call.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

from tomopilot.instrument.serialem.session import (
    SerialEMCommandError,
    SerialEMConnectionError,
    SerialEMSession,
    SerialEMUnavailableError,
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 48888

HOW_TO_GET_IT = (
    "SerialEM's Python module 'serialem' ships with SerialEM, not with tomopilot: put the "
    "folder that holds it (the PythonModules folder of your SerialEM installation, the build "
    "for this Python {version}) on PYTHONPATH, or build it from github.com/mastcu/PythonModule "
    "('python setup.py build'). SerialEM needs the property 'EnableExternalPython 1'."
)


@dataclass(frozen=True)
class Address:
    """Where SerialEM listens."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def resolve_address(host: str | None = None, port: int | None = None) -> Address:
    """The address to use: the arguments, else ``PY_SERIALEM_IP``/``PY_SERIALEM_PORT``, else
    SerialEM's default 127.0.0.1:48888.

    Raises
    ------
    SerialEMConnectionError
        If ``PY_SERIALEM_PORT`` is not a port number.
    """
    if host is None:
        host = os.environ.get("PY_SERIALEM_IP") or DEFAULT_HOST
    if port is None:
        text = os.environ.get("PY_SERIALEM_PORT")
        if text:
            try:
                port = int(text)
            except ValueError as exc:
                raise SerialEMConnectionError(
                    f"PY_SERIALEM_PORT={text!r} is not a port number"
                ) from exc
        else:
            port = DEFAULT_PORT
    if not 0 < port < 65536:
        raise SerialEMConnectionError(f"port {port} is not a TCP port number")
    return Address(host, port)


def import_serialem(name: str = "serialem") -> Any:
    """Import SerialEM's Python module, or say clearly how to get it.

    Raises
    ------
    SerialEMUnavailableError
        If the module is not importable.
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        import sys

        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        raise SerialEMUnavailableError(
            f"cannot import {name!r} ({exc}). " + HOW_TO_GET_IT.format(version=version)
        ) from exc


def connect(
    module: Any,
    address: Address,
    *,
    busy_retries: int = 8,
) -> SerialEMSession:
    """Connect ``module`` to SerialEM at ``address`` and return a session.

    ``ConnectToSEM(port, ip)`` is called when the module has it (SerialEM's own module does;
    an in-process module needs no connection). The first command, ``IsVersionAtLeast``,
    checks that SerialEM answers.

    Raises
    ------
    SerialEMConnectionError
        If SerialEM does not answer at ``address``.
    """
    session = SerialEMSession(module, busy_retries=busy_retries)
    if hasattr(module, "ConnectToSEM"):
        try:
            session.call("ConnectToSEM", address.port, address.host)
        except (SerialEMCommandError, SerialEMConnectionError) as exc:
            raise SerialEMConnectionError(
                f"cannot connect to SerialEM at {address}: {exc}. Is SerialEM running with "
                "'EnableExternalPython 1', and is the port its SocketServerPort?"
            ) from exc
    try:
        session.call("IsVersionAtLeast", 30800)
    except SerialEMConnectionError as exc:
        raise SerialEMConnectionError(f"SerialEM at {address} does not answer: {exc}") from exc
    return session
