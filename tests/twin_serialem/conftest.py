"""A small twin and its serialem module for the command tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from serialem_helpers import SMALL

from tomopilot.instrument.twin import TwinConfig, TwinMicroscope
from tomopilot.instrument.twin_serialem import SerialEMModule, make_module


@pytest.fixture
def scope() -> TwinMicroscope:
    return TwinMicroscope(TwinConfig.model_validate(SMALL))


@pytest.fixture
def sem(scope: TwinMicroscope, tmp_path: Path) -> SerialEMModule:
    return make_module(scope, directory=tmp_path, record_dir=tmp_path)
