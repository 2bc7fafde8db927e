"""Impossible settings are refused before any exposure, every problem listed, clearly."""

from __future__ import annotations

import pytest

from tomopilot.acquisition.plan.feasibility import (
    ImpossibleSettingsError,
    check_feasible,
    find_problems,
    plan_tilt_range,
    tilt_scheme_from_settings,
)
from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.core.errors import ConfigError


def problems(**values: object) -> list[str]:
    settings = AcquisitionSettings.model_validate(values)
    with pytest.raises(ImpossibleSettingsError) as info:
        check_feasible(settings, stage_tilt_limit_deg=60, image_shift_limit_um=15)
    assert isinstance(info.value, ConfigError)
    assert "nothing was exposed" in str(info.value)
    return info.value.problems


def warnings_of(**values: object) -> list[str]:
    settings = AcquisitionSettings.model_validate(values)
    return check_feasible(settings, stage_tilt_limit_deg=60, image_shift_limit_um=15)


def test_the_issue_examples() -> None:
    assert problems(startTilt=10) == [
        "startTilt = 10° is not a multiple of step = 3°: use 9° or 12°"
    ]
    assert problems(maxTilt=66) == ["maxTilt = 66° is beyond the stage tilt limit of ±60°"]
    assert problems(minTilt=-70) == ["minTilt = -70° is beyond the stage tilt limit of ±60°"]


def test_every_problem_is_listed_at_once() -> None:
    found = problems(startTilt=10, maxTilt=75, alignLimit=16, refineGeo=True, doCtfPlotter=False)
    assert len(found) == 4
    text = "\n".join(found)
    for expected in ("maxTilt = 75°", "startTilt = 10°", "alignLimit = 16 µm", "refineGeo"):
        assert expected in text


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"minTilt": 30, "maxTilt": -30}, "minTilt = 30° is above maxTilt = -30°"),
        ({"startTilt": 30, "maxTilt": 24}, "startTilt = 30° is outside minTilt…maxTilt"),
        ({"alignLimit": 15}, "alignLimit = 15 µm must be below the image-shift limit (15 µm)"),
        ({"imageShiftLimit": 0.4}, "alignLimit = 0.5 µm must be below the image-shift limit"),
        ({"refineGeo": True, "doCtfPlotter": False}, "refineGeo needs CTF fits"),
        ({"refineVec": True}, "refineVec needs tgtPattern"),
        ({"refineVec": True, "tgtPattern": True}, "refineVec needs the pattern vectors"),
        ({"slitInterval": 30}, "slitInterval needs tgtPattern"),
        ({"minDefocus": -3, "stepDefocus": 0}, "stepDefocus = 0 µm cannot cover"),
        ({"tiltTargets": 10}, "tiltTargets (the start tilt when not 0) = 10° is not a multiple"),
        ({"tiltTargets": 63}, "beyond the stage limit"),
    ],
)
def test_impossible_settings(values: dict[str, object], expected: str) -> None:
    assert any(expected in p for p in problems(**values)), problems(**values)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"minDefocus": -6, "maxDefocus": -3}, "swapped, as PACEtomo does"),
        ({"minDefocus": -4.8, "stepDefocus": 0.5}, "every target gets maxDefocus"),
        ({"trackMag": 2250}, "trackMag is set without trackDefocus"),
        ({"trackDefocus": -3}, "trackDefocus = -3 µm is ignored"),
        (
            {"maxTilt": 59},
            "maxTilt = 59° is not a whole number of steps from 0°: the series ends at 57°",
        ),
        ({"imageShiftLimit": 25}, "above the microscope's limit of 15 µm"),
        ({"addAF": True, "groupSize": 1}, "addAF never fires"),
        ({"focusSlope": 0.01}, "deprecated"),
        ({"startTilt": 9, "pretilt": 10}, "opposite sign"),
        ({"coldFEG": True, "checkDewar": False}, "never flashed"),
    ],
)
def test_warnings_do_not_stop_the_run(values: dict[str, object], expected: str) -> None:
    found = warnings_of(**values)
    assert any(expected in w for w in found), found


