"""``fused``'s focus check: the tilt axis's motion along the beam, measured once per branch.

Every target's depth change is predicted by turning it about the tilt axis (``fused_axis``).
The axis itself also moves along the beam as the stage turns: the goniometer's run-out in z
(a smooth function of the tilt, tenths of a micrometre on a good autoloader), the z part of
each tilt's settling error and drift. That motion is common to every target, grows with the
tilt, and no lateral measurement shows it; where the Records' Thon rings are outside Nyquist
(fast-screening pixels at a few µm defocus) nothing else shows it either, and it is most of
what is left of ``fused``'s (and pace's) defocus error at high tilt.

So once per branch, at the first tilt at least ``FOCUS_CHECK_DEG`` from the start tilt, the
Focus area beside target 1 (where the set-up's autofocus read F0) measures the defocus before
target 1's Record, at the focus planned for target 1 (SerialEM's ``G`` without applying it,
PACEtomo's ``addAF`` measurement), with the objective a known step nearer focus
(``FOCUS_CHECK_DEFOCUS_UM``) so that the autofocus's calibration error, a fraction of the
defocus it reads, stays small. What it reads beyond what was planned is the axis's
unpredicted motion along the beam there, to the autofocus's own error (≈ 0.04 µm). It
corrects that tilt and, as a motion growing from the start tilt (z = k·|θ − θ₀|, one slope per
branch fitted through the measurements), the rest of the branch.

Costs per run: two autofocus measurements (two Focus exposures each, off the targets, and the
routine's overhead: about 4 s and 0.6 of a Record's dose each, about 1.5 % of the run's time
and 0.7 % of its dose on the benchmark).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tomopilot.acquisition.plan.tilt_schemes import TiltStep

#: The check is made at the first tilt of a branch at least this far from the start tilt: the
#: error it removes grows with the tilt, and beyond it lie a third of a ±60° branch's tilts.
FOCUS_CHECK_DEG: tuple[float, ...] = (39.0,)
#: The check reads the defocus with the objective this near focus (µm; a known lens change from
#: the planned focus): a beam-tilt autofocus's calibration error is a fraction of the defocus it
#: reads (the twin's 2 %: 0.08 µm at −4 µm, 0.04 µm here), and at −2 µm a binned Focus image
#: still has the contrast the beam-tilt pair's correlation needs.
FOCUS_CHECK_DEFOCUS_UM = -2.0
#: A reading this far from the plan is an autofocus failure (no contrast, a grid bar), not
#: the axis's motion (a few tenths of a µm): ignored.
FOCUS_CHECK_MAX_UM = 1.0
BRANCHES = ("+", "-")


def planned_checks(steps: Iterable[TiltStep]) -> int:
    """How many focus checks a tilt scheme's steps call for (for the dry-run estimate)."""
    steps = list(steps)
    start = next((s.tilt_deg for s in steps if s.branch == "start"), 0.0)
    reach = {
        b: max((abs(s.tilt_deg - start) for s in steps if s.branch == b), default=0.0)
        for b in BRANCHES
    }
    return sum(reach[b] >= d - 1e-6 for b in BRANCHES for d in FOCUS_CHECK_DEG)


@dataclass
class FocusCheck:
    """Per branch: the measured motion of the axis along the beam and its slope."""

    start_tilt_deg: float = 0.0
    #: branch -> [[distance from the start tilt (deg), axis depth there (µm)], ...]
    points: dict[str, list[list[float]]] = field(default_factory=dict)
    #: branch -> tilts at which a check was made (refused readings included)
    checked: dict[str, list[float]] = field(default_factory=dict)

    def due(self, branch: str, tilt_deg: float) -> bool:
        """A check is due before the first Record at this tilt."""
        if branch not in BRANCHES:
            return False
        distance = abs(tilt_deg - self.start_tilt_deg)
        passed = sum(distance >= d - 1e-6 for d in FOCUS_CHECK_DEG)
        return passed > len(self.checked.get(branch, []))

    def slope_um_per_deg(self, branch: str) -> float:
        """k of z = k·|θ − θ₀| fitted through the branch's measurements (0 before any)."""
        points = self.points.get(branch, [])
        den = sum(d * d for d, _ in points)
        return sum(d * z for d, z in points) / den if den > 0 else 0.0

    def axis_depth_um(self, branch: str, tilt_deg: float) -> float:
        """The axis's expected depth at ``tilt_deg`` on ``branch`` beyond the rotation model
        (µm, signed like a target's depth: positive moves the defocus the same way)."""
        if branch not in BRANCHES:
            return 0.0
        return self.slope_um_per_deg(branch) * abs(tilt_deg - self.start_tilt_deg)

    def record(self, branch: str, tilt_deg: float, error_um: float | None) -> float:
        """A check read ``error_um`` (measured − planned defocus; None: no reading) at
        ``tilt_deg``. Returns the correction to the axis depth at this tilt (µm)."""
        self.checked.setdefault(branch, []).append(tilt_deg)
        if error_um is None or abs(error_um) > FOCUS_CHECK_MAX_UM:
            return 0.0
        before = self.axis_depth_um(branch, tilt_deg)
        distance = abs(tilt_deg - self.start_tilt_deg)
        self.points.setdefault(branch, []).append([distance, before + error_um])
        return self.axis_depth_um(branch, tilt_deg) - before

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for the journal)."""
        return {
            "start_tilt_deg": self.start_tilt_deg,
            "points": {b: [list(p) for p in v] for b, v in self.points.items()},
            "checked": {b: list(v) for b, v in self.checked.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FocusCheck:
        """Back from :meth:`to_dict`."""
        return cls(
            start_tilt_deg=float(data.get("start_tilt_deg", 0.0)),
            points={
                str(b): [[float(d), float(z)] for d, z in v]
                for b, v in data.get("points", {}).items()
            },
            checked={str(b): [float(t) for t in v] for b, v in data.get("checked", {}).items()},
        )


__all__ = [
    "FOCUS_CHECK_DEFOCUS_UM",
    "FOCUS_CHECK_DEG",
    "FOCUS_CHECK_MAX_UM",
    "FocusCheck",
    "planned_checks",
]
