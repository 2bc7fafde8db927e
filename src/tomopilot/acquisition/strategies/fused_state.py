"""The state ``fused`` keeps: per target and branch, and per tilt round."""

from __future__ import annotations

from dataclasses import dataclass, field

from tomopilot.acquisition.strategy import TargetInfo


@dataclass
class FusedBranch:
    """One target's state on one branch."""

    x_um: float
    y_um: float
    z_um: float
    z_var_um2: float
    offset_um: list[float] = field(default_factory=lambda: [0.0, 0.0])
    ref_offset_um: list[float] = field(default_factory=lambda: [0.0, 0.0])
    last_tilt_deg: float = 0.0
    reference: str | None = None
    skip: str | None = None
    images: int = 0
    peaks: list[float] = field(default_factory=list)
    lost: int = 0


@dataclass
class FusedTarget:
    """A target and its branch states (shared while at the start tilt)."""

    info: TargetInfo
    level_um: float
    start: FusedBranch
    plus: FusedBranch | None = None
    minus: FusedBranch | None = None

    def branch(self, name: str) -> FusedBranch:
        if name == "start" or self.plus is None or self.minus is None:
            return self.start
        return self.plus if name == "+" else self.minus


@dataclass
class TiltRound:
    """What the targets imaged so far at the current tilt have shown."""

    step_index: int = -1
    lateral: list[list[float]] = field(default_factory=list)  # unexplained (x, y)
    depth: list[float] = field(default_factory=list)  # unexplained z from the CTF
