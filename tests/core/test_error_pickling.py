"""Every exception tomopilot defines survives pickling with its message and its fields.

An error raised in a worker process (a bench's ``ProcessPoolExecutor``, a Dask worker) reaches
the parent pickled. An exception whose ``__init__`` takes other arguments than its message used
to fail there: pickle rebuilds it as ``cls(*args)``, i.e. with the formatted message only, and
``ImageShiftLimitError(message)`` raised ``TypeError`` in the parent, hiding the real failure.
"""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
import typing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tomopilot
from tomopilot.instrument.errors import ImageShiftLimitError, StageLimitError

# Modules that cannot be imported on their own: a SerialEM script that imports SerialEM's module,
# Alembic's migration environment, and the ``python -m`` entry point (which runs the CLI).
_NOT_IMPORTABLE = ("tomopilot.examples.", "tomopilot.store.migrations.", "tomopilot.__main__")


def _all_error_classes() -> list[type[BaseException]]:
    found: set[type[BaseException]] = set()
    for info in pkgutil.walk_packages(tomopilot.__path__, "tomopilot."):
        if info.name.startswith(_NOT_IMPORTABLE):
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            # The twin's SerialEM errors present themselves as ``serialem.SEMerror``.
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ in (info.name, "serialem")
            ):
                found.add(value)
    return sorted(found, key=lambda c: (c.__module__, c.__qualname__))


ERRORS = _all_error_classes()


def _text() -> st.SearchStrategy[str]:
    return st.text(max_size=30)


def _strategy_for(hint: object) -> st.SearchStrategy[object]:
    origin = typing.get_origin(hint)
    if hint is str:
        return _text()
    if hint is Path:
        return st.builds(Path, st.from_regex(r"[a-z0-9_/]{1,20}", fullmatch=True))
    if origin in (typing.Union, type(int | str)):
        return st.one_of(*(_strategy_for(arg) for arg in typing.get_args(hint)))
    if origin in (list, typing.Sequence, tuple) or str(origin).endswith("Sequence'>"):
        args = typing.get_args(hint)
        if origin is tuple:
            return st.tuples(*(_strategy_for(a) for a in args))
        return st.lists(_strategy_for(args[0]), max_size=4)
    return st.from_type(typing.cast(type, hint))


def _constructor(cls: type[BaseException]) -> st.SearchStrategy[BaseException]:
    """Instances of ``cls`` from every argument its own ``__init__`` takes (a message if none)."""
    owner = next(c for c in cls.__mro__ if "__init__" in vars(c))
    if owner.__module__ == "builtins":
        return st.builds(cls, _text())
    hints = typing.get_type_hints(owner.__init__)
    params = [p for p in inspect.signature(owner.__init__).parameters.values() if p.name != "self"]
    positional = [_strategy_for(hints[p.name]) for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    keywords = {p.name: _strategy_for(hints[p.name]) for p in params if p.kind is p.KEYWORD_ONLY}
    return st.builds(cls, *positional, **keywords)


def test_every_error_class_is_found() -> None:
    names = {c.__name__ for c in ERRORS}
    # A few from each layer, so that a broken module walk cannot pass with an empty list.
    assert {
        "ImageShiftLimitError",
        "StageLimitError",
        "SerialEMCommandError",
        "ConfigError",
        "ImpossibleSettingsError",
        "FormatError",
        "TornStackError",
        "RunAborted",
        "SEMerror",
        "OutputExistsError",
    } <= names
    assert len(ERRORS) >= 50


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__qualname__)
@settings(max_examples=25)
@given(data=st.data())
def test_error_round_trips_through_pickle(cls: type[BaseException], data: st.DataObject) -> None:
    error = data.draw(_constructor(cls))
    error.add_note("raised in a worker")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert str(copy) == str(error)
    assert copy.args == error.args
    # repr keeps NaN equal to itself and Paths comparable.
    assert repr(vars(copy)) == repr(vars(error))


def _shift_beyond_limit() -> None:
    raise ImageShiftLimitError((12.5, -3.0), 10.0)


def _stage_beyond_travel() -> None:
    raise StageLimitError("tilt", 75.0, -70.0, 70.0, "deg")


def test_errors_raised_in_a_worker_process_reach_the_parent_intact() -> None:
    with ProcessPoolExecutor(max_workers=1) as pool:
        with pytest.raises(ImageShiftLimitError) as shift:
            pool.submit(_shift_beyond_limit).result()
        with pytest.raises(StageLimitError) as stage:
            pool.submit(_stage_beyond_travel).result()
    assert shift.value.requested_um == (12.5, -3.0)
    assert shift.value.limit_um == 10.0
    assert "exceeds the limit of ±10 µm" in str(shift.value)
    assert (stage.value.axis, stage.value.requested) == ("tilt", 75.0)
    assert (stage.value.low, stage.value.high) == (-70.0, 70.0)
