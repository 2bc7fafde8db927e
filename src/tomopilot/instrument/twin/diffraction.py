"""A synthetic continuous-rotation electron-diffraction (microED) series, as a Ceta camera in TIA
records it.

A crystal with a given unit cell, in a seeded random orientation, turns about a rotation axis in
the detector plane at a constant speed while the camera integrates one frame per oscillation
range. Every frame is built from physics, not painted:

- Reciprocal-lattice points ``s = R(ω) U B h`` (1/Å) within the resolution limit, with
  Wilson-distributed intensities (exponential, Friedel pairs equal) and a Debye-Waller falloff
  ``exp(-B s² / 2)``.
- Each point's excitation error ``ζ = |k_in + s| - 1/λ`` against the Ewald sphere of the
  relativistic wavelength; the rocking curve is Gaussian in ζ, so the share of a reflection
  recorded in a frame is the change of the normal CDF of ζ/σ over that frame's rotation (sums to
  one over a full crossing).
- Spots land where ``k_in + s`` meets the detector at the camera length, as Gaussians.
- A flat background, an inelastic halo around the direct beam and the (bright, overflowing)
  direct beam; Poisson electron counting, a gain in counts per electron and Gaussian read noise
  around a dark level subtracted to zero, as gain/dark-corrected Ceta int32 frames are.
- A few cosmic-ray tracks (large positive counts), and in chosen frames a cosmic ray that hit
  the dark reference, which leaves a large negative pixel after dark subtraction: the artefact
  Leginon's 2000-count offset cap exists for.

Pixel coordinates are continuous, with pixel ``(row r, column c)`` covering ``[c, c+1) x
[r, r+1)``; ``x`` is the column (fast) axis and ``y`` the row (slow) axis, and millimetres on the
detector are these coordinates times the pixel size, measured from the image corner.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tomopilot.core.files import atomic_write_bytes
from tomopilot.core.units import electron_wavelength_a

__all__ = [
    "DiffractionSeries",
    "DiffractionSeriesSpec",
    "Reflections",
    "UnitCell",
    "simulate_diffraction_series",
    "write_tia_series",
]

_SPOT_HALF_WINDOW_PX = 4
_SUBSTEPS = 4


@dataclass(frozen=True, kw_only=True)
class UnitCell:
    """A crystal unit cell: edge lengths in Å, angles in degrees."""

    a_a: float = 11.0
    b_a: float = 14.0
    c_a: float = 19.0
    alpha_deg: float = 90.0
    beta_deg: float = 97.0
    gamma_deg: float = 90.0

    def reciprocal_basis(self) -> NDArray[np.float64]:
        """The matrix B whose columns are a*, b*, c* (1/Å) in the crystal's Cartesian frame."""
        al, be, ga = (math.radians(v) for v in (self.alpha_deg, self.beta_deg, self.gamma_deg))
        cz2 = (
            1
            - math.cos(be) ** 2
            - ((math.cos(al) - math.cos(be) * math.cos(ga)) / math.sin(ga)) ** 2
        )
        if cz2 <= 0:
            raise ValueError(f"the cell angles {al, be, ga} do not make a cell")
        real = np.array(
            [
                [self.a_a, 0.0, 0.0],
                [self.b_a * math.cos(ga), self.b_a * math.sin(ga), 0.0],
                [
                    self.c_a * math.cos(be),
                    self.c_a * (math.cos(al) - math.cos(be) * math.cos(ga)) / math.sin(ga),
                    self.c_a * math.sqrt(cz2),
                ],
            ]
        )  # rows a, b, c
        return np.linalg.inv(real)  # columns a*, b*, c*: real @ inv(real) = I


