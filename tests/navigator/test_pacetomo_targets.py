"""PACEtomo targets and run files: round trips, the documented example, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tomopilot.io.pacetomo_targets import (
    TargetsFormatError,
    format_targets,
    parse_targets_text,
    read_targets_file,
)
from tomopilot.targeting.targets import GeoPoint, Target, TargetSet, load_targets, save_targets

EXAMPLE = """_set tiltTargets = 0
_set pretilt = -10.0

_tgt = 001
tgtfile = L03_tgt_001.mrc
tsfile = L03_ts_001.mrc
stageX = 412.118
stageY = -87.502
SSX = 0
SSY = 0
viewfile = L03_tgt_001_view.mrc
skip = False

_tgt = 002
tgtfile = L03_tgt_002.mrc
tsfile = L03_ts_002.mrc
SSX = 1.84
SSY = -3.07
SPACEscore = 0.63
skip = False

_geo = 1
SSX = 2.5
SSY = 4.0
"""

RUN_FILE = """_set startTilt = 0
_set minTilt = -60
_spos = 7,2

_tgt = 001
tsfile = L03_ts_001.mrc
SSX = 0
SSY = 0
skip = False

_pbr = 1
SSX = 0.012
SSY = -0.03
focus = -4.87
shifts = 0.01,0.02
angles = 3,6
skip = False

_nbr = 1
SSX = 0
SSY = 0
focus = -4.9
skip = True
"""


def test_documented_example(tmp_path: Path) -> None:
    path = tmp_path / "L03_tgts.txt"
    path.write_text(EXAMPLE)
    assert format_targets(read_targets_file(path)) == EXAMPLE
    targets = load_targets(path)
    assert targets.settings == {"tiltTargets": 0.0, "pretilt": -10.0}
    second = targets.targets[1]
    assert second.ss_um == (1.84, -3.07) and second.space_score == 0.63 and not second.skip
    assert targets.targets[0].view_file == "L03_tgt_001_view.mrc"
    assert targets.geo_points == [GeoPoint(ss_x_um=2.5, ss_y_um=4.0)]
    out = save_targets(tmp_path / "again_tgts.txt", targets)
    assert load_targets(out) == targets


def test_run_file_round_trips_unchanged(tmp_path: Path) -> None:
    assert format_targets(parse_targets_text(RUN_FILE)) == RUN_FILE
    path = tmp_path / "L03_tgts_run01.txt"
    path.write_text(RUN_FILE)
    targets = load_targets(path)
    assert targets.spos == "7,2" and targets.targets[0].branches["_nbr"]["skip"] == "True"
    save_targets(path, targets)
    again = load_targets(path)
    assert again == targets


def test_specimen_shift_from_stage_positions(tmp_path: Path) -> None:
    path = tmp_path / "s_tgts.txt"
    path.write_text(
        "_tgt = 001\nstageX = 10\nstageY = 20\n\n_tgt = 002\nstageX = 12.5\nstageY = 19\n"
    )
    assert [t.ss_um for t in load_targets(path).targets] == [(0.0, 0.0), (2.5, -1.0)]


BAD = [
    ("_tgt = 001\nSSX = 1 2\n", 2, "key = value"),
    ("_set pretilt = ten\n", 1, "must be a number"),
    ("_bset previewAli = maybe\n", 1, "true or false"),
    ("SSX = 0\n", 1, "outside"),
    ("_tgt = 001\nSSX = 0\nSSX = 1\n", 3, "twice"),
    ("_tgt = one\n", 1, "digits"),
    ("_tgt = 001\nskip = perhaps\n", 2, "skip"),
    ("_tgt = 001\nSSY = nan\n", 2, "finite"),
    ("_pbr = 1\nSSX = 0\n", 1, "outside a _tgt"),
]


@pytest.mark.parametrize(("text", "line", "words"), BAD)
def test_bad_files_name_file_and_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = tmp_path / "bad_tgts.txt"
    path.write_text(text)
    with pytest.raises(TargetsFormatError) as info:
        load_targets(path)
    assert info.value.path == path and info.value.line == line
    assert f"{path}:{line}" in str(info.value) and words in str(info.value)


def test_unwritable_values_write_nothing(tmp_path: Path) -> None:
    path = tmp_path / "x_tgts.txt"
    path.write_text(EXAMPLE)
    targets = load_targets(path)
    targets.targets[0].tgt_file = "has space.mrc"
    with pytest.raises(TargetsFormatError):
        save_targets(path, targets)
    assert path.read_text() == EXAMPLE
    assert [p.name for p in tmp_path.iterdir()] == ["x_tgts.txt"]


_floats = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)
_word = st.from_regex(r"[A-Za-z0-9_.\-]{1,16}", fullmatch=True)
_name = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)


@st.composite
def target_sets(draw: st.DrawFn) -> TargetSet:
    targets = [
        Target(
            ss_x_um=draw(_floats),
            ss_y_um=draw(_floats),
            stage_x_um=draw(st.none() | _floats),
            stage_y_um=draw(st.none() | _floats),
            tgt_file=draw(st.none() | _word),
            ts_file=draw(st.none() | _word),
            view_file=draw(st.none() | _word),
            skip=draw(st.booleans()),
            space_score=draw(st.none() | _floats),
            ld_area=draw(st.none() | st.sampled_from(["R", "V", "S"])),
            extra=draw(st.dictionaries(st.sampled_from(["note", "LabelX", "custom"]), _word)),
        )
        for _ in range(draw(st.integers(0, 6)))
    ]
    names = draw(st.lists(_name, max_size=5, unique=True))
    split = draw(st.integers(0, len(names)))
    return TargetSet(
        targets=targets,
        geo_points=[
            GeoPoint(ss_x_um=draw(_floats), ss_y_um=draw(_floats))
            for _ in range(draw(st.integers(0, 4)))
        ],
        settings={n: draw(_floats) for n in names[:split]},
        bool_settings={n: draw(st.booleans()) for n in names[split:]},
    )


@given(target_sets())
def test_target_sets_round_trip(targets: TargetSet) -> None:
    from tomopilot.targeting.targets import from_file_data, to_file_data

    text = format_targets(to_file_data(targets))
    again = from_file_data(parse_targets_text(text))
    assert again == targets
