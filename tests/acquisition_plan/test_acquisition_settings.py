"""Acquisition settings: PACEtomo names and defaults, units in names, targets-file overrides."""

from __future__ import annotations

import math
import typing

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from tomopilot.acquisition.plan.settings import (
    FALSE_WORDS,
    PACETOMO_NAMES,
    TRUE_WORDS,
    AcquisitionSettings,
    apply_overrides,
    setting_name,
)
from tomopilot.acquisition.plan.target_defocus import (
    defocus_per_target,
    start_tilt_defocus_um,
    tracking_defocus_um,
)
from tomopilot.core.errors import ConfigError

# PACEtomo v1.9.2's script defaults, by PACEtomo name.
PACETOMO_DEFAULTS: dict[str, float | bool] = {
    "startTilt": 0, "minTilt": -60, "maxTilt": 60, "step": 3, "groupSize": 2,
    "minDefocus": -5, "maxDefocus": -5, "stepDefocus": 0.5, "focusSlope": 0.0,
    "delayIS": 0.3, "delayTilt": 0.3, "zeroExpTime": 0, "zeroDefocus": 0,
    "trackExpTime": 0, "trackDefocus": 0, "trackMag": 0, "trackTwice": False,
    "pretilt": 0, "rotation": 0, "measureGeo": False, "tgtPattern": False,
    "alignToP": False, "refineVec": False, "refineGeo": False, "beamTiltComp": True,
    "addAF": False, "previewAli": True, "viewAli": False, "sortByTilt": True,
    "binFinalStack": 1, "delFinalStack": False, "doCtfFind": False, "doCtfPlotter": True,
    "extendedMdoc": True, "slowTilt": False, "taOffsetPos": 0, "taOffsetNeg": 0,
    "checkDewar": True, "cryoARM": False, "coldFEG": False, "flashInterval": -1,
    "slitInterval": 0, "fitLimit": 30, "parabolTh": 9, "imageShiftLimit": 20,
    "dataPoints": 4, "alignLimit": 0.5, "minCounts": 0, "ignoreNegStart": True,
    "realignToItem": False, "refFromPreview": False, "noZeroRecAli": False,
    "autoStartTilt": False, "tiltTargets": 0, "tgtMontage": False, "tgtMntSize": 1,
    "tgtMntOverlap": 0.05, "tgtMntXOffset": 0, "tgtMntFocusCor": False, "tgtTrackMnt": False,
}  # fmt: skip

# Names the seed README and its notes use that differ from the script's variable.
README_SPELLINGS = {
    "measureGeometry": "measure_geometry",
    "ignoreFirstNegShift": "ignore_neg_start",
}

UNITS = ("_deg", "_um", "_s", "_a", "_h", "_min", "_per_s", "_um_per_deg")
UNITLESS = {"target_montage_overlap"}  # a fraction of the camera side


def test_every_pacetomo_setting_has_its_default() -> None:
    dumped = AcquisitionSettings().to_pacetomo()
    for name, default in PACETOMO_DEFAULTS.items():
        assert name in dumped, name
        assert dumped[name] == default, name
        assert type(dumped[name]) is type(default) or isinstance(default, int | float)


def test_readme_spellings_are_accepted() -> None:
    for spelling, name in README_SPELLINGS.items():
        assert setting_name(spelling) == name
        value = not getattr(AcquisitionSettings(), name)
        assert getattr(AcquisitionSettings.model_validate({spelling: value}), name) is value


def test_aliases_work_both_ways() -> None:
    by_pace = AcquisitionSettings.model_validate({"startTilt": 9, "delayIS": 1.0, "addAF": True})
    by_python = AcquisitionSettings(start_tilt_deg=9, delay_is_s=1.0, add_autofocus=True)
    assert by_pace == by_python
    assert by_pace.to_pacetomo()["startTilt"] == 9.0
    assert by_python.model_dump()["start_tilt_deg"] == 9.0
    again = AcquisitionSettings.model_validate(by_pace.to_pacetomo())
    assert again == by_pace == AcquisitionSettings.model_validate(by_pace.model_dump())


def test_names_carry_units_and_every_field_is_described() -> None:
    for name, info in AcquisitionSettings.model_fields.items():
        assert info.description, name
        assert PACETOMO_NAMES[name], name
        if info.annotation is float and name not in UNITLESS:
            assert name.endswith(UNITS), f"{name} has no unit"


def test_a_setting_given_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match="name the same setting"):
        AcquisitionSettings.model_validate({"startTilt": 0, "start_tilt_deg": 3})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"groupSize": 0}, "greater than or equal to 1"),
        ({"dataPoints": 0}, "greater than or equal to 1"),
        ({"step": 0}, "greater than 0"),
        ({"minDefocus": 3}, "did you mean -3"),
        ({"trackDefocus": 2}, "overfocus"),
        ({"pretilt": 95}, "less than 90"),
        ({"groupSize": 2.5}, "integer"),
        ({"tiltScheme": "spiral"}, "dose_symmetric"),
    ],
)
def test_bad_values_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AcquisitionSettings.model_validate(values)


