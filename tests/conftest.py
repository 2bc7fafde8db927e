"""Shared fixtures: paths to the real third-party files in ../shared/testdata/real.

``TOMOPILOT_REAL_DATA`` points elsewhere (a clone outside the workspace, say).

Hypothesis runs without its per-example deadline: the suite asserts numbers, never time, and a
loaded 2-core machine made examples of a journal property exceed 200 ms.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("tomopilot", deadline=None)
settings.load_profile("tomopilot")

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
