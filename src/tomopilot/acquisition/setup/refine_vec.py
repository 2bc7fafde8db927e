"""PACEtomo's ``refineVec`` as a set-up step: a hole pattern's vectors, refined at this area.

A hole grid is not perfectly regular from one grid square to the next, and a pattern copied to
other areas (Copy to Acq) carries the vectors measured where it was made; over a 7×7 pattern a
1 % error puts the outer targets 100 nm off their holes. With ``refineVec`` the set-up, centred
on target 1's hole (after the realignment to its View), image-shifts by n·A and by n·B, aligns
a fresh View to target 1's View (the hole template, PACEtomo's buffer P), and moves every
target to the refined lattice. A change of n·A or n·B over 0.5 µm is refused (a neighbouring
hole was found): the vectors are kept and the reason reported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.geometry.scope_state import preserved_optics
from tomopilot.instrument.protocol import Microscope
from tomopilot.instrument.types import Image
from tomopilot.targeting import refine_vectors_at_runtime
from tomopilot.targeting.targets import Target, TargetSet


def refine_pattern(
    scope: Microscope,
    settings: AcquisitionSettings,
    targets: Sequence[Target],
    template: Image | None,
    on_step: Callable[[str, str], None],
) -> list[Target] | None:
    """The targets moved to the refined pattern (``settings`` updated), or None if kept.

    The image shift in force is the area's origin; target shifts are relative to target 1.
    """
    s = settings
    if template is None:
        on_step("pattern", "refineVec needs target 1's View (viewfile) as hole template: kept")
        return None
    vec_a = (s.pattern_vec_a_x_um, s.pattern_vec_a_y_um)
    vec_b = (s.pattern_vec_b_x_um, s.pattern_vec_b_y_um)
    pattern = TargetSet(
        targets=list(targets),
        settings={
            "size": float(max(1, s.pattern_size)),
            "vecA0": vec_a[0],
            "vecA1": vec_a[1],
            "vecB0": vec_b[0],
            "vecB1": vec_b[1],
        },
    )
    first = targets[0].ss_um
    with preserved_optics(scope) as origin:
        scope.optics.set_image_shift_um(origin[0] + first[0], origin[1] + first[1])
        refined, accepted = refine_vectors_at_runtime(
            scope,
            pattern,
            hole_diameter_um=0.5 * min(math.hypot(*vec_a), math.hypot(*vec_b)),
            area=template.area,
            template=template,
        )
    if not accepted:
        on_step("pattern", "the refined vectors moved over 0.5 µm (a neighbour hole?): kept")
        return None
    new = refined.settings
    s.pattern_vec_a_x_um, s.pattern_vec_a_y_um = new["vecA0"], new["vecA1"]
    s.pattern_vec_b_x_um, s.pattern_vec_b_y_um = new["vecB0"], new["vecB1"]
    moved = max(
        math.hypot(a.ss_x_um - b.ss_x_um, a.ss_y_um - b.ss_y_um)
        for a, b in zip(targets, refined.targets, strict=True)
    )
    on_step(
        "pattern",
        f"vectors A ({new['vecA0']:.3f}, {new['vecA1']:.3f}) B ({new['vecB0']:.3f}, "
        f"{new['vecB1']:.3f}) µm; targets moved up to {moved * 1e3:.0f} nm",
    )
    return list(refined.targets)
