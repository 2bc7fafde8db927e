"""The twin's synthetic microED series: Bragg geometry, partiality, noise, artefacts."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from tomopilot.instrument.twin.diffraction import (
    DiffractionSeries,
    DiffractionSeriesSpec,
    UnitCell,
    simulate_diffraction_series,
    write_tia_series,
)
from tomopilot.io.tia import read_tia

QUIET = {"cosmic_rays_per_frame": 0.0, "dark_spike_frames": ()}


@pytest.fixture(scope="module")
def long_series() -> DiffractionSeries:
    """Twenty 0.5° frames, so that many reflections cross the Ewald sphere inside the scan."""
    return simulate_diffraction_series(
        DiffractionSeriesSpec(n_frames=20, shape=(128, 128), seed=3, **QUIET)
    )


def test_same_seed_same_series_other_seed_other_series() -> None:
    spec = DiffractionSeriesSpec(n_frames=2, shape=(48, 48), seed=11)
    first, again = simulate_diffraction_series(spec), simulate_diffraction_series(spec)
    other = simulate_diffraction_series(DiffractionSeriesSpec(n_frames=2, shape=(48, 48), seed=12))
    assert first.frames.dtype == np.int32
    assert np.array_equal(first.frames, again.frames)
    assert not np.array_equal(first.frames, other.frames)


def test_reciprocal_basis_is_dual_to_the_cell() -> None:
    cell = UnitCell(a_a=8.0, b_a=9.0, c_a=10.0, alpha_deg=80.0, beta_deg=95.0, gamma_deg=105.0)
    basis = cell.reciprocal_basis()
    real = np.linalg.inv(basis)  # rows a, b, c
    assert np.allclose(np.linalg.norm(real, axis=1), [8.0, 9.0, 10.0])
    assert math.degrees(math.acos(real[1] @ real[2] / 90.0)) == pytest.approx(80.0)
    assert np.allclose(real @ basis, np.eye(3))


def test_spots_obey_bragg_at_the_camera_length(long_series: DiffractionSeries) -> None:
    spec, table = long_series.spec, long_series.reflections
    s = np.linalg.norm(table.hkl @ spec.cell.reciprocal_basis().T, axis=1)
    two_theta = 2 * np.arcsin(long_series.wavelength_a * s / 2)
    beam_x, beam_y = spec.beam_center
    radius_mm = np.hypot(table.x_px - beam_x, table.y_px - beam_y) * spec.pixel_size_mm
    error = np.abs(radius_mm / (spec.camera_length_mm * np.tan(two_theta)) - 1)
    assert len(error) > 200
    assert np.median(error) < 1e-4
    assert np.max(error) < 3e-3  # a spot is recorded over a small arc of the frame's rotation
    assert long_series.wavelength_a == pytest.approx(0.0250793, abs=1e-7)  # 200 kV


def test_a_full_crossing_of_the_ewald_sphere_is_recorded_once(
    long_series: DiffractionSeries,
) -> None:
    table = long_series.reflections
    crossings: dict[tuple[int, ...], list[tuple[int, float, float]]] = defaultdict(list)
    for frame, hkl, part, electrons in zip(
        table.frame, table.hkl, table.partiality, table.electrons, strict=True
    ):
        crossings[tuple(hkl)].append((int(frame), float(part), float(electrons / part)))
    sums = [
        sum(p for _, p, _ in rows)
        for rows in crossings.values()
        if min(f for f, _, _ in rows) > 0 and max(f for f, _, _ in rows) < 19 and rows[0][2] > 1000
    ]
    assert len(sums) >= 10
    assert np.median(sums) == pytest.approx(1.0, abs=2e-3)
    assert min(sums) > 0.97


def test_spot_centroids_are_where_the_geometry_puts_them(long_series: DiffractionSeries) -> None:
    spec, table, frames = long_series.spec, long_series.reflections, long_series.frames
    beam_x, beam_y = spec.beam_center
    offsets = []
    for j in np.flatnonzero(table.electrons > 400):
        x, y, frame = table.x_px[j], table.y_px[j], table.frame[j]
        same = table.frame == frame
        if np.sum(np.hypot(table.x_px[same] - x, table.y_px[same] - y) < 8) > 1:
            continue  # a neighbour would pull the centroid
        column, row = int(x), int(y)
        if math.hypot(x - beam_x, y - beam_y) < 15 or not (6 <= column < 122 and 6 <= row < 122):
            continue
        image = frames[frame].astype(np.float64)
        weights = np.clip(
            image[row - 3 : row + 4, column - 3 : column + 4]
            - np.median(image[row - 6 : row + 7, column - 6 : column + 7]),
            0,
            None,
        )
        rows, columns = np.mgrid[row - 3 : row + 4, column - 3 : column + 4] + 0.5
        offsets.append(
            (
                (weights * columns).sum() / weights.sum() - x,
                (weights * rows).sum() / weights.sum() - y,
            )
        )
    assert len(offsets) >= 5
    assert np.max(np.abs(offsets)) < 0.2  # pixels


def test_noise_is_read_noise_around_zero_after_dark_subtraction() -> None:
    blank = DiffractionSeriesSpec(
        n_frames=1,
        shape=(128, 128),
        mean_reflection_electrons=0.0,
        background_electrons=0.0,
        halo_electrons=0.0,
        direct_beam_electrons=0.0,
        **QUIET,
    )
    frame = simulate_diffraction_series(blank).frames[0].astype(np.float64)
    assert abs(frame.mean()) < 1.0
    assert frame.std() == pytest.approx(blank.read_noise_counts, rel=0.03)
    assert -6 * blank.read_noise_counts < frame.min() < -3 * blank.read_noise_counts


def test_cosmic_rays_and_dark_reference_spikes(small_series: DiffractionSeries) -> None:
    rays = small_series.cosmic_rays
    frames = small_series.frames
    positive = rays[rays[:, 3] > 0]
    assert len(positive) >= 1
    for frame, row, column, counts in positive:
        assert frames[int(frame), int(row), int(column)] > 0.5 * counts
    negative = rays[rays[:, 3] < 0]
    assert negative[:, 0].tolist() == [0.0]  # the dark-reference spike of frame 0
    assert frames[0].min() == pytest.approx(-10000, abs=200)
    assert frames[1:].min() > -300  # other frames: read noise only
    assert frames.max() > 65535  # the direct beam is brighter than uint16 holds


def test_tia_files_of_the_twin_read_back_exactly(
    tmp_path: Path, small_series: DiffractionSeries
) -> None:
    paths = write_tia_series(small_series, tmp_path, prefix="run")
    assert [p.name for p in paths] == [f"run_{i:03d}.bin" for i in range(1, 6)]
    for path, frame in zip(paths, small_series.frames, strict=True):
        data = read_tia(path)
        assert data.dtype == np.int32
        assert np.array_equal(data, frame)