@dataclass(frozen=True, kw_only=True)
class DiffractionSeriesSpec:
    """Everything that defines a synthetic series; equal specs give identical series."""

    n_frames: int = 10
    shape: tuple[int, int] = (256, 256)
    voltage_kv: float = 200.0
    camera_length_mm: float = 700.0
    pixel_size_mm: float = 0.112
    binning: int = 8
    start_angle_deg: float = -30.0
    osc_range_deg: float = 0.5
    exposure_s: float = 0.5
    rotation_axis_deg: float = 20.0
    beam_center_px: tuple[float, float] | None = None
    cell: UnitCell = field(default_factory=UnitCell)
    d_min_a: float = 0.9
    b_factor_a2: float = 4.0
    mean_reflection_electrons: float = 1500.0
    rocking_width_inv_a: float = 0.0015
    spot_sigma_px: float = 0.9
    background_electrons: float = 0.3
    halo_electrons: float = 6.0
    halo_radius_px: float = 25.0
    direct_beam_electrons: float = 60000.0
    direct_beam_sigma_px: float = 1.5
    gain_counts_per_electron: float = 26.0
    read_noise_counts: float = 30.0
    cosmic_rays_per_frame: float = 1.5
    cosmic_ray_counts: tuple[float, float] = (3000.0, 30000.0)
    dark_spike_frames: tuple[int, ...] = (0,)
    dark_spike_counts: float = 10000.0
    seed: int = 0

    @property
    def beam_center(self) -> tuple[float, float]:
        """The direct beam ``(x, y)`` in pixels; by default a little off the image centre."""
        if self.beam_center_px is not None:
            return self.beam_center_px
        return (0.52 * self.shape[1], 0.47 * self.shape[0])

    @property
    def rotation_speed_deg_s(self) -> float:
        """Goniometer speed: one oscillation range per exposure."""
        return self.osc_range_deg / self.exposure_s

    def frame_start_deg(self, index: int) -> float:
        """The goniometer angle at the start of frame ``index`` (0-based)."""
        return self.start_angle_deg + index * self.osc_range_deg


@dataclass(frozen=True)
class Reflections:
    """Ground truth: one row per reflection recorded (partly) in one frame."""

    frame: NDArray[np.int64]
    hkl: NDArray[np.int64]
    x_px: NDArray[np.float64]
    y_px: NDArray[np.float64]
    electrons: NDArray[np.float64]
    partiality: NDArray[np.float64]


@dataclass(frozen=True)
class DiffractionSeries:
    """A synthetic series: int32 frames ``(n, rows, columns)`` and their ground truth."""

    spec: DiffractionSeriesSpec
    frames: NDArray[np.int32]
    wavelength_a: float
    orientation: NDArray[np.float64]
    reflections: Reflections
    cosmic_rays: NDArray[np.float64]  # rows of (frame, row, column, counts)


