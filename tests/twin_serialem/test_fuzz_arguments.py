"""Any arguments to any command fail only with the module's deliberate errors.

Random argument lists (numbers, huge and non-finite values, text, buffer letters, None, lists)
go to every command of the table on a small twin. Each call must return a value of the module's
kinds or raise ``SEMerror``/``SEMexited`` with a message of its own, never an internal error
translated after the fact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tomopilot.instrument.twin import TwinConfig, TwinMicroscope
from tomopilot.instrument.twin_serialem import COMMANDS, SEMerror, SEMexited, make_module

TINY = {
    "seed": 2,
    "camera": {"size_px": [512, 512]},
    "presets": {
        area: {"binning": 8} for area in ("record", "preview", "view", "search", "focus", "trial")
    },
    "housekeeping": {"dewar_refill_duration_s": 1.0},
}

values = st.one_of(
    st.integers(-5, 25),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from(["A", "B", "R", "V", "F", "Q", "AF", "", "x y", "-1", "Re", "S", "T"]),
    st.text(max_size=8),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


_SESSION: dict[str, Any] = {}


def _module(folder: Path) -> Any:
    """One module for every example: the state left by earlier calls is part of the test."""
    if "sem" not in _SESSION:
        sem = make_module(TwinMicroscope(TwinConfig.model_validate(TINY)), directory=folder)
        sem.R()  # something in A and B for the buffer commands
        sem.Copy("A", "B")
        _SESSION["sem"] = sem
    return _SESSION["sem"]


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=st.sampled_from(sorted(COMMANDS)), args=st.lists(values, max_size=6))
def test_commands_fail_only_deliberately(
    tmp_path_factory: object, name: str, args: list[object]
) -> None:
    sem = _module(tmp_path_factory.getbasetemp())
    try:
        result = getattr(sem, name)(*args)
    except SEMexited:
        return
    except SEMerror as exc:
        assert "Internal error" not in str(exc), str(exc)
        assert exc.command, str(exc)
        return
    items = result if isinstance(result, tuple) else (result,)
    assert all(v is None or isinstance(v, float | str) for v in items)
