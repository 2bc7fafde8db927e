"""Tracking strategies: ``none`` (no prediction), ``pace`` (faithful PACEtomo), ``fused`` (ours)."""

from __future__ import annotations

from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.strategies.base import Strategy
from tomopilot.acquisition.strategies.fused import FusedStrategy
from tomopilot.acquisition.strategies.none import NoPrediction
from tomopilot.acquisition.strategies.pace import PaceStrategy

STRATEGIES = ("pace", "fused", "none")


def make_strategy(name: str, settings: AcquisitionSettings) -> Strategy:
    """The strategy called ``name``."""
    if name == "pace":
        return PaceStrategy(settings)
    if name == "fused":
        return FusedStrategy(settings)
    if name == "none":
        return NoPrediction(settings)
    raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


__all__ = ["STRATEGIES", "FusedStrategy", "NoPrediction", "PaceStrategy", "make_strategy"]
