"""A small seeded fuzz of the parsers in the suite: any input gives a result or a typed error.

bench/fuzz_parsers.py runs the real campaign (over 80,000 inputs in capped worker processes);
this keeps the property in every test run with a few hundred hypothesis-made inputs.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tomopilot.core.errors import TomopilotError
from tomopilot.io.mdoc import tilt_series_from_mdoc
from tomopilot.io.mrc_header import mrc_header_info
from tomopilot.io.navigator import read_nav
from tomopilot.io.pacetomo_targets import read_targets_file
from tomopilot.io.star import read_tilt_series_star
from tomopilot.io.tia import read_tia
from tomopilot.io.tia_ser import read_ser_frame, read_ser_header, write_ser

MDOC = (
    "PixelSpacing = 5.4\nVoltage = 300\n\n[T = SerialEM: x  Tilt axis angle = 85.3]\n\n"
    "[ZValue = 0]\nTiltAngle = 0.0\nExposureDose = 3\nPriorRecordDose = 0\nTargetDefocus = -4\n"
    "SubFramePath = D:\\f\\a.tif\nNumSubFrames = 8\nDateTime = 30-Nov-15  15:20:38\n\n"
    "[ZValue = 1]\nTiltAngle = 3.0\nExposureDose = 3\nPriorRecordDose = 3\nTargetDefocus = -4\n"
    "SubFramePath = D:\\f\\b.tif\nNumSubFrames = 8\nDateTime = 30-Nov-15  15:21:38\n"
)
STAR = (
    "data_TS_01\n\nloop_\n_rlnMicrographMovieName #1\n_rlnTomoNominalStageTiltAngle #2\n"
    "a.tif 0.0\nb.tif 3.0\n"
)
NAV = (
    "AdocVersion = 2.00\n\n[Item = 1]\nStageXYZ = 1 2 0\nNumPts = 1\nType = 0\nGroupID = 7\n"
    "DrawnID = 3\nPtsX = 1\nPtsY = 2\n"
)
TARGETS = "_set maxDefocus = -4.5\n\n_tgt = 001\ntgtfile = a.mrc\nSSX = 0\nSSY = 0\nskip = False\n"
HOSTILE = ["", "nan", "1e999", "9" * 400, "9" * 5000, "\x00", "µ", "b", "-1", "=", "[", "data_"]


def _text_case(seed: str) -> st.SearchStrategy[bytes]:
    lines = seed.split("\n")

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        out = list(lines)
        for _ in range(draw(st.integers(1, 3))):
            index = draw(st.integers(0, len(out) - 1))
            action = draw(st.sampled_from(["value", "delete", "repeat", "byte"]))
            if action == "value":
                key = out[index].split("=", 1)[0]
                out[index] = f"{key}= {draw(st.sampled_from(HOSTILE))}"
            elif action == "delete":
                del out[index]
                if not out:
                    out = [""]
            elif action == "repeat":
                out[index:index] = [out[index]] * draw(st.integers(1, 50))
            else:
                out[index] += draw(st.sampled_from(["\udcb5", "\t", " 1 2 3", "'"]))
        return "\n".join(out).encode("utf-8", "surrogateescape")

    return mutate()


def _bytes_case(seed: bytes) -> st.SearchStrategy[bytes]:
    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(seed)
        for _ in range(draw(st.integers(1, 4))):
            position = draw(st.integers(0, len(data) - 1))
            action = draw(st.sampled_from(["flip", "word", "cut"]))
            if action == "flip":
                data[position] ^= 1 << draw(st.integers(0, 7))
            elif action == "word":
                value = draw(st.sampled_from([0, -1, 2**31 - 1, 65535, 10**9]))
                data[position : position + 4] = struct.pack("<i", value)[: len(data) - position]
            else:
                del data[max(1, position) :]
        return bytes(data)

    return mutate()


def _check(parse: Callable[[Path], object], path: Path, data: bytes) -> None:
    path.write_bytes(data)
    with contextlib.suppress(TomopilotError):  # anything else fails the test
        parse(path)


_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.parametrize(
    ("name", "seed", "parse"),
    [
        ("ts.mrc.mdoc", MDOC, tilt_series_from_mdoc),
        ("ts.star", STAR, read_tilt_series_star),
        ("nav.nav", NAV, read_nav),
        ("L_tgts.txt", TARGETS, read_targets_file),
    ],
)
def test_text_parsers_give_results_or_typed_errors(
    tmp_path: Path, name: str, seed: str, parse: Callable[[Path], object]
) -> None:
    @_SETTINGS
    @given(_text_case(seed))
    def run(data: bytes) -> None:
        _check(parse, tmp_path / name, data)

    run()


def _ser_seed(folder: Path) -> bytes:
    frames = np.arange(2 * 4 * 5, dtype=np.int32).reshape(2, 4, 5)
    return write_ser(folder / "seed.ser", frames, pixel_size_m=1e-5).read_bytes()


def _read_ser(path: Path) -> object:
    header = read_ser_header(path)
    return [read_ser_frame(path, i, header) for i in range(header.n_frames)]


@pytest.mark.parametrize("kind", ["tia", "ser", "mrc"])
def test_binary_parsers_give_results_or_typed_errors(tmp_path: Path, kind: str) -> None:
    import mrcfile

    if kind == "tia":
        seed, parse = struct.pack("<hii", 6, 5, 4) + bytes(80), read_tia
    elif kind == "ser":
        seed, parse = _ser_seed(tmp_path), _read_ser
    else:
        with mrcfile.new(tmp_path / "seed.mrc") as mrc:
            mrc.set_data(np.zeros((2, 4, 5), np.int16))
        seed, parse = (tmp_path / "seed.mrc").read_bytes(), mrc_header_info

    @_SETTINGS
    @given(_bytes_case(seed))
    def run(data: bytes) -> None:
        _check(parse, tmp_path / f"input.{kind}", data)

    run()
