"""Crash at any byte of an append, then repair: exactly the committed exposures remain.

Each test writes a reference series once, keeping a snapshot of every file after every
append. A crash during append ``n`` is simulated by the snapshot after ``n`` appends plus
any prefix of what append ``n`` adds (or zeros where a file system had not yet written the
data). After the repair the files must equal the snapshot of the committed count byte for
byte, and writing the lost exposure again must give the reference files: the exposure in
flight is lost, none is duplicated, and every mdoc matches its stack.
"""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from acqfiles_helpers import T0, dose_symmetric_tilts, make_section, read_stack, validate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tomopilot.acquisition.output.tilt_series_files import TiltSeriesFiles
from tomopilot.io.errors import TruncatedFileError
from tomopilot.io.mdoc_format import MdocHeader, MdocSection
from tomopilot.io.mdoc_writer import MdocWriter, mdoc_section_count, repair_mdoc
from tomopilot.io.mrc_stack import MrcStackWriter, repair_stack, stack_section_count

N = 5
SHAPE = (6, 8)
HEADER = MdocHeader(
    pixel_spacing_a=2.663, image_file="ts.mrc", image_size_xy=(8, 6), data_mode=2, titles=("t",)
)
CRASH = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
Snapshot = dict[str, bytes]


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    return [rng.normal(100.0, 30.0, SHAPE).astype(np.float32) for _ in range(N)]


def _movies() -> list[np.ndarray]:
    rng = np.random.default_rng(12)
    return [rng.poisson(3.0, (3, *SHAPE)).astype(np.uint16) for _ in range(N)]


def _sections() -> list[MdocSection]:
    return [make_section(i, t) for i, t in enumerate(dose_symmetric_tilts(N))]


def _snapshot(folder: Path) -> Snapshot:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _restore(folder: Path, files: Snapshot) -> None:
    for relative, data in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)


@cache
def _stack_reference() -> tuple[Snapshot, ...]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ts.mrc"
        writer = MrcStackWriter(path, shape_yx=SHAPE, dtype=np.float32, pixel_size_a=2.663)
        snapshots = [_snapshot(Path(tmp))]
        for image in _images():
            writer.append(image)
            snapshots.append(_snapshot(Path(tmp)))
    return tuple(snapshots)


@cache
def _mdoc_reference() -> tuple[Snapshot, ...]:
    with tempfile.TemporaryDirectory() as tmp:
        writer = MdocWriter(Path(tmp) / "ts.mrc.mdoc", HEADER, newline="\r\n")
        snapshots = [_snapshot(Path(tmp))]
        for section in _sections():
            writer.append(section)
            snapshots.append(_snapshot(Path(tmp)))
    return tuple(snapshots)


def _torn(before: bytes, after: bytes, fraction: float, zeros: bool) -> bytes:
    """``before`` plus a prefix of what the append added (or as many zero bytes)."""
    added = after[len(before) :]
    cut = round(fraction * len(added))
    return before + (b"\0" * cut if zeros else added[:cut])


