"""Properties of the archive's mdoc reading: section matching after a sort, torn files."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tomopilot.archive.mdoc_sections import TornRunFileError, match_sections, read_mdoc_table

EMBL_MDOC = "embl-krios-2015_TS_01.mrc.mdoc"


@given(st.lists(st.integers(-20, 20).map(lambda k: 3.0 * k), min_size=1, max_size=41))
def test_matching_after_a_stable_sort_finds_every_section(tilts: list[float]) -> None:
    order = sorted(range(len(tilts)), key=lambda i: tilts[i])  # what sort_by_tilt does
    file_tilts = [tilts[i] for i in order]
    sections = match_sections(tilts, file_tilts)
    assert sorted(sections) == list(range(len(tilts)))
    assert [file_tilts[s] for s in sections] == tilts
    assert sections == [order.index(i) for i in range(len(tilts))]  # equal tilts keep order


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.floats(0.0, 1.0))
def test_a_cut_mdoc_is_whole_or_refused(real_data: Path, tmp_path_factory, fraction: float) -> None:
    # real_data is a read-only path and tmp_path_factory makes a new folder per example
    text = (real_data / "mdoc" / EMBL_MDOC).read_bytes()
    whole = read_mdoc_table(real_data / "mdoc" / EMBL_MDOC)
    start = text.rindex(b"[ZValue")  # cut anywhere in the last section
    cut = start + int(fraction * (len(text) - start))
    path = tmp_path_factory.mktemp("cut") / EMBL_MDOC
    path.write_bytes(text[:cut])
    try:
        table = read_mdoc_table(path)
    except TornRunFileError as error:
        assert EMBL_MDOC in str(error)
        return
    # what was read is the file's complete sections, and at most a last one whose lines are whole
    assert table.sections[: len(whole.sections) - 1] == whole.sections[:-1]
    assert len(table.sections) in (len(whole.sections) - 1, len(whole.sections))


def test_a_missing_tilt_angle_is_named(tmp_path: Path) -> None:
    path = tmp_path / "x.mdoc"
    path.write_text(
        "PixelSpacing = 2\n\n[ZValue = 0]\nTiltAngle = 1\n\n[ZValue = 1]\nExposureDose = 3\n\n"
    )
    with pytest.raises(TornRunFileError, match="section 1 has no TiltAngle"):
        read_mdoc_table(path)