def test_overrides_parse_set_and_bset_lines_and_leave_the_original() -> None:
    base = AcquisitionSettings()
    out = apply_overrides(
        base,
        {
            "maxDefocus": "-4.5",
            "groupSize": "3",
            "addAF": "Yes",
            "previewAli": "off",
            "pretilt": -9,
        },
        source="L03_tgts.txt",
    )
    assert (out.max_defocus_um, out.group_size, out.add_autofocus, out.preview_align) == (
        -4.5,
        3,
        True,
        False,
    )
    assert out.pretilt_deg == -9
    assert base == AcquisitionSettings()
    # python names work too, and a _set 0/1 on an on/off setting is taken as PACEtomo would
    assert apply_overrides(base, {"slow_tilt": "1"}, source="x").slow_tilt is True


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"bogus": "1"}, "unknown setting 'bogus'"),
        ({"groupSize": "2.5"}, "whole number"),
        ({"groupSize": "0"}, "greater than or equal to 1"),
        ({"maxDefocus": "abc"}, "must be a number"),
        ({"maxDefocus": "nan"}, "finite"),
        ({"maxDefocus": "4"}, "did you mean -4"),
        ({"addAF": "maybe"}, "on/off"),
        ({"addAF": 2.0}, "on/off"),
        ({"step": True}, "is a number"),
    ],
)
def test_bad_overrides_name_the_key_and_the_file_line(
    overrides: dict[str, str | float | bool], message: str
) -> None:
    key = next(iter(overrides))
    with pytest.raises(ConfigError, match=message) as info:
        apply_overrides(AcquisitionSettings(), overrides, source={key: "/data/L03_tgts.txt:7"})
    err = info.value
    assert err.field == key and err.line == 7 and str(err.path) == "/data/L03_tgts.txt"
    assert str(err).startswith("/data/L03_tgts.txt:7, field '" + key + "'")


FLOAT_FIELDS = [
    (PACETOMO_NAMES[n], n, info)
    for n, info in AcquisitionSettings.model_fields.items()
    if info.annotation is float and "defocus" not in n
]


def _bounds(info: typing.Any) -> tuple[float, float]:
    low, high = -1e3, 1e3
    for item in info.metadata:
        for attr in ("ge", "gt"):
            if getattr(item, attr, None) is not None:
                low = max(low, getattr(item, attr))
        for attr in ("le", "lt"):
            if getattr(item, attr, None) is not None:
                high = min(high, getattr(item, attr))
    return low, high


@given(
    st.sampled_from(FLOAT_FIELDS),
    st.floats(0.01, 0.99),
    st.sampled_from(["{!r}", "{:.3f}", " {} ", "{:e}"]),
)
def test_numeric_overrides_round_trip(field: tuple[str, str, object], u: float, fmt: str) -> None:
    pace, name, info = field
    low, high = _bounds(info)
    text = fmt.format(low + u * (high - low))
    out = apply_overrides(AcquisitionSettings(), {pace: text}, source="t.txt:1")
    assert getattr(out, name) == float(text)


@given(st.sampled_from(sorted(TRUE_WORDS | FALSE_WORDS)), st.booleans())
def test_bool_overrides_accept_any_case(word: str, upper: bool) -> None:
    text = word.upper() if upper else word.capitalize()
    out = apply_overrides(AcquisitionSettings(), {"trackTwice": text}, source="t.txt:2")
    assert out.track_twice is (word in TRUE_WORDS)


@given(
    st.text(min_size=1, max_size=8).filter(
        lambda t: t.strip().lower() not in TRUE_WORDS | FALSE_WORDS
    )
)
def test_garbage_is_refused_for_on_off_settings(text: str) -> None:
    with pytest.raises(ConfigError, match="trackTwice"):
        apply_overrides(AcquisitionSettings(), {"trackTwice": text}, source="t.txt:3")


@given(st.text(max_size=8))
@example(" 12.5\t")  # whitespace around a number, as float() allows
@example("0\x1f")  # a control character str.strip() removes but float() refuses
def test_garbage_is_refused_or_parsed_exactly_for_numbers(text: str) -> None:
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if math.isfinite(number) and -90 <= number <= 90:
        assert (
            apply_overrides(AcquisitionSettings(), {"rotation": text}, source="s").rotation_deg
            == number
        )
    else:
        with pytest.raises(ConfigError, match="rotation"):
            apply_overrides(AcquisitionSettings(), {"rotation": text}, source="s")


# ---- target defocus (pacetomo.md §3.2) ----------------------------------------------------


def test_defocus_steps_per_target_and_wraps() -> None:
    s = AcquisitionSettings(max_defocus_um=-5, min_defocus_um=-3, step_defocus_um=0.5)
    assert defocus_per_target(s, 7) == [-5, -4.5, -4, -3.5, -3, -5, -4.5]
    # skipped targets do not advance the defocus
    assert defocus_per_target(s, 4, skipped={1}) == [-5, None, -4.5, -4]


def test_defocus_range_given_the_other_way_round_is_swapped() -> None:
    s = AcquisitionSettings(max_defocus_um=-3, min_defocus_um=-5, step_defocus_um=1)
    assert defocus_per_target(s, 4) == [-5, -4, -3, -5]


def test_single_defocus_and_exact_steps() -> None:
    assert defocus_per_target(AcquisitionSettings(), 3) == [-5, -5, -5]
    s = AcquisitionSettings(max_defocus_um=-2, min_defocus_um=-1, step_defocus_um=0.1)
    values = defocus_per_target(s, 12)
    assert values[:11] == [round(-2 + 0.1 * k, 6) for k in range(11)]
    assert values[11] == -2


def test_start_tilt_and_tracking_defocus() -> None:
    s = AcquisitionSettings(max_defocus_um=-5, min_defocus_um=-3, zero_defocus_um=-2)
    assert start_tilt_defocus_um(s, -4.5) == pytest.approx(-1.5)
    assert start_tilt_defocus_um(AcquisitionSettings(), -4.5) == -4.5
    deeper = AcquisitionSettings(max_defocus_um=-3, min_defocus_um=-3, track_defocus_um=-6)
    assert tracking_defocus_um(deeper, -3) == -6
    shallower = AcquisitionSettings(max_defocus_um=-5, min_defocus_um=-5, track_defocus_um=-2)
    assert tracking_defocus_um(shallower, -5) == -5  # ignored, as in PACEtomo