@CRASH
@given(
    n=st.integers(0, N - 1),
    fraction=st.floats(0.0, 1.0),
    zeros=st.booleans(),
    header_updated=st.booleans(),
)
def test_stack_repair_after_a_crash_at_any_byte(
    n: int, fraction: float, zeros: bool, header_updated: bool
) -> None:
    reference = _stack_reference()
    before, after = reference[n]["ts.mrc"], reference[n + 1]["ts.mrc"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ts.mrc"
        if header_updated:  # the append completed but its exposure was never committed
            path.write_bytes(after)
        else:  # data partly written; the header (written last) still counts n sections
            data = before + after[len(before) :]
            path.write_bytes(_torn(before, data, fraction, zeros))
        assert stack_section_count(path) == (n + 1 if header_updated else n)
        repaired = repair_stack(path, n)
        assert path.read_bytes() == before and repaired.n_sections == n and validate(path)
        repaired.append(_images()[n])
        assert validate(path)
        assert np.array_equal(read_stack(path), np.stack(_images()[: n + 1]))


@CRASH
@given(n=st.integers(0, N - 1), fraction=st.floats(0.0, 1.0), zeros=st.booleans())
def test_mdoc_repair_after_a_crash_at_any_byte(n: int, fraction: float, zeros: bool) -> None:
    reference = _mdoc_reference()
    before, after = reference[n]["ts.mrc.mdoc"], reference[n + 1]["ts.mrc.mdoc"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ts.mrc.mdoc"
        path.write_bytes(_torn(before, after, fraction, zeros))
        complete = path.read_bytes() == after
        # Without any journal, a torn section is told apart from a complete one.
        assert mdoc_section_count(path) == (n + 1 if complete else n)
        writer = repair_mdoc(path, n)
        assert path.read_bytes() == before and writer.n_sections == n
        assert writer.append(_sections()[n]) == n
        assert path.read_bytes() == after


def test_repair_never_drops_committed_sections(tmp_path: Path) -> None:
    mdoc, stack = tmp_path / "ts.mrc.mdoc", tmp_path / "ts.mrc"
    mdoc.write_bytes(_mdoc_reference()[3]["ts.mrc.mdoc"][:-5])
    stack.write_bytes(_stack_reference()[3]["ts.mrc"][:-5])
    with pytest.raises(TruncatedFileError, match="3 sections were committed"):
        repair_mdoc(mdoc, 3)
    with pytest.raises(TruncatedFileError, match="3 sections were committed"):
        repair_stack(stack, 3)


def _series(folder: Path) -> TiltSeriesFiles:
    return TiltSeriesFiles(
        folder, "L1_ts_001", pixel_size_a=2.663, shape_yx=SHAPE, dtype=np.float32,
        voltage_kv=300.0, tilt_axis_deg=94.0, created=T0,
    )  # fmt: skip


@cache
def _series_reference() -> tuple[Snapshot, ...]:
    with tempfile.TemporaryDirectory() as tmp:
        files = _series(Path(tmp))
        snapshots = [_snapshot(Path(tmp))]
        for image, section, movie in zip(_images(), _sections(), _movies(), strict=True):
            files.append(image, section, movie)
            snapshots.append(_snapshot(Path(tmp)))
    return tuple(snapshots)


STAGES = ("frames partial", "frames", "stack partial", "stack data", "stack", "mdoc partial")


@CRASH
@given(
    n=st.integers(0, N - 1),
    stage=st.sampled_from((*STAGES, "mdoc")),
    fraction=st.floats(0.0, 1.0),
    journal=st.booleans(),
)
def test_resume_after_a_crash_in_any_phase_of_an_append(
    n: int, stage: str, fraction: float, journal: bool
) -> None:
    reference = _series_reference()
    before, after = reference[n], reference[n + 1]
    new_movie = next(name for name in after if name not in before)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _restore(folder, before)
        reached = STAGES.index(stage) if stage in STAGES else len(STAGES)
        (folder / "frames").mkdir(exist_ok=True)
        if reached == 0:
            partial = folder / "frames" / f".{Path(new_movie).stem}.partial.tif"
            partial.write_bytes(after[new_movie][: int(fraction * len(after[new_movie]))])
        if reached >= 1:
            (folder / new_movie).write_bytes(after[new_movie])
        stack_old, stack_new = before["L1_ts_001.mrc"], after["L1_ts_001.mrc"]
        if reached == 2:
            (folder / "L1_ts_001.mrc").write_bytes(_torn(stack_old, stack_new, fraction, False))
        if reached == 3:
            (folder / "L1_ts_001.mrc").write_bytes(stack_old + stack_new[len(stack_old) :])
        if reached >= 4:
            (folder / "L1_ts_001.mrc").write_bytes(stack_new)
        mdoc_old, mdoc_new = before["L1_ts_001.mrc.mdoc"], after["L1_ts_001.mrc.mdoc"]
        if reached == 5:
            (folder / "L1_ts_001.mrc.mdoc").write_bytes(_torn(mdoc_old, mdoc_new, fraction, False))
        if reached == 6:
            (folder / "L1_ts_001.mrc.mdoc").write_bytes(mdoc_new)
        # The journal records an exposure after append() returned; without a journal the
        # files alone decide.
        committed = n + 1 if reached == 6 and journal else n
        # A torn mdoc that lacks only trailing blank space holds the whole section: the
        # files alone rightly keep it, as after a complete write.
        added = mdoc_new[len(mdoc_old) :]
        whole = reached == 5 and added[: round(fraction * len(added))].strip() == added.strip()
        kept_without_journal = n + 1 if reached == 6 or whole else n
        files = TiltSeriesFiles.open_existing(
            folder, "L1_ts_001", n_committed=committed if journal else None
        )
        expected = committed if journal else kept_without_journal
        assert files.n_sections == expected
        assert _snapshot(folder) == reference[expected]
        for index in range(expected, N):
            files.append(_images()[index], _sections()[index], _movies()[index])
        assert _snapshot(folder) == reference[N]