def _normal_cdf(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Φ(x) from the Abramowitz-Stegun 7.1.26 erf (absolute error below 1.5e-7)."""
    z = np.abs(x) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    erf = 1.0 - poly * np.exp(-z * z)
    return 0.5 * (1.0 + np.sign(x) * erf)


def _rotation(axis: NDArray[np.float64], angle_deg: float) -> NDArray[np.float64]:
    """Right-handed rotation matrix about a unit ``axis`` (Rodrigues)."""
    angle = math.radians(angle_deg)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return (
        math.cos(angle) * np.eye(3)
        + math.sin(angle) * cross
        + (1 - math.cos(angle)) * np.outer(axis, axis)
    )


def _random_orientation(rng: np.random.Generator) -> NDArray[np.float64]:
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _lattice(
    spec: DiffractionSeriesSpec, rng: np.random.Generator
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """Indices, crystal-frame vectors (1/Å) and intensities (electrons) of all reflections."""
    basis = spec.cell.reciprocal_basis()
    s_max = 1.0 / spec.d_min_a
    limits = [math.ceil(s_max * np.linalg.norm(np.linalg.inv(basis)[i])) for i in range(3)]
    ranges = [np.arange(-m, m + 1) for m in limits]
    hkl = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, 3)
    vectors = hkl @ basis.T
    length = np.linalg.norm(vectors, axis=1)
    keep = (length > 0) & (length <= s_max)
    hkl, vectors, length = hkl[keep], vectors[keep], length[keep]
    # Friedel mates share one Wilson draw: index both by the member whose first non-zero is > 0.
    first = hkl[np.arange(len(hkl)), np.argmax(hkl != 0, axis=1)]
    canonical = np.where((first > 0)[:, None], hkl, -hkl)
    _, inverse = np.unique(canonical, axis=0, return_inverse=True)
    wilson = rng.exponential(size=int(inverse.max()) + 1)[inverse.ravel()]
    intensity = (
        spec.mean_reflection_electrons * wilson * np.exp(-spec.b_factor_a2 * length**2 / 2.0)
    )
    return hkl.astype(np.int64), vectors, intensity


def _frame_reflections(
    spec: DiffractionSeriesSpec,
    index: int,
    crystal: tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]],
    k: float,
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Reflections recorded in one frame: indices, (x, y) pixels, electrons, partiality."""
    hkl, vectors, intensity = crystal
    axis_rad = math.radians(spec.rotation_axis_deg)
    axis = np.array([math.cos(axis_rad), math.sin(axis_rad), 0.0])
    start = spec.frame_start_deg(index)
    angles = start + spec.osc_range_deg * np.linspace(0.0, 1.0, _SUBSTEPS + 1)
    k_in = np.array([0.0, 0.0, k])
    cdf, positions = [], []
    for angle in angles:
        k_out = vectors @ _rotation(axis, float(angle)).T + k_in
        zeta = np.linalg.norm(k_out, axis=1) - k
        cdf.append(_normal_cdf(zeta / spec.rocking_width_inv_a))
        positions.append(k_out)
    weights = np.abs(np.diff(np.stack(cdf), axis=0))  # (substeps, N)
    partiality = weights.sum(axis=0)
    mid = [(positions[j] + positions[j + 1]) / 2 for j in range(_SUBSTEPS)]
    k_out = (
        np.einsum("jn,jnc->nc", weights, np.stack(mid)) / np.maximum(partiality, 1e-300)[:, None]
    )
    forward = k_out[:, 2] > 0
    scale = spec.camera_length_mm / spec.pixel_size_mm / np.where(forward, k_out[:, 2], 1.0)
    bx, by = spec.beam_center
    x = bx + k_out[:, 0] * scale
    y = by + k_out[:, 1] * scale
    electrons = intensity * partiality
    rows, columns = spec.shape
    keep = forward & (electrons > 0.5) & (x >= 0) & (x < columns) & (y >= 0) & (y < rows)
    return hkl[keep], np.stack([x[keep], y[keep]], axis=1), electrons[keep], partiality[keep]


def _expected_electrons(
    spec: DiffractionSeriesSpec, xy: NDArray[np.float64], electrons: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Mean electrons per pixel: background, halo, direct beam and Bragg spots."""
    rows, columns = spec.shape
    yy, xx = np.mgrid[0:rows, 0:columns] + 0.5
    bx, by = spec.beam_center
    r2 = (xx - bx) ** 2 + (yy - by) ** 2
    sigma2 = spec.direct_beam_sigma_px**2
    image: NDArray[np.float64] = np.asarray(
        spec.background_electrons
        + spec.halo_electrons / (1.0 + r2 / spec.halo_radius_px**2)
        + spec.direct_beam_electrons / (2 * math.pi * sigma2) * np.exp(-r2 / (2 * sigma2)),
        dtype=np.float64,
    )
    offsets = np.arange(-_SPOT_HALF_WINDOW_PX, _SPOT_HALF_WINDOW_PX + 1)
    cols = np.floor(xy[:, 0]).astype(np.int64)[:, None, None] + offsets[None, None, :]
    rws = np.floor(xy[:, 1]).astype(np.int64)[:, None, None] + offsets[None, :, None]
    dx = cols + 0.5 - xy[:, 0, None, None]
    dy = rws + 0.5 - xy[:, 1, None, None]
    s2 = spec.spot_sigma_px**2
    profile = np.exp(-(dx**2 + dy**2) / (2 * s2)) / (2 * math.pi * s2)
    values = electrons[:, None, None] * profile
    inside = (cols >= 0) & (cols < columns) & (rws >= 0) & (rws < rows)
    cols, rws = np.broadcast_arrays(cols, rws)
    np.add.at(image, (rws[inside], cols[inside]), values[inside])
    return image


def _add_cosmic_rays(
    spec: DiffractionSeriesSpec, counts: NDArray[np.float64], index: int, rng: np.random.Generator
) -> list[tuple[float, float, float, float]]:
    """Add a few short straight cosmic-ray tracks; return (frame, row, column, counts) per hit."""
    rows, columns = spec.shape
    hits: list[tuple[float, float, float, float]] = []
    for _ in range(rng.poisson(spec.cosmic_rays_per_frame)):
        energy = rng.uniform(*spec.cosmic_ray_counts)
        length = int(rng.integers(1, 4))
        direction = rng.uniform(0, 2 * math.pi)
        r0, c0 = rng.uniform(0, rows), rng.uniform(0, columns)
        for step in range(length):
            r = int(np.clip(r0 + step * math.sin(direction), 0, rows - 1))
            c = int(np.clip(c0 + step * math.cos(direction), 0, columns - 1))
            counts[r, c] += energy / length
            hits.append((index, r, c, energy / length))
    if index in spec.dark_spike_frames:
        r, c = int(rng.integers(rows)), int(rng.integers(columns))
        counts[r, c] -= spec.dark_spike_counts
        hits.append((index, r, c, -spec.dark_spike_counts))
    return hits


def simulate_diffraction_series(spec: DiffractionSeriesSpec | None = None) -> DiffractionSeries:
    """Simulate a gain/dark-corrected int32 diffraction series (see the module docstring).

    Parameters
    ----------
    spec
        The series to make; the defaults give ten 256×256 frames of 0.5° at 200 kV.

    Returns
    -------
    DiffractionSeries
        Frames and ground truth; the same ``spec`` (seed included) gives identical output.
    """
    spec = spec or DiffractionSeriesSpec()
    if spec.n_frames < 1 or min(spec.shape) < 8:
        raise ValueError("a series needs at least one frame of at least 8×8 pixels")
    seeds = np.random.SeedSequence(spec.seed)
    crystal_rng = np.random.default_rng(seeds.spawn(1)[0])
    orientation = _random_orientation(crystal_rng)
    hkl, vectors, intensity = _lattice(spec, crystal_rng)
    crystal = (hkl, vectors @ orientation.T, intensity)
    wavelength_a = electron_wavelength_a(spec.voltage_kv)
    k = 1.0 / wavelength_a
    frames = np.empty((spec.n_frames, *spec.shape), dtype=np.int32)
    table: list[tuple[NDArray[np.generic], ...]] = []
    rays: list[tuple[float, float, float, float]] = []
    for index in range(spec.n_frames):
        rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(1, index)))
        f_hkl, xy, electrons, partiality = _frame_reflections(spec, index, crystal, k)
        table.append((np.full(len(f_hkl), index), f_hkl, xy, electrons, partiality))
        expected = _expected_electrons(spec, xy, electrons)
        counts = spec.gain_counts_per_electron * rng.poisson(expected).astype(np.float64)
        counts += rng.normal(0.0, spec.read_noise_counts, size=spec.shape)
        rays.extend(_add_cosmic_rays(spec, counts, index, rng))
        limits = np.iinfo(np.int32)
        frames[index] = np.clip(np.rint(counts), limits.min, limits.max).astype(np.int32)
    xy_all = np.concatenate([t[2] for t in table]).reshape(-1, 2)
    reflections = Reflections(
        frame=np.concatenate([t[0] for t in table]).astype(np.int64),
        hkl=np.concatenate([t[1] for t in table]).reshape(-1, 3).astype(np.int64),
        x_px=xy_all[:, 0].astype(np.float64),
        y_px=xy_all[:, 1].astype(np.float64),
        electrons=np.concatenate([t[3] for t in table]).astype(np.float64),
        partiality=np.concatenate([t[4] for t in table]).astype(np.float64),
    )
    return DiffractionSeries(
        spec=spec,
        frames=frames,
        wavelength_a=wavelength_a,
        orientation=orientation,
        reflections=reflections,
        cosmic_rays=np.array(rays, dtype=np.float64).reshape(-1, 4),
    )


def write_tia_series(
    series: DiffractionSeries, folder: Path | str, *, prefix: str = "diffraction"
) -> list[Path]:
    """Write the frames as TIA raw ``.bin`` files, as TIA exports a Ceta series.

    Files are ``<prefix>_001.bin``, ``<prefix>_002.bin``..., numbered from 1, each a 10-byte
    header (type code 6 = int32, columns, rows) and little-endian int32 pixels.

    Returns
    -------
    list of pathlib.Path
        The files, in series order.
    """
    folder = Path(folder)
    paths = []
    for number, frame in enumerate(series.frames, start=1):
        rows, columns = frame.shape
        raw = struct.pack("<hii", 6, columns, rows) + frame.astype("<i4").tobytes()
        paths.append(atomic_write_bytes(folder / f"{prefix}_{number:03d}.bin", raw))
    return paths
