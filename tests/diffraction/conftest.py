"""Fixtures for the microED tests."""

from __future__ import annotations

import pytest
from microed_helpers import SMALL_SPEC

from tomopilot.instrument.twin.diffraction import DiffractionSeries, simulate_diffraction_series


@pytest.fixture(scope="session")
def small_series() -> DiffractionSeries:
    """Five 72×96 int32 frames of a rotating crystal, with a dark-reference spike in frame 0."""
    return simulate_diffraction_series(SMALL_SPEC)