def test_defaults_are_feasible_without_warnings_on_the_twin_limits() -> None:
    assert warnings_of() == []


def test_targets_beyond_the_image_shift_are_skipped_and_none_left_is_refused() -> None:
    s = AcquisitionSettings()
    shifts = [(0.0, 0.0), (3.0, 4.0), (12.0, 9.0)]  # 15 µm > 15 − 0.5
    found = check_feasible(
        s, stage_tilt_limit_deg=60, image_shift_limit_um=15, target_shifts_um=shifts
    )
    assert found == [
        "target 3 is 15.00 µm from target 1, beyond the image-shift limit − alignLimit = "
        "14.5 µm: it will be skipped"
    ]
    with pytest.raises(ImpossibleSettingsError, match="no target is left"):
        check_feasible(
            s,
            stage_tilt_limit_deg=60,
            image_shift_limit_um=15,
            target_shifts_um=shifts,
            skipped={0, 1},
        )


def test_error_names_the_configuration_file() -> None:
    with pytest.raises(ImpossibleSettingsError) as info:
        check_feasible(
            AcquisitionSettings(start_tilt_deg=10), stage_tilt_limit_deg=60, path="/x/run.yaml"
        )
    assert str(info.value).startswith("/x/run.yaml: impossible settings")


def test_auto_start_tilt_gives_the_lamella_range_of_the_issue() -> None:
    s = AcquisitionSettings(auto_start_tilt=True, pretilt_deg=-10)
    tilt = plan_tilt_range(s, stage_tilt_limit_deg=60)
    assert (tilt.start_deg, tilt.min_deg, tilt.max_deg, tilt.adjusted) == (9, -51, 60, True)
    assert check_feasible(s, stage_tilt_limit_deg=60) == []
    scheme = tilt_scheme_from_settings(s, stage_tilt_limit_deg=60)
    assert scheme.n_tilts == 38
    assert [st.tilt_deg for st in scheme.steps()[:5]] == [9, 12, 15, 6, 3]


def test_tilt_targets_set_the_start_and_win_over_auto_start() -> None:
    s = AcquisitionSettings(tilt_targets_deg=12, auto_start_tilt=True, pretilt_deg=-10)
    tilt = plan_tilt_range(s, stage_tilt_limit_deg=60)
    assert (tilt.start_deg, tilt.min_deg, tilt.max_deg) == (12, -48, 60)
    errors, warnings = find_problems(s, stage_tilt_limit_deg=60)
    assert errors == [] and any("autoStartTilt is ignored" in w for w in warnings)


def test_other_schemes_from_settings() -> None:
    uni = AcquisitionSettings(tilt_scheme="unidirectional", min_tilt_deg=-30, max_tilt_deg=30)
    scheme = tilt_scheme_from_settings(uni, stage_tilt_limit_deg=60)
    assert scheme.start_deg == -30 and scheme.n_tilts == 21
    assert check_feasible(uni, stage_tilt_limit_deg=60) == []
    bi = AcquisitionSettings(tilt_scheme="bidirectional", min_tilt_deg=-6, max_tilt_deg=6)
    steps = tilt_scheme_from_settings(bi, stage_tilt_limit_deg=60).steps()
    assert [st.tilt_deg for st in steps] == [0, 3, 6, -3, -6]


def test_settings_a_run_does_not_act_on_are_named_when_set() -> None:
    said = warnings_of(tgtMontage=True, viewAli=True, binFinalStack=2)
    assert any(w.startswith("tgtMontage has no effect here: montage") for w in said)
    assert any(w.startswith("viewAli has no effect here") for w in said)
    assert any(w.startswith("binFinalStack has no effect here") for w in said)
    # left at their defaults (as a PACEtomo script writes them) they say nothing
    assert warnings_of(viewAli=False, tgtMontage=False) == []
