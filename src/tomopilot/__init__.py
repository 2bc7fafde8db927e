"""tomopilot: an autopilot for cryo-electron tomography.

The package is layered (see ``DESIGN.md`` §2 in the shared folder): ``core`` holds units,
errors, events, clocks and configuration; ``imaging``, ``io`` and ``store`` hold image maths,
file formats and the database; ``instrument`` holds the :class:`~tomopilot.instrument.Microscope`
protocol and its backends, the digital twin first among them.

Examples
--------
>>> from tomopilot.instrument.twin import TwinMicroscope, TwinConfig
>>> scope = TwinMicroscope(TwinConfig(seed=1))
>>> scope.stage.position().tilt_deg
0.0
"""

import logging
from importlib.metadata import PackageNotFoundError, version

# A library leaves the display of its log records to the application (the CLI shows warnings).
logging.getLogger(__name__).addHandler(logging.NullHandler())

try:
    __version__ = version("tomopilot")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "uninstalled"

__all__ = ["__version__"]
