"""The parsers bench/fuzz_parsers.py mutates, and their seed inputs.

Each target has seeds (valid files: written by our own writers and, when the folder exists, the
real third-party files in ../shared/testdata/real, read in place) and a ``run`` function that
parses one input folder the way tomopilot does. An input is a dict of file name → bytes; the
mutator changes one file of it (the first, unless the target says otherwise).
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

Files = dict[str, bytes]

REAL = Path(
    os.environ.get(
        "TOMOPILOT_REAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "testdata" / "real"
    )
)


@dataclass
class Target:
    """One parser: its kind (``text`` or ``binary``), seeds and how to run it on a folder."""

    name: str
    kind: str
    seeds: list[Files]
    run: Callable[[Path], object]
    mutable: list[str] = field(default_factory=list)  # file names to mutate (default: first)


def _real(folder: str, pattern: str) -> list[bytes]:
    base = REAL / folder
    return [p.read_bytes() for p in sorted(base.glob(pattern))] if base.is_dir() else []


# ---------------------------------------------------------------- text targets


def _mdoc_seeds() -> list[bytes]:
    from tomopilot.io.mdoc_format import MdocHeader, MdocSection
    from tomopilot.io.mdoc_writer import MdocWriter

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ts.mrc.mdoc"
        header = MdocHeader(
            pixel_spacing_a=2.5,
            image_file="ts.mrc",
            image_size_xy=(64, 48),
            data_mode=1,
            titles=("SerialEM: twin   Tilt axis angle = 85.3",),
        )
        writer = MdocWriter(path, header)
        for z, tilt in enumerate((0.0, 3.0, -3.0)):
            writer.append(MdocSection(tilt_angle_deg=tilt, exposure_dose_e_a2=3.0 + z))
        ours = path.read_bytes()
    lines = [
        "PixelSpacing = 5.4",
        "Voltage = 300",
        "",
        "[T = SerialEM: x  Tilt axis angle = 85.3]",
        "",
    ]
    for z, tilt in enumerate((0.0, 3.0, -3.0)):
        lines += [
            f"[ZValue = {z}]",
            f"TiltAngle = {tilt}",
            "PixelSpacing = 5.4",
            "Binning = 4",
            "ExposureDose = 3",
            f"PriorRecordDose = {3 * z}",
            "TargetDefocus = -4",
            f"SubFramePath = D:\\data\\frames\\TS_01_{z:03d}.tif",
            "NumSubFrames = 8",
            f"DateTime = 30-Nov-15  15:2{z}:38",
            "",
        ]
    synthetic = "\r\n".join(lines).encode()
    return [ours, synthetic, *_real("mdoc", "*.mdoc")]


def run_mdoc(folder: Path) -> object:
    """The resume reader (our own files) and the import reader (anyone's)."""
    from tomopilot.io.mdoc_sections import read_mdoc_sections
    from tomopilot.io.mdoc_writer import MdocWriter, parse_mdoc

    path = folder / "ts.mrc.mdoc"
    parse_mdoc(path)
    try:
        MdocWriter.open(path)
    finally:
        doc = read_mdoc_sections(path)
    return doc.kind


def run_mdoc_import(folder: Path) -> object:
    from tomopilot.processing.inputs import ImportOptics, load_tilt_series

    tilt_series, _ = load_tilt_series(
        str(folder / "ts.mrc.mdoc"), project_dir=folder, optics=ImportOptics(pixel_size_a=1.0)
    )
    return len(tilt_series.series[0].tilts)


NAV_SEED = """AdocVersion = 2.00
LastSavedAs = C:\\data\\nav.nav

[Item = 1]
Color = 0
StageXYZ = 10.0 20.0 0.0
NumPts = 1
Regis = 1
Type = 0
GroupID = 7
DrawnID = 3
PtsX = 10.0
PtsY = 20.0

[Item = map]
Color = 2
StageXYZ = 0 0 0
NumPts = 5
Regis = 1
Type = 2
MapID = 12345
MapFile = C:\\data\\map.mrc
PtsX = -1 1 1 -1 -1
PtsY = -1 -1 1 1 -1
"""


def _nav_seeds() -> list[bytes]:
    return [NAV_SEED.encode(), *_real("nav", "*.nav")]


def _nav_xml_seeds() -> list[bytes]:
    from tomopilot.io.navigator import parse_nav_text
    from tomopilot.io.navigator_xml import format_nav_xml

    return [format_nav_xml(parse_nav_text(s.decode("latin-1"))).encode() for s in _nav_seeds()]


def run_nav(folder: Path) -> object:
    from tomopilot.io.navigator import read_nav
    from tomopilot.targeting.nav_items import nav_items

    return len(nav_items(read_nav(folder / "nav.nav")))


TARGETS_SEED = """_set maxDefocus = -4.5
_bset addAF = yes
_set groupSize = 3

_tgt = 001
tgtfile = L03_tgt_001.mrc
tsfile = L03_ts_001.mrc
stageX = 412.5
stageY = -87.5
SSX = 0
SSY = 0
skip = False

_tgt = 002
tgtfile = L03_tgt_002.mrc
tsfile = L03_ts_002.mrc
SSX = 1.84
SSY = -3.07
SPACEscore = 0.63
skip = True

_pbr = 002
SSX = 1.8
SSY = -3.0

_geo = 1
SSX = 2.5
SSY = 4.0
"""


def run_targets(folder: Path) -> object:
    from tomopilot.io.pacetomo_targets import read_targets_file
    from tomopilot.targeting.targets import from_file_data

    path = folder / "L03_tgts.txt"
    return len(from_file_data(read_targets_file(path), path=path).targets)


YAML_SEED = """targets:
  file: L03_tgts.txt
settings:
  startTilt: 0
  maxDefocus: -4
  minDefocus: -3
  stepDefocus: 0.5
  delay_tilt_s: 1.5
  previewAli: false
strategy: pace
output:
  dir: out
  root: L03
save_frames: true
frames_format: eer
"""


def run_yaml(folder: Path) -> object:
    from tomopilot.acquisition.plan.run_config import load_acquire_config

    return load_acquire_config(folder / "acquire.yaml").strategy


_PER_TILT = """# version 50001

data_TS_01

loop_
_rlnMicrographMovieName #1
_rlnTomoTiltMovieFrameCount #2
_rlnTomoNominalStageTiltAngle #3
_rlnTomoNominalTiltAxisAngle #4
_rlnMicrographPreExposure #5
_rlnTomoNominalDefocus #6
frames/TS_01_000_0.0.tif\t8\t0.000000\t85.000000\t0.000000\t-4.000000
frames/TS_01_001_3.0.tif\t8\t3.000000\t85.000000\t3.000000\t-4.000000
frames/TS_01_002_-3.0.tif\t8\t-3.000000\t85.000000\t6.000000\t-4.000000
"""

_GLOBAL_R5 = """# version 50001

data_global

loop_
_rlnTomoName #1
_rlnTomoTiltSeriesStarFile #2
_rlnVoltage #3
_rlnSphericalAberration #4
_rlnAmplitudeContrast #5
_rlnMicrographOriginalPixelSize #6
_rlnTomoHand #7
_rlnOpticsGroupName #8
TS_01\ttilt_series/TS_01.star\t300.000000\t2.700000\t0.100000\t0.675000\t-1.000000\toptics1
"""

_GLOBAL_R4 = """
data_optics

loop_
_rlnOpticsGroupName #1
_rlnOpticsGroup #2
_rlnVoltage #3
_rlnSphericalAberration #4
_rlnAmplitudeContrast #5
_rlnMicrographOriginalPixelSize #6
optics1 1 300.0 2.7 0.1 0.675

data_global

loop_
_rlnTomoName #1
_rlnTomoTiltSeriesStarFile #2
_rlnOpticsGroup #3
_rlnTomoHand #4
TS_01 tilt_series/TS_01.star 1 -1
"""


def _star_seeds() -> list[Files]:
    seeds: list[Files] = []
    per_tilt = [_PER_TILT.encode(), _PER_TILT.replace("data_TS_01", "data_tilt_images").encode()]
    per_tilt += _real("star", "relion5_tutorial_TS_01_tilt.star")
    per_tilt += _real("star", "relion4_import_*.star")
    for index, tilts in enumerate(per_tilt):
        glob = (_GLOBAL_R5 if index % 2 == 0 else _GLOBAL_R4).encode()
        seeds.append({"tilt_series.star": glob, "tilt_series/TS_01.star": tilts})
    return seeds


def run_star(folder: Path) -> object:
    from tomopilot.io.star import read_tilt_series_set

    tilt_series, _ = read_tilt_series_set(folder / "tilt_series.star", project_dir=folder)
    return sum(len(ts.tilts) for ts in tilt_series.series)


# ---------------------------------------------------------------- binary targets


def _tia_seeds() -> list[bytes]:
    rng = np.random.default_rng(1)
    seeds = []
    for code, dtype in ((6, "<i4"), (2, "<u2"), (7, "<f4")):
        pixels = rng.integers(0, 1000, size=(12, 16)).astype(dtype)
        seeds.append(struct.pack("<hii", code, 16, 12) + pixels.tobytes())
    return seeds


def run_tia(folder: Path) -> object:
    from tomopilot.io.tia import read_tia

    return read_tia(folder / "frame.bin").shape


def _ser_seeds() -> list[bytes]:
    from tomopilot.io.tia_ser import write_ser

    rng = np.random.default_rng(2)
    seeds = []
    with tempfile.TemporaryDirectory() as folder:
        for version, dtype in ((0x0210, np.int32), (0x0220, np.uint16)):
            frames = rng.integers(0, 1000, size=(3, 10, 12)).astype(dtype)
            path = write_ser(Path(folder) / "s.ser", frames, pixel_size_m=1e-5, version=version)
            seeds.append(path.read_bytes())
    return seeds


def run_ser(folder: Path) -> object:
    from tomopilot.io.tia_ser import read_ser_frame, read_ser_header

    path = folder / "series.ser"
    header = read_ser_header(path)
    return [read_ser_frame(path, i, header).shape for i in range(header.n_frames)]


def _smv_seeds() -> list[bytes]:
    from tomopilot.io.smv import write_smv

    rng = np.random.default_rng(3)
    seeds = []
    with tempfile.TemporaryDirectory() as folder:
        for order in ("little_endian", "big_endian"):
            data = rng.integers(0, 5000, size=(16, 20)).astype(np.uint16)
            header = {
                "DETECTOR_SN": "unknown",
                "DISTANCE": 730.0,
                "PIXEL_SIZE": 0.028,
                "WAVELENGTH": 0.0251,
                "BEAM_CENTER_X": 0.28,
                "BEAM_CENTER_Y": 0.22,
            }
            path = write_smv(Path(folder) / f"{order}.img", data, header, byte_order=order)
            seeds.append(path.read_bytes())
    return seeds + _real("smv", "*.img")


def run_smv(folder: Path) -> object:
    from tomopilot.io.smv import read_smv

    return read_smv(folder / "frame.img").data.shape


def _stack_seeds() -> list[bytes]:
    from tomopilot.io.mrc_stack import MrcStackWriter

    rng = np.random.default_rng(4)
    seeds = []
    with tempfile.TemporaryDirectory() as folder:
        for index, dtype in enumerate((np.int16, np.float32, np.uint16)):
            path = Path(folder) / f"s{index}.mrc"
            writer = MrcStackWriter(
                path, shape_yx=(12, 16), dtype=dtype, pixel_size_a=2.0, labels=("SerialEM: twin",)
            )
            for _ in range(3):
                writer.append(rng.integers(0, 100, size=(12, 16)).astype(dtype))
            seeds.append(path.read_bytes())
    return seeds


def run_stack_resume(folder: Path) -> object:
    from tomopilot.io.mrc_stack import MrcStackWriter, read_stack_header

    path = folder / "ts.mrc"
    read_stack_header(path)
    writer = MrcStackWriter.open(path)
    return writer.read_section(writer.n_sections - 1).shape if writer.n_sections else None


def _mrc_seeds() -> list[bytes]:
    import mrcfile

    seeds = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.mrc"
        with mrcfile.new(path) as mrc:
            mrc.set_data(np.arange(3 * 8 * 6, dtype=np.uint16).reshape(3, 8, 6))
            mrc.header.cella = (-60.0, -80.0, 0.0)
        seeds.append(path.read_bytes())
    return seeds + _real("mrc", "*.mrc")


def run_mrc(folder: Path) -> object:
    from tomopilot.io.frames import frame_stack_info, read_frames

    path = folder / "movie.mrc"
    frame_stack_info(path)
    return read_frames(path).shape


def _eer_seeds() -> list[bytes]:
    from tomopilot.io.eer import write_eer

    rng = np.random.default_rng(5)
    seeds = []
    with tempfile.TemporaryDirectory() as folder:
        for size in (16, 32):
            events = (rng.random((4, size, size)) < 0.02).astype(np.uint8)
            seeds.append(write_eer(Path(folder) / "m.eer", events, pixel_size_a=1.0).read_bytes())
    return seeds


def run_eer(folder: Path) -> object:
    from tomopilot.io.eer import eer_info, read_eer

    path = folder / "movie.eer"
    eer_info(path)
    return read_eer(path, fractionation=2).shape


def targets() -> list[Target]:
    """Every fuzzed parser with its seeds."""
    targets_file = TARGETS_SEED.encode()
    return [
        Target("mdoc", "text", [{"ts.mrc.mdoc": s} for s in _mdoc_seeds()], run_mdoc),
        Target("mdoc_import", "text", [{"ts.mrc.mdoc": s} for s in _mdoc_seeds()], run_mdoc_import),
        Target("navigator_autodoc", "text", [{"nav.nav": s} for s in _nav_seeds()], run_nav),
        Target("navigator_xml", "text", [{"nav.nav": s} for s in _nav_xml_seeds()], run_nav),
        Target("targets_file", "text", [{"L03_tgts.txt": targets_file}], run_targets),
        Target(
            "star_relion_import",
            "text",
            _star_seeds(),
            run_star,
            mutable=["tilt_series.star", "tilt_series/TS_01.star"],
        ),
        Target(
            "yaml_config",
            "text",
            [{"acquire.yaml": YAML_SEED.encode(), "L03_tgts.txt": targets_file}],
            run_yaml,
        ),
        Target("tia_bin", "binary", [{"frame.bin": s} for s in _tia_seeds()], run_tia),
        Target("tia_ser", "binary", [{"series.ser": s} for s in _ser_seeds()], run_ser),
        Target("smv", "binary", [{"frame.img": s} for s in _smv_seeds()], run_smv),
        Target(
            "mrc_stack_resume", "binary", [{"ts.mrc": s} for s in _stack_seeds()], run_stack_resume
        ),
        Target("mrc_frames", "binary", [{"movie.mrc": s} for s in _mrc_seeds()], run_mrc),
        Target("eer", "binary", [{"movie.eer": s} for s in _eer_seeds()], run_eer),
    ]
