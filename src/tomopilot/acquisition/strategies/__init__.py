"""Tracking strategies: ``none`` (no prediction), ``pace`` (faithful PACEtomo), ``fused`` (ours),
``sequential`` (Leginon with UCSF Tomo's predictor, one target at a time)."""

from __future__ import annotations

from tomopilot.acquisition.plan.sequential_settings import SequentialSettings
from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.strategies.base import Strategy
from tomopilot.acquisition.strategies.fused import FusedStrategy
from tomopilot.acquisition.strategies.none import NoPrediction
from tomopilot.acquisition.strategies.pace import PaceStrategy
from tomopilot.acquisition.strategies.sequential import SequentialStrategy

STRATEGIES = ("pace", "fused", "none", "sequential")


def make_strategy(
    name: str, settings: AcquisitionSettings, sequential: SequentialSettings | None = None
) -> Strategy:
    """The strategy called ``name`` (``sequential`` takes its own settings)."""
    if name == "pace":
        return PaceStrategy(settings)
    if name == "fused":
        return FusedStrategy(settings)
    if name == "none":
        return NoPrediction(settings)
    if name == "sequential":
        return SequentialStrategy(settings, sequential)
    raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


__all__ = [
    "STRATEGIES",
    "FusedStrategy",
    "NoPrediction",
    "PaceStrategy",
    "SequentialStrategy",
    "make_strategy",
]
