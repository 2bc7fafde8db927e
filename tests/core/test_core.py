"""Core: clocks, events, configuration errors and crash-safe files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field

from tomopilot.core import (
    AppendOnlyJournal,
    ConfigError,
    ConfigModel,
    Event,
    EventBus,
    SimulatedClock,
    atomic_write_text,
    load_config,
    write_resolved_config,
)
from tomopilot.core.errors import ClockError, JournalError


class _Optics(ConfigModel):
    voltage_kv: float = Field(default=300.0, gt=0)


class _Scope(ConfigModel):
    name: str = "twin"
    optics: _Optics = _Optics()
    tilts_deg: list[float] = Field(default_factory=lambda: [0.0])


def test_simulated_clock_advances_only_when_told() -> None:
    clock = SimulatedClock()
    start = clock.datetime()
    clock.sleep(90.0)
    assert clock.now_s() == 90.0
    assert (clock.datetime() - start).total_seconds() == 90.0
    with pytest.raises(ClockError):
        clock.advance(-1.0)


def test_event_bus_delivers_subclasses_and_isolates_failures() -> None:
    @dataclass(frozen=True, kw_only=True)
    class Moved(Event):
        x_um: float

    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(Event, seen.append)

    def broken(_: Moved) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe(Moved, broken)
    bus.emit(Moved(time_s=1.0, x_um=2.5))
    assert [e.kind for e in seen] == ["Moved"]
    assert seen[0].to_dict() == {"kind": "Moved", "time_s": 1.0, "x_um": 2.5}

    unsubscribe = bus.subscribe(Moved, broken, critical=True)
    with pytest.raises(RuntimeError):
        bus.emit(Moved(x_um=0.0))
    unsubscribe()
    bus.emit(Moved(x_um=0.0))


def test_bad_yaml_value_names_field_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "scope.yaml"
    path.write_text("name: krios\noptics:\n  voltage_kv: -300\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, _Scope)
    err = info.value
    assert err.field == "optics.voltage_kv"
    assert err.line == 3
    assert str(path) in str(err) and "optics.voltage_kv" in str(err)


def test_unknown_key_and_broken_yaml_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "scope.yaml"
    path.write_text("name: krios\nopticks: {}\n")
    with pytest.raises(ConfigError, match="opticks") as info:
        load_config(path, _Scope)
    assert info.value.line == 2
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path, _Scope)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", _Scope)


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    config = _Scope(name="glacios", tilts_deg=[-3.0, 0.0, 3.0])
    out = write_resolved_config(config, tmp_path / "resolved.yaml")
    assert load_config(out, _Scope) == config


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "targets.txt"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["targets.txt"]


@given(st.lists(st.dictionaries(st.text(max_size=5), st.integers(), max_size=3), max_size=8))
def test_journal_round_trips_and_ignores_a_torn_tail(records: list[dict[str, int]]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        journal = AppendOnlyJournal(Path(folder) / "run.journal")
        for record in records:
            journal.append(record)
        with journal.path.open("ab") as handle:  # a crash in the middle of a write
            handle.write(b'{"kind": "Exposure", "z')
        assert list(journal.records()) == records


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.dictionaries(st.text(max_size=5), st.integers(), max_size=3), max_size=6),
    st.binary(max_size=6000).filter(lambda b: b"\n" not in b),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
def test_a_torn_tail_is_cut_off_before_the_next_append(
    records: list[dict[str, int]], torn: bytes, after: dict[str, int]
) -> None:
    """A crash mid-write, then a new process appends: the journal stays readable."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.journal"
        for record in records:
            AppendOnlyJournal(path).append(record)
        with path.open("ab") as handle:
            handle.write(torn)
        AppendOnlyJournal(path).append(after)  # the resumed process
        assert list(AppendOnlyJournal(path).records()) == [*records, after]
        assert path.read_bytes().endswith(b"\n")


def test_journal_refuses_a_corrupt_middle_line(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    path.write_text(json.dumps({"a": 1}) + "\nnot json\n" + json.dumps({"b": 2}) + "\n")
    with pytest.raises(JournalError, match=r"run\.journal:2"):
        list(AppendOnlyJournal(path).records())


def test_atomic_write_gives_ordinary_permissions(tmp_path: Path) -> None:
    import os
    import stat

    mask = os.umask(0o022)
    try:
        target = atomic_write_text(tmp_path / "settings.txt", "x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
