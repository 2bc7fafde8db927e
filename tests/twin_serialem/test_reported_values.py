"""What each reporting command returns: how many values, of which type (SerialEM's help)."""

from __future__ import annotations

import pytest

from tomopilot.instrument.twin_serialem import SerialEMModule

# command, arguments, number of reported values (str marks text values)
REPORTS: list[tuple[str, tuple[object, ...], tuple[type, ...]]] = [
    ("ReportStageXYZ", (), (float,) * 3),
    ("ReportTiltAngle", (), (float,)),
    ("ReportImageShift", (), (float,) * 6),
    ("ReportSpecimenShift", (), (float,) * 2),
    ("ReportDefocus", (), (float,)),
    ("ReportAbsoluteFocus", (), (float,)),
    ("ReportTargetDefocus", (), (float,)),
    ("ReportAutoFocus", (), (float,) * 2),
    ("ReportFocusDrift", (), (float,) * 2),
    ("ReportMag", (), (float,) * 2),
    ("ReportLowDose", (), (float,) * 2),
    ("ReportExposure", ("R",), (float,) * 2),
    ("CameraProperties", (), (float,) * 4),
    ("ReportCameraProperty", (1, "CameraSizeX"), (float,)),
    ("ImageProperties", ("A",), (float,) * 6),
    ("ImageConditions", ("A",), (float,) * 2),
    ("ReportMeanCounts", ("A",), (float,)),
    ("ReportMeanCounts", ("A", 2), (float,) * 4),
    ("ReportAlignShift", (), (float,) * 6),
    ("ReportISforBufferShift", (), (float,) * 2),
    ("ReportTiltAxisOffset", (), (float,) * 2),
    ("ReportClock", (), (float,)),
    ("ReportDateTime", (), (float,) * 2),
    ("ReportDirectory", (), (str,)),
    ("ReportCurrentBuffer", (), (str,)),
    ("ReportFrameSavingPath", (), (str,)),
    ("ReportFileNumber", (), (float,)),
    ("ReportNavItem", (), (float,) * 5),
    ("ReportOtherItem", (1,), (float,) * 5),
    ("ReportNumTableItems", (), (float,)),
    ("ReportItemAcquire", (1,), (float,)),
    ("ReportGroupStatus", (), (float,) * 3),
    ("ReportIfNavOpen", (), (float,)),
    ("ReportIfNavAcquiring", (), (float,) * 2),
    ("ReportNavFile", (), (str,)),
    ("ReportLDDefocusOffset", ("V",), (float,)),
    ("ReportAxisPosition", ("F",), (float,) * 2),
    ("ReportIlluminatedArea", (), (float,)),
    ("ReportProperty", ("StageRelaxation",), (float,)),
    ("ReportUserSetting", ("TargetDefocus",), (float,)),
    ("ReportColumnOrGunValve", (), (float,)),
    ("ReportComaVsISmatrix", (), (float,) * 4),
    ("SpecimenToCameraMatrix", (0,), (float,) * 4),
    ("CameraToSpecimenMatrix", (1,), (float,) * 4),
    ("SpecimenToISMatrix", (0,), (float,) * 4),
    ("ISToSpecimenMatrix", (0,), (float,) * 4),
    ("SpecimenToStageMatrix", (0,), (float,) * 4),
    ("AreDewarsFilling", (), (float,)),
    ("IsFEGFlashingAdvised", (), (float,)),
    ("IsVariableDefined", ("x",), (float,)),
    ("IsVersionAtLeast", (40100,), (float,)),
    ("GetUniqueNavID", (), (float,)),
    ("DoesFileExist", ("nothing.mrc",), (float,)),
    ("YesNoBox", ("ok?",), (float,)),
    ("SetLowDoseMode", (1,), (float,)),
    ("ImageShiftByMicrons", (0.1, 0.0), (float,)),
    ("ReportStageBusy", (), (float,)),
]


@pytest.fixture
def prepared(sem: SerialEMModule) -> SerialEMModule:
    sem.R()
    sem.Copy("A", "B")
    sem.R()
    sem.AlignTo("B")
    sem.G(-2)  # a drift measurement for ReportFocusDrift
    sem.G()
    sem.AddStagePosAsNavPoint(1.0, 2.0, 0.0)
    return sem


def test_every_report_returns_its_documented_values(prepared: SerialEMModule) -> None:
    for name, args, kinds in REPORTS:
        value = getattr(prepared, name)(*args)
        values = value if isinstance(value, tuple) else (value,)
        assert len(values) == len(kinds), name
        assert all(type(v) is k for v, k in zip(values, kinds, strict=True)), (name, values)
        if len(kinds) == 1:
            assert not isinstance(value, tuple), name  # one value comes back bare
