"""refineVec as a set-up step: a pattern made with slightly wrong vectors lands on its holes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tomopilot.acquisition.output.journal import replay_journal
from tomopilot.acquisition.plan.run_config import AcquireConfig
from tomopilot.acquisition.plan.scenarios import scenario_config
from tomopilot.acquisition.run import start_run
from tomopilot.instrument.twin import TwinConfig
from tomopilot.instrument.twin.specimen.holey_film import HoleyFilm
from tomopilot.targeting.spiral import pattern_offsets_um


def _pattern_run(folder: Path, refine: bool) -> tuple[list[float], list[float]]:
    """Miss (nm) of every target's map from its hole, and the vectors after set-up."""
    base = scenario_config("holey_flat", 7, "pace", folder)
    film = HoleyFilm(TwinConfig.model_validate(base.microscope.twin.model_dump()).specimen, seed=0)  # type: ignore[arg-type]
    a, b = film.lattice_vectors_um()
    turn = math.radians(1.0)  # vectors from another grid square: 2 % longer, 1° turned
    rot = 1.02 * np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
    wrong_a, wrong_b = rot @ a, rot @ b
    data = base.model_dump(mode="json", by_alias=True)
    first = data["targets"]["inline"][0]
    data["targets"] = {
        "inline": [
            {
                "SSX": float(x),
                "SSY": float(y),
                **({"viewfile": first["view_file"]} if k == 0 else {}),
            }
            for k, (x, y) in enumerate(pattern_offsets_um(wrong_a, wrong_b, 1))
        ]
    }
    data["settings"].update(
        {
            "minTilt": -3,
            "maxTilt": 3,
            "tgtPattern": True,
            "refineVec": refine,
            "size": 1,
            "vecA0": float(wrong_a[0]),
            "vecA1": float(wrong_a[1]),
            "vecB0": float(wrong_b[0]),
            "vecB1": float(wrong_b[1]),
        }
    )
    engine, _ = start_run(AcquireConfig.model_validate(data))
    engine.control.abort()  # set-up (maps included) only
    engine.run()
    truth = engine.scope.ground_truth
    misses = []
    for exposure_id in replay_journal(engine.journal_path).maps.values():
        x, y, _ = truth.exposure(exposure_id).specimen_centre_um
        holes = film.hole_centres_um((x - 3, x + 3, y - 3, y + 3))
        misses.append(float(np.min(np.hypot(holes[:, 0] - x, holes[:, 1] - y))) * 1e3)
    s = engine.plan.settings
    vectors = [
        s.pattern_vec_a_x_um,
        s.pattern_vec_a_y_um,
        s.pattern_vec_b_x_um,
        s.pattern_vec_b_y_um,
    ]
    return misses, vectors


def test_refine_vec_puts_a_copied_pattern_back_on_its_holes(tmp_path: Path) -> None:
    plain, kept = _pattern_run(tmp_path / "plain", refine=False)
    refined, vectors = _pattern_run(tmp_path / "refined", refine=True)
    assert len(plain) == len(refined) == 9
    assert max(plain) > 60.0  # 2 % and 1° off: the outer targets miss their holes
    assert max(refined) < 30.0
    assert vectors != kept
