"""Shared fixtures: paths to the real third-party files in ../shared/testdata/real."""

from __future__ import annotations

from pathlib import Path

import pytest

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "real"


@pytest.fixture
def real_data() -> Path:
    """The folder of real files written by SerialEM, RELION and others; skip if absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real test data not found at {REAL_DATA}")
    return REAL_DATA
