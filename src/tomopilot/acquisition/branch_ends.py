"""When a branch of the tilt scheme ends: no target is left alive on it.

Target 1 is left out of the count under ``pace``, which records it at every executed tilt even
after its own branch was flagged (a PACEtomo quirk): a branch with only target 1 left ends once
target 1's own branch is flagged too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tomopilot.acquisition.strategies.base import Strategy, TargetInfo


def _target1_flagged(strategy: Strategy, branch: str) -> bool:
    state = strategy.state().get("targets", {}).get("1", {})
    key = {"+": "plus", "-": "minus"}[branch]
    data = state.get(key) if isinstance(state, dict) else None
    return bool(data and data.get("skip"))


def dead_branches(
    controller: Any, targets: Sequence[TargetInfo], strategy: Strategy, strategy_name: str
) -> list[str]:
    """The branches still running on ``controller`` that no target is alive on."""
    out = []
    for branch in ("+", "-"):
        if not controller.is_alive(branch):
            continue
        alive = [t.index for t in targets if not t.skip and strategy.alive(t.index, branch)]
        alive = [i for i in alive if i != 1 or strategy_name != "pace" or len(alive) == 1]
        if not alive or (alive == [1] and _target1_flagged(strategy, branch)):
            out.append(branch)
    return out
