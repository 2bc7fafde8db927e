"""The module's rules: return values, reported values, argument checking, errors, coverage."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tomopilot.instrument.twin import TwinMicroscope
from tomopilot.instrument.twin_serialem import (
    COMMANDS,
    LISTED,
    SEMerror,
    SerialEMModule,
    UnknownCommandError,
    coverage,
    installed,
    make_module,
)


def test_return_values_follow_the_module_rules(sem: SerialEMModule) -> None:
    assert sem.SetDefocus(-2.5) is None  # nothing reported
    value = sem.ReportDefocus()
    assert isinstance(value, float) and value == pytest.approx(-2.5)  # one value: bare float
    xyz = sem.ReportStageXYZ()
    assert isinstance(xyz, tuple) and len(xyz) == 3 and all(isinstance(v, float) for v in xyz)
    assert sem.ReportDirectory() == str(sem.session.directory)  # text stays text
    sem.ReturnAllValuesAsTuples(1)
    assert sem.ReportDefocus() == (pytest.approx(-2.5),)
    sem.ReturnAllValuesAsTuples(0)
    # reported values are cleared before the next command
    sem.ReportTiltAngle()
    assert sem.session.reported == (0.0,)
    assert sem.session.variables["reportedValue1"] == "0"
    sem.SetDefocus(-3.0)
    assert sem.session.reported == ()
    assert "reportedValue1" not in sem.session.variables


def test_unknown_commands_and_bad_arguments_give_serialem_errors(sem: SerialEMModule) -> None:
    with pytest.raises(UnknownCommandError, match="NoSuchCommand"):
        sem.NoSuchCommand()
    assert not hasattr(sem, "NoSuchCommand")
    assert isinstance(UnknownCommandError("x"), SEMerror)
    cases = [
        (lambda: sem.MoveStageTo(1.0), "Too few arguments .* MoveStageTo 1.0"),
        (lambda: sem.TiltTo(1, 0, 2, 3, 4), "Too many arguments .* TiltTo"),
        (lambda: sem.MoveStageTo("a", 1), "Argument 1 must be a number.*MoveStageTo a 1"),
        (lambda: sem.SetBinning("R", 2.0), "Argument 2 must be an integer.*SetBinning"),
        (lambda: sem.OpenNewFile(3), "Argument 1 must be a string.*OpenNewFile"),
        (lambda: sem.AlignTo("Z"), "buffer letter A to T.*AlignTo Z"),
        (lambda: sem.SetExposure("X", 1.0), "parameter set V, F, T, R, P, S.*SetExposure"),
        (lambda: sem.SetDefocus(float("nan")), "not a finite number.*SetDefocus"),
        (lambda: sem.AlignTo("B"), "no image in buffer B.*AlignTo"),
        (lambda: sem.TiltTo(85.0), "Stage position out of range.*TiltTo 85.0"),
        (lambda: sem.MoveStageTo(5000.0, 0.0), "out of range.*MoveStageTo"),
        (lambda: sem.SetBinning("R", 5), "Binning 5 is not available.*SetBinning R 5"),
        (lambda: sem.SetImageShift(40.0, 0.0), "Image shift beyond the limit.*SetImageShift"),
        (lambda: sem.GetVariable("undefinedThing"), "undefinedThing is not defined"),
        (lambda: sem.SetProperty("NoSuchProperty", 1), "NoSuchProperty is not a property"),
        (lambda: sem.SetMag(12345), "Magnification 12345 is not calibrated"),
        (lambda: sem.GoToLowDoseArea("Q"), "Low dose area must be V, F, T, R or S"),
        (lambda: sem.ReportOtherItem(3), "Navigator has no items"),
        (lambda: sem.Delay(5, "fortnights"), "Delay units"),
        (lambda: sem.S(), "There is no file open in script statement: Save"),
    ]
    for call, message in cases:
        with pytest.raises(SEMerror, match=message) as caught:
            call()
        assert caught.value.command, message
        # never one of our internal exception types leaking through
        assert type(caught.value) in (SEMerror, UnknownCommandError)


def test_a_failing_command_leaves_the_microscope_unchanged(sem: SerialEMModule) -> None:
    sem.MoveStageTo(3.0, -2.0)
    with pytest.raises(SEMerror):
        sem.MoveStageTo(3.0, -2000.0)
    assert sem.ReportStageXYZ()[:2] == pytest.approx((3.0, -2.0))


def test_coverage_counts_every_listed_command(sem: SerialEMModule) -> None:
    result = coverage()
    assert result.n_listed == len(LISTED) == len(set(LISTED)) == 157
    assert len(result.implemented) == 157 and result.missing == ()
    assert str(result) == "157/157 listed commands implemented"
    for name in LISTED:  # every listed command is callable on the module
        assert callable(getattr(sem, name))
    assert set(result.extra) <= set(COMMANDS)


def test_installed_makes_import_serialem_find_the_module(
    scope: TwinMicroscope, tmp_path: Path
) -> None:
    module = make_module(scope, directory=tmp_path)
    assert "serialem" not in sys.modules
    with installed(module):
        import serialem  # type: ignore[import-not-found]

        assert serialem is module
        serialem.V()
        image = np.asarray(serialem.bufferImage("A"))
        assert image.shape == (256, 256) and image.mean() > 0
        with pytest.raises(serialem.SEMerror):
            serialem.bufferImage("Q")
    assert "serialem" not in sys.modules
