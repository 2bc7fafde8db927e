"""Generators of specimen contents as Gaussian blobs: particles and membrane shells."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

PARTICLE_BLOBS = 6
MEMBRANE_SIGMA_A = 22.0
MEMBRANE_SPACING_A = 40.0


def particle_sigma_a(radius_nm: float) -> float:
    """Width of the blobs that make up a particle of ``radius_nm``."""
    return 0.35 * radius_nm * 10.0


def particles(
    rng: np.random.Generator,
    centres_um: NDArray[np.float64],
    radius_nm: float,
    contrast_v: float,
) -> tuple[NDArray[np.float64], NDArray[np.float32]]:
    """Ribosome-like particles: each a cluster of blobs around its centre (two lobes).

    Returns blob centres (N·k, 3) µm and weights (V·Å³) summing to the particle's potential.
    """
    n = len(centres_um)
    if n == 0:
        return np.zeros((0, 3)), np.zeros(0, np.float32)
    radius_um = radius_nm * 1e-3
    # Two lobes (large and small subunit) along a random axis, blobs scattered inside each.
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    lobe_large = centres_um - 0.25 * radius_um * axis
    lobe_small = centres_um + 0.45 * radius_um * axis
    n_large = PARTICLE_BLOBS - 2
    offsets = rng.normal(scale=0.3 * radius_um, size=(n, PARTICLE_BLOBS, 3))
    lobes = np.concatenate(
        [np.repeat(lobe_large[:, None, :], n_large, 1), np.repeat(lobe_small[:, None, :], 2, 1)],
        axis=1,
    )
    positions = (lobes + offsets).reshape(-1, 3)
    volume_a3 = 4.0 / 3.0 * math.pi * (radius_nm * 10.0) ** 3
    weights = np.full(len(positions), contrast_v * volume_a3 / PARTICLE_BLOBS, np.float32)
    return positions, weights


CROWDING_TILE_UM = 0.5


def crowding_sigma_a(mass_kda: float) -> float:
    """Blob width of a protein of ``mass_kda`` (0.6 × the radius of its volume at 1.21 Å³/Da)."""
    volume_a3 = 1.21 * mass_kda * 1e3
    return 0.6 * float(math.pow(3 * volume_a3 / (4 * math.pi), 1 / 3))


def crowding_weight_v_a3(mass_kda: float, contrast_v: float) -> float:
    """Integrated potential of one crowding protein (V·Å³)."""
    return contrast_v * 1.21 * mass_kda * 1e3


def sphere_shell(
    centre_um: NDArray[np.float64],
    radius_um: float,
    thickness_nm: float,
    contrast_v: float,
    spacing_a: float = MEMBRANE_SPACING_A,
) -> tuple[NDArray[np.float64], NDArray[np.float32]]:
    """A spherical membrane as blobs spread evenly (Fibonacci lattice) over its surface."""
    radius_a = radius_um * 1e4
    n = max(12, int(4.0 * math.pi * radius_a**2 / spacing_a**2))
    i = np.arange(n) + 0.5
    polar = np.arccos(1.0 - 2.0 * i / n)
    azimuth = math.pi * (1.0 + math.sqrt(5.0)) * i
    unit = np.stack(
        [np.sin(polar) * np.cos(azimuth), np.sin(polar) * np.sin(azimuth), np.cos(polar)], axis=1
    )
    points = centre_um + radius_um * unit
    area_per_point = 4.0 * math.pi * radius_a**2 / n
    weight = contrast_v * thickness_nm * 10.0 * area_per_point
    return points, np.full(len(points), weight, np.float32)
