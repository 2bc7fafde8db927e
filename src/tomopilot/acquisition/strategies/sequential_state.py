"""One sequential target's state and its journal form.

What the ``sequential`` strategy keeps per target between Records (its predictor, the images
the next tracking correlation compares with, the dose spent and the branches ended), and the
plain-JSON form the engine journals after every Record so a killed run continues where it
stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tomopilot.acquisition.strategies.base import TargetInfo
from tomopilot.geometry.tilt_predictor import PredictorSettings, TiltPredictor


@dataclass
class Reference:
    """An image the next correlation of a group compares with: the target's offset from the
    field centre in it (µm) and its tilt."""

    key: str
    offset_um: tuple[float, float]
    tilt_deg: float


@dataclass
class SequentialTarget:
    """One target's series: its predictor, references, dose and ended branches."""

    info: TargetInfo
    start_is_um: tuple[float, float]
    focus_start_um: float
    predictor: TiltPredictor
    references: dict[int, Reference] = field(default_factory=dict)
    # The tracking Views (track_with_view): each group's last View the target was found in.
    view_references: dict[int, Reference] = field(default_factory=dict)
    # Where this tilt's tracking View found the target (image shift, µm), until its Record.
    view_position_um: tuple[float, float] | None = None
    # track_with_view "auto": the branches whose Records gave no believable tracking peak and
    # which track on Views since.
    view_branches: set[str] = field(default_factory=set)
    second_half_ready: bool = False
    dose_e_a2: float = 0.0
    start_dose_e_a2: float = 0.0
    branch_dose_e_a2: dict[str, float] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)


def group_of(branch: str) -> int:
    """The predictor's group of a branch: 0 for the start tilt and the + half, 1 for the −."""
    return 1 if branch == "-" else 0


def target_state(t: SequentialTarget) -> dict[str, Any]:
    """``t`` as plain JSON (the journal's form)."""
    return {
        "info": {
            "index": t.info.index,
            "ss_um": list(t.info.ss_um),
            "defocus_um": t.info.defocus_um,
            "skip": t.info.skip,
        },
        "start_is_um": list(t.start_is_um),
        "focus_start_um": t.focus_start_um,
        "predictor": t.predictor.state(),
        "references": {
            str(g): [r.key, list(r.offset_um), r.tilt_deg] for g, r in t.references.items()
        },
        "view_references": {
            str(g): [r.key, list(r.offset_um), r.tilt_deg] for g, r in t.view_references.items()
        },
        "view_branches": sorted(t.view_branches),
        "second_half_ready": t.second_half_ready,
        "dose_e_a2": t.dose_e_a2,
        "start_dose_e_a2": t.start_dose_e_a2,
        "branch_dose_e_a2": dict(t.branch_dose_e_a2),
        "skipped": sorted(t.skipped),
    }


def target_from_state(data: dict[str, Any], settings: PredictorSettings) -> SequentialTarget:
    """The target :func:`target_state` wrote."""
    info = data["info"]
    return SequentialTarget(
        info=TargetInfo(
            index=int(info["index"]),
            ss_um=(float(info["ss_um"][0]), float(info["ss_um"][1])),
            defocus_um=float(info["defocus_um"]),
            skip=bool(info["skip"]),
        ),
        start_is_um=(float(data["start_is_um"][0]), float(data["start_is_um"][1])),
        focus_start_um=float(data["focus_start_um"]),
        predictor=TiltPredictor.from_state(data["predictor"], settings),
        references={
            int(g): Reference(str(r[0]), (float(r[1][0]), float(r[1][1])), float(r[2]))
            for g, r in data["references"].items()
        },
        view_references={
            int(g): Reference(str(r[0]), (float(r[1][0]), float(r[1][1])), float(r[2]))
            for g, r in data.get("view_references", {}).items()
        },
        view_branches={str(b) for b in data.get("view_branches", [])},
        second_half_ready=bool(data["second_half_ready"]),
        dose_e_a2=float(data["dose_e_a2"]),
        start_dose_e_a2=float(data["start_dose_e_a2"]),
        branch_dose_e_a2={k: float(v) for k, v in data["branch_dose_e_a2"].items()},
        skipped=set(data["skipped"]),
    )
