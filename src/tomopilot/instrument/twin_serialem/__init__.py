"""SerialEM's ``serialem`` Python module, served by a microscope backend (the twin by default).

Scripts written for SerialEM run unchanged against the digital twin::

    from tomopilot.instrument.twin import TwinMicroscope
    from tomopilot.instrument.twin_serialem import installed, make_module

    sem = make_module(TwinMicroscope(), directory="run")
    with installed(sem):
        import serialem  # the twin-backed module
        serialem.View()
        serialem.AlignTo("B")

Every command checks its arguments against one table (:data:`~.commands.COMMANDS`) and fails
with the module's own errors (``SEMerror`` ...) naming the command. :func:`coverage` counts the
implemented commands against the list a parallel-tomography script collection uses.

Examples
--------
>>> from tomopilot.instrument.twin import TwinMicroscope
>>> sem = make_module(TwinMicroscope())
>>> sem.SetDefocus(-3.5)
>>> sem.ReportDefocus()
-3.5
>>> sem.ImageShiftByMicrons(1.0, -0.5)
0.0
>>> [round(v, 3) for v in sem.ReportSpecimenShift()]
[1.0, -0.5]
"""

from tomopilot.instrument.twin_serialem.commands import COMMANDS, LISTED, Coverage, coverage
from tomopilot.instrument.twin_serialem.errors import (
    SEMerror,
    SEMexited,
    SEMmoduleError,
    UnknownCommandError,
)
from tomopilot.instrument.twin_serialem.module import (
    SerialEMModule,
    finish,
    installed,
    make_module,
)
from tomopilot.instrument.twin_serialem.session import Session

__all__ = [
    "COMMANDS",
    "LISTED",
    "Coverage",
    "SEMerror",
    "SEMexited",
    "SEMmoduleError",
    "SerialEMModule",
    "Session",
    "UnknownCommandError",
    "coverage",
    "finish",
    "installed",
    "make_module",
]
