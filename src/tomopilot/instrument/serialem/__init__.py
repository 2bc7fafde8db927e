"""The SerialEM backend: a :class:`~tomopilot.instrument.Microscope` that drives SerialEM.

It talks through an object with the interface of SerialEM's ``serialem`` Python module:
SerialEM's own module (imported lazily, only when this backend is opened, and connected with
``ConnectToSEM(port, ip)``), or the twin-backed implementation of the same interface for
testing tomopilot end to end. Every protocol operation is a short sequence of documented
SerialEM script commands (see the modules :mod:`.motion`, :mod:`.camera`, :mod:`.duties`).

>>> from tomopilot.instrument.serialem import Address, open_serialem
>>> scope = open_serialem(Address("127.0.0.1", 48888))  # doctest: +SKIP
"""

from tomopilot.instrument.serialem.check import SetupReport, check_setup
from tomopilot.instrument.serialem.connect import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    Address,
    import_serialem,
    resolve_address,
)
from tomopilot.instrument.serialem.core import SerialEMOptions
from tomopilot.instrument.serialem.duties import AutofocusFailed
from tomopilot.instrument.serialem.microscope import (
    SerialEMMicroscope,
    open_serialem,
)
from tomopilot.instrument.serialem.session import (
    SerialEMCommandError,
    SerialEMConnectionError,
    SerialEMError,
    SerialEMSession,
    SerialEMUnavailableError,
)

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "Address",
    "AutofocusFailed",
    "SerialEMCommandError",
    "SerialEMConnectionError",
    "SerialEMError",
    "SerialEMMicroscope",
    "SerialEMOptions",
    "SerialEMSession",
    "SerialEMUnavailableError",
    "SetupReport",
    "check_setup",
    "import_serialem",
    "open_serialem",
    "resolve_address",
]
