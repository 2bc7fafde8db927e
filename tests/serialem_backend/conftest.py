"""Fixtures: the SerialEM backend over a recording fake of the ``serialem`` module."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fake_serialem import FakeSerialEM, small_twin

from tomopilot.instrument.serialem import SerialEMMicroscope, SerialEMSession


@pytest.fixture
def fake() -> FakeSerialEM:
    """A fresh recording fake over a small twin."""
    return FakeSerialEM(small_twin())


@pytest.fixture
def make_scope(fake: FakeSerialEM) -> Callable[..., SerialEMMicroscope]:
    """Build the backend on ``fake`` (sleeps between busy retries are recorded, not slept)."""

    def build(**kwargs: Any) -> SerialEMMicroscope:
        sleeps: list[float] = []
        session = SerialEMSession(fake, sleep=sleeps.append, **kwargs)
        scope = SerialEMMicroscope(session)
        scope.set_exposure_ids(lambda: fake.last_exposure_id)
        scope.sleeps = sleeps  # type: ignore[attr-defined]
        return scope

    return build
