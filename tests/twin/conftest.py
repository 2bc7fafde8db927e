"""Fixtures for the twin tests."""

from __future__ import annotations

from typing import Any

import pytest
from twin_helpers import QUIET_STAGE


@pytest.fixture
def quiet_stage() -> dict[str, Any]:
    """Stage keys that switch off every random or time-dependent error."""
    return dict(QUIET_STAGE)
