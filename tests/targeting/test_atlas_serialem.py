"""``tomopilot atlas run`` on a microscope driven through SerialEM: the twin serves SerialEM's
Python module (``serialem: {module: twin}``), tomopilot's SerialEM backend drives it, and the
twin's ground truth (replayed from its command log) judges the montage, the presets and the
targets in the stage frame the Navigator holds."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import mdocfile
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from tomopilot.cli.main import app
from tomopilot.instrument import LowDoseArea
from tomopilot.instrument.serialem import open_serialem, resolve_address
from tomopilot.instrument.serialem.session import SerialEMCommandError
from tomopilot.instrument.twin import TwinConfig, TwinMicroscope
from tomopilot.instrument.twin.optics import MAGNIFICATIONS
from tomopilot.instrument.twin.specimen import GridSpecimen
from tomopilot.instrument.twin_serialem import make_module
from tomopilot.io.navigator import read_nav
from tomopilot.targeting.nav_items import nav_items

TWIN: dict[str, Any] = {
    "seed": 4,
    "stage": {"drift_nm_s": 0.0, "drift_floor_nm_s": 0.0, "jump_probability": 0.0},
    "specimen": {"kind": "grid", "mesh_diameter_um": 420.0},
    "presets": {
        "record": {"camera_area_px": [2048, 2048], "binning": 8},
        "preview": {"camera_area_px": [2048, 2048], "binning": 8, "exposure_s": 0.5},
        "view": {"camera_area_px": [2048, 2048], "binning": 8},
        "search": {"camera_area_px": [4096, 4096], "binning": 16},
    },
}
HOLE_TOLERANCE_UM = 0.2  # the beam on a target: this close to an intact hole's centre (r 1 µm)
SQUARE_TOLERANCE_UM = 3.0  # a square's centre in the atlas: two atlas pixels (1.5 µm)
PIECE_TOLERANCE_PX = 1.5  # a montage piece's aligned place against where it truly was


def _rotation_matrix(pixel_a: float, rotation_deg: float) -> np.ndarray:
    r = math.radians(rotation_deg)
    rot = np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])
    return rot / (pixel_a * 1e-4)


@pytest.fixture(scope="module")
def atlas_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TwinMicroscope, str]:
    folder = tmp_path_factory.mktemp("atlas_serialem")
    config = folder / "atlas.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "microscope": {"backend": "serialem", "serialem": {"module": "twin"}, "twin": TWIN},
                "atlas": {"extent_um": 450.0, "squares": 2, "targets_per_square": 3},
                "presets": {"Grid": {"binning": 16}, "Square": {"binning": 4}},
            }
        )
    )
    out = folder / "out"
    result = CliRunner().invoke(app, ["atlas", "run", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    replayed = TwinMicroscope(
        TwinConfig.model_validate(TWIN), command_log=out / "twin_commands.jsonl"
    )
    return out, replayed, result.output


def test_the_backend_reads_the_magnification_table_and_puts_search_back() -> None:
    twin = TwinMicroscope(TwinConfig.model_validate(TWIN))
    module = make_module(twin, properties={"MaximumTiltAngle": twin.stage.limits.tilt_deg})
    scope = open_serialem(resolve_address(), module=module)
    assert scope.optics.magnifications() == MAGNIFICATIONS
    for mag in (115, 510, 2250, 53000):
        assert scope.optics.pixel_size_a(mag) == pytest.approx(twin.optics.pixel_size_a(mag))
    assert twin.optics.preset(LowDoseArea.SEARCH).magnification == 2250  # walked, put back
    with pytest.raises(SerialEMCommandError, match="not in the microscope's magnification"):
        scope.optics.pixel_size_a(12345)
    scope.close()
    # A table with a gap (an index SerialEM refuses, as on some microscopes) goes on past it.
    gappy = _RefusingIndex(make_module(twin), refused=5)
    scope = open_serialem(resolve_address(), module=gappy)
    assert scope.optics.magnifications() == MAGNIFICATIONS[:4] + MAGNIFICATIONS[5:]
    scope.close()


class _RefusingIndex:
    """The module, except that ``SetMagIndex`` refuses one index."""

    def __init__(self, module: Any, refused: int) -> None:
        self._module, self._refused = module, refused

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def SetMagIndex(self, index: int) -> Any:
        if int(index) == self._refused:
            raise self._module.SEMerror(f"Mag index {index} is not available")
        return self._module.SetMagIndex(index)


def test_presets_are_on_the_microscopes_magnification_table(
    atlas_run: tuple[Path, TwinMicroscope, str],
) -> None:
    out, twin, output = atlas_run
    # Grid and Square went to Search at magnifications of the table SerialEM reported (walked
    # with SetMagIndex), with SerialEM's pixel there; the backend put Search back at the end.
    search = [e for e in twin.ground_truth.exposures if e.area == "Search"]
    pixels = sorted({round(e.pixel_size_a, 3) for e in search})
    calibrated = twin.optics.pixel_size_a
    assert pixels == sorted({round(16 * calibrated(115), 3), round(4 * calibrated(510), 3)})
    assert {115, 510} <= set(MAGNIFICATIONS)
    assert "restored the S magnification" in output
    assert twin.optics.preset(LowDoseArea.SEARCH).magnification == 2250
    frame = mdocfile.read(out / "grid_atlas.mrc.mdoc")
    pieces = frame[frame["PieceCoordinates"].notna()]
    assert set(pieces["Magnification"]) == {115}
    assert np.allclose(pieces["PixelSpacing"].astype(float), 16 * calibrated(115), rtol=1e-4)


def test_montage_pieces_sit_where_the_twin_took_them(
    atlas_run: tuple[Path, TwinMicroscope, str],
) -> None:
    out, twin, _ = atlas_run
    frame = mdocfile.read(out / "grid_atlas.mrc.mdoc")
    pieces = frame[frame["PieceCoordinates"].notna()]
    tiles = [e for e in twin.ground_truth.exposures if e.area == "Search"][: len(pieces)]
    matrix = _rotation_matrix(tiles[0].pixel_size_a, tiles[0].rotation_deg)
    # Where each piece's content truly lies (its true centre against its stage position) in
    # montage pixels, relative to piece 0, against the aligned minus nominal coordinates.
    true_px = np.array(
        [
            matrix @ (np.array(t.specimen_centre_um[:2]) - np.array(t.stage_reported[:2]))
            for t in tiles
        ]
    )
    true_offset = true_px - true_px[0]
    nominal = np.array([tuple(c)[:2] for c in pieces["PieceCoordinates"]], float)
    aligned = np.array([tuple(c)[:2] for c in pieces["AlignedPieceCoords"]], float)
    stage = np.array([tuple(c)[:2] for c in pieces["StagePosition"]], float)
    assert np.allclose(stage, [t.stage_reported[:2] for t in tiles], atol=1e-3)
    error = np.linalg.norm(aligned - nominal - true_offset, axis=1)
    assert error.max() < PIECE_TOLERANCE_PX, (error, true_offset)


def test_squares_and_targets_are_at_the_twins_squares_and_holes(
    atlas_run: tuple[Path, TwinMicroscope, str],
) -> None:
    out, twin, _ = atlas_run
    grid = twin.specimen
    assert isinstance(grid, GridSpecimen)
    truth = twin.ground_truth.exposures
    items = nav_items(read_nav(out / "grid_atlas.nav"))
    # Squares: Navigator stage positions + the atlas's stage error (true − reported, the
    # tiles' median) against the twin's square centres.
    tiles = [e for e in truth if e.area == "Search" and e.pixel_size_a > 5000]
    offset = np.median(
        [np.subtract(t.specimen_centre_um[:2], t.stage_reported[:2]) for t in tiles], axis=0
    )
    squares = grid.squares()
    usable = [i for i in items if i.label.startswith("Sq0")]
    assert len(usable) >= 10
    n_whole = 0
    for item in usable:
        centre = np.asarray(item.stage_xyz_um[:2]) + offset
        true = min(squares, key=lambda s: math.dist(centre, s.centre_um))
        if true.open_fraction == 1.0:  # a square cut by the grid's rim has another centre
            n_whole += 1
            assert math.dist(centre, true.centre_um) < SQUARE_TOLERANCE_UM, item.label
    assert n_whole >= 8
    # Targets: each Navigator target (stage + image shift) was visited with a Preview centred
    # on it; the beam's true centre then lay on an intact hole's centre, and the target plus
    # that visit's stage error (true − reported − image shift) is the same hole.
    targets = [i for i in items if i.label.startswith("T")]
    assert len(targets) >= 4
    previews = [e for e in truth if e.area == "Preview"]
    for item in targets:
        xy = np.asarray(item.stage_xyz_um[:2])
        visit = min(
            previews,
            key=lambda e: math.dist(np.add(e.stage_reported[:2], e.image_shift_true_um), xy),
        )
        true_centre = np.asarray(visit.specimen_centre_um[:2])
        holes = grid.holes((xy[0] - 4, xy[0] + 4, xy[1] - 4, xy[1] + 4))
        gaps = np.hypot(*(holes.centres_um - true_centre).T)
        k = int(np.argmin(gaps))
        assert holes.intact[k] and gaps[k] < HOLE_TOLERANCE_UM, (item.label, gaps[k])
        stage_error = true_centre - np.add(visit.stage_reported[:2], visit.image_shift_true_um)
        assert math.dist(xy + stage_error, holes.centres_um[k]) < HOLE_TOLERANCE_UM
