"""The state ``fused`` keeps: per target and branch, and per tilt round."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tomopilot.acquisition.strategies.base import TargetInfo


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
    ref_tilt_deg: float | None = None  # the tilt of ``reference`` (None: a map, not a Record)
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for the journal)."""
        return {
            "info": asdict(self.info),
            "level_um": self.level_um,
            "start": asdict(self.start),
            "plus": None if self.plus is None else asdict(self.plus),
            "minus": None if self.minus is None else asdict(self.minus),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FusedTarget:
        """Back from :meth:`to_dict`."""
        info = data["info"]
        return cls(
            info=TargetInfo(
                index=int(info["index"]),
                ss_um=(float(info["ss_um"][0]), float(info["ss_um"][1])),
                defocus_um=float(info["defocus_um"]),
                skip=bool(info["skip"]),
            ),
            level_um=float(data["level_um"]),
            start=FusedBranch(**data["start"]),
            plus=None if data["plus"] is None else FusedBranch(**data["plus"]),
            minus=None if data["minus"] is None else FusedBranch(**data["minus"]),
        )


@dataclass
class TiltRound:
    """What the targets imaged so far at the current tilt have shown."""

    step_index: int = -1
    lateral: list[list[float]] = field(default_factory=list)  # unexplained (x, y)
    depth: list[float] = field(default_factory=list)  # unexplained z from the CTF
    spot: list[float] | None = None  # the tracking spot's (x, y) step at this tilt
    spot_tried: bool = False
