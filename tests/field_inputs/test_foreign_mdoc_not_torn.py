"""A SerialEM mdoc whose last section has no trailing blank line is not "torn by a crash"."""

from __future__ import annotations

from pathlib import Path

import pytest

from tomopilot.io.mdoc_writer import (
    CorruptMdocError,
    MdocHeader,
    MdocSection,
    MdocWriter,
    TornMdocError,
    repair_mdoc,
)

SERIALEM = (
    "PixelSpacing = 5.4\r\nImageFile = TS_01.mrc\r\nImageSize = 928 928\r\nDataMode = 1\r\n\r\n"
    "[T = SerialEM: Digitized on EMBL Krios   30-Nov-15  15:14:20    ]\r\n\r\n"
    "[T =     Tilt axis angle = 85.3, binning = 4  spot = 8  camera = 0]\r\n\r\n"
    "[ZValue = 0]\r\nTiltAngle = 0.0\r\nExposureDose = 3\r\n\r\n"
    "[ZValue = 1]\r\nTiltAngle = 3.0\r\nExposureDose = 3\r\n"  # SerialEM: no blank line at the end
)


def test_serialem_file_is_refused_as_foreign_not_torn(tmp_path: Path) -> None:
    path = tmp_path / "TS_01.mrc.mdoc"
    path.write_bytes(SERIALEM.encode())
    for action in (lambda: MdocWriter.open(path), lambda: repair_mdoc(path, 1)):
        with pytest.raises(CorruptMdocError) as caught:
            action()
        assert not isinstance(caught.value, TornMdocError)
        assert "not written by tomopilot" in str(caught.value)
        assert "crash" not in str(caught.value)
    assert path.read_bytes() == SERIALEM.encode()  # nothing rewritten


def test_our_own_torn_file_is_still_called_torn(tmp_path: Path) -> None:
    path = tmp_path / "ts.mrc.mdoc"
    header = MdocHeader(pixel_spacing_a=2.5, image_file="ts.mrc", image_size_xy=(6, 4), data_mode=1)
    writer = MdocWriter(path, header)
    writer.append(MdocSection(tilt_angle_deg=0.0))
    with path.open("a") as handle:
        handle.write("[ZValue = 1]\nTiltAngle = 3\n")
    with pytest.raises(TornMdocError, match="crash"):
        MdocWriter.open(path)
    assert repair_mdoc(path, 1).n_sections == 1
