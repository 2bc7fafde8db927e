"""Our SMV output read by cctbx's own ADSC/SMV reader gives FabIO's pixels and header values.

cctbx (``iotbx.detectors.adsc.ADSCImage`` from the ``cctbx-base`` wheel) is what DIALS's
ancestors and LABELIT read SMV with; FabIO is what most Python tools use. Both must see the
same image in every file ``tomopilot diffraction convert`` writes, and in the real Timepix file.

cctbx runs in its own interpreter: importing it after FabIO's CIF extension crashes the process
(both ship the CBF library's symbols), so the cctbx side reads the files in a subprocess and
hands back the pixels (``.npy``) and its parsed header (JSON).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fabio
import numpy as np
from microed_helpers import metadata_for, options_for

from tomopilot.instrument.twin.diffraction import DiffractionSeries, write_tia_series
from tomopilot.io.smv import read_smv, write_smv
from tomopilot.processing.microed import convert_tia_series

_CCTBX_READER = """
import json, sys, warnings
import numpy as np
warnings.simplefilter("ignore")
from iotbx.detectors.adsc import ADSCImage
out = {}
for path in sys.argv[1:]:
    image = ADSCImage(path)
    image.read()
    pixels = image.get_raw_data().as_numpy_array()
    np.save(path + ".cctbx.npy", pixels)
    out[path] = {"parameters": image.parameters, "size1": image.size1, "size2": image.size2}
print(json.dumps(out))
"""

# The header keys cctbx's ADSC reader parses, with the type it gives them.
CCTBX_KEYS = {
    "HEADER_BYTES": int,
    "SIZE1": int,
    "SIZE2": int,
    "PIXEL_SIZE": float,
    "OSC_START": float,
    "DISTANCE": float,
    "WAVELENGTH": float,
    "BEAM_CENTER_X": float,
    "BEAM_CENTER_Y": float,
    "OSC_RANGE": float,
    "TWOTHETA": float,
    "BYTE_ORDER": str,
    "PHI": float,
}


def _cctbx(*paths: Path) -> dict[Path, tuple[np.ndarray, dict[str, object]]]:
    """Read files with cctbx in a clean interpreter: path → (pixels, parsed header)."""
    done = subprocess.run(
        [sys.executable, "-c", _CCTBX_READER, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    read: dict[Path, tuple[np.ndarray, dict[str, object]]] = {}
    for path in paths:
        entry = result[str(path)]
        pixels = np.load(f"{path}.cctbx.npy")
        # cctbx's grid is (SIZE1, SIZE2) over the file's pixel order: the same bytes as
        # FabIO's (SIZE2, SIZE1) rows.
        read[path] = (pixels.reshape(entry["size2"], entry["size1"]), entry["parameters"])
    return read


def _same_as_fabio(*paths: Path) -> None:
    for path, (pixels, parameters) in _cctbx(*paths).items():
        theirs = fabio.open(str(path))
        assert np.array_equal(pixels, theirs.data)
        assert np.array_equal(pixels, read_smv(path).data)
        checked = 0
        for key, kind in CCTBX_KEYS.items():
            if key in theirs.header:
                assert parameters[key] == kind(theirs.header[key]), key
                checked += 1
        assert checked >= 10


def test_cctbx_reads_our_converted_series_like_fabio(
    tmp_path: Path, small_series: DiffractionSeries
) -> None:
    spec = small_series.spec
    paths = write_tia_series(small_series, tmp_path / "tia")
    out = tmp_path / "out"
    convert_tia_series(paths, out, metadata=metadata_for(spec), options=options_for(spec))
    images = sorted(out.glob("*.img"))
    assert len(images) == spec.n_frames
    _same_as_fabio(*images)


def test_cctbx_reads_both_byte_orders(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 65535, size=(20, 30), endpoint=True)
    header = {
        "DISTANCE": 730.0,
        "PIXEL_SIZE": 0.028,
        "WAVELENGTH": 0.0251,
        "BEAM_CENTER_X": 0.42,
        "BEAM_CENTER_Y": 0.28,
        "OSC_START": -20.0,
        "OSC_RANGE": 0.3,
        "PHI": -20.0,
        "TWOTHETA": 0.0,
        "TIME": 0.5,
    }
    paths = [
        write_smv(tmp_path / f"{order}.img", data.astype(np.uint16), header, byte_order=order)
        for order in ("little_endian", "big_endian")
    ]
    for path, (pixels, parameters) in _cctbx(*paths).items():
        assert np.array_equal(pixels, data)
        assert (parameters["SIZE1"], parameters["SIZE2"]) == (30, 20)
        assert parameters["BYTE_ORDER"] == path.stem
        assert parameters["OSC_START"] == -20.0 and parameters["WAVELENGTH"] == 0.0251
    _same_as_fabio(*paths)


def test_cctbx_reads_the_real_timepix_file_like_fabio(real_data: Path) -> None:
    _same_as_fabio(real_data / "smv" / "TIMEPIX_SU_512-stdgoni_0001.img")
