"""Shared fixtures: paths to the real third-party files in ../shared/testdata/real.

``TOMOPILOT_REAL_DATA`` points elsewhere (a clone outside the workspace, say).

Hypothesis runs without its per-example deadline: the suite asserts numbers, never time, and a
loaded 2-core machine made examples of a journal property exceed 200 ms.

The CLI's consoles are made wide here, before any test imports them (rich reads ``COLUMNS``
once, when a console is made; pytest's own output keeps the terminal's width): the tests look
for file names in messages, and at 80 columns a long temporary path (pytest-xdist's workers add
``popen-gwN/`` to it) is wrapped mid-name.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("tomopilot", deadline=None)
settings.load_profile("tomopilot")


def _import_wide(package: str, columns: int = 400) -> None:
    """Import every module of ``package`` with ``COLUMNS`` set to ``columns``."""
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(columns)
    try:
        for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
            importlib.import_module(f"{package}.{module.name}")
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before


_import_wide("tomopilot.cli")

REAL_DATA = Path(
    os.environ.get(
        "TOMOPILOT_REAL_DATA",
        Path(__file__).resolve().parents[2] / "shared" / "testdata" / "real",
    )
)


@pytest.fixture
def real_data() -> Path:
    """The folder of real files written by SerialEM, RELION and others; skip if absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real test data not found at {REAL_DATA} (set TOMOPILOT_REAL_DATA)")
    return REAL_DATA
