"""Image formation on the twin: specimen → phase → CTF → attenuation → expected counts.

1. :mod:`~tomopilot.instrument.twin.coarse_grid`: rays through a coarse grid of the field find
   where they meet the specimen; from the material they cross comes the zero-loss transmission
   exp(−t_ice/λ_ice − t_C/λ_C) (t along the beam, so a slab of normal thickness t contributes
   t/cos θ), and the depth map gives the defocus (defocus = focus + z, z along the beam: a point
   higher up the column is more underfocused).
2. :mod:`~tomopilot.instrument.twin.phase_spectrum`: the blobs in view are splatted on the pixel
   grid per blob width; in Fourier space each group is convolved with its Gaussian, scaled by
   the interaction constant, and the amorphous-ice texture is added as a fresh realisation (it
   carries Thon rings, not tracking signal).
3. :mod:`~tomopilot.instrument.twin.defocus_planes`: the weak-phase contrast 2·(CTF ⊛ φ) is
   formed on a few defocus planes spanning the field and blended pixel by pixel, so a tilted
   specimen shows its defocus gradient; the CTF includes astigmatism, temporal and spatial
   envelopes and the detector's pixel MTF.
4. Expected electrons per pixel = dose × transmission × (1 + contrast) × beam factors.

Noise, gain and defects are added by the camera (camera.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tomopilot.imaging.blas_threads import single_threaded_blas
from tomopilot.instrument.twin.coarse_grid import mfp_scale, trace_columns, upsample
from tomopilot.instrument.twin.config import OpticsConfig
from tomopilot.instrument.twin.defocus_planes import (
    ctf_optics,
    defocus_planes,
    fourier_terms,
    weak_phase_contrast,
)
from tomopilot.instrument.twin.field import FieldOfView
from tomopilot.instrument.twin.phase_spectrum import phase_spectrum
from tomopilot.instrument.twin.pose import StagePose
from tomopilot.instrument.twin.row_bands import in_bands
from tomopilot.instrument.twin.specimen.base import Specimen
from tomopilot.instrument.twin.surface import trace_rays


@dataclass(frozen=True)
class CentreTruth:
    """What is true at the centre of a field: defocus and its gradient, material, position."""

    defocus_um: float
    defocus_gradient_um_per_px: tuple[float, float]
    transmission: float
    path_nm: float
    specimen_um: tuple[float, float, float]
    lab_z_um: float


@dataclass
class Rendered:
    """A noise-free image and what is true about it.

    ``expected`` holds mean electrons per pixel over the padded field; ``pad`` pixels on each
    side are margin (for movie shifts) and not part of the camera image.
    """

    expected: NDArray[np.float32]
    pad: int
    centre: CentreTruth
    defocus_range_um: tuple[float, float]
    n_defocus_planes: int

    @property
    def image(self) -> NDArray[np.float32]:
        """The camera part of the field (margins cropped)."""
        p = self.pad
        return (
            self.expected[p : self.expected.shape[0] - p, p : self.expected.shape[1] - p]
            if p
            else self.expected
        )


@single_threaded_blas()  # its small products must not leave BLAS threads spinning
def render(
    specimen: Specimen,
    pose: StagePose,
    field: FieldOfView,
    focus_um: float,
    optics: OpticsConfig,
    electrons_per_pixel: float,
    rng: np.random.Generator,
    *,
    pad: int = 0,
    beam_factor: float = 1.0,
    plane_tolerance_rad: float = 1.5,
) -> Rendered:
    """Render the expected electrons per pixel of one exposure (see module docstring)."""
    inner = field
    fov = field.padded(pad) if pad else field
    ny, nx = fov.shape
    px_a = fov.pixel_size_a
    lens = ctf_optics(optics)

    # 1. Coarse ray tracing: transmission, path length and depth along the beam.
    columns = trace_columns(specimen, pose, fov, optics)

    # 2. Blobs → phase in Fourier space.
    terms = fourier_terms((ny, nx), px_a, optics.astigmatism_um, optics.astigmatism_angle_deg, lens)
    spectrum = phase_spectrum(
        specimen,
        pose,
        fov,
        columns.specimen_bounds_um,
        columns.path_ref_nm,
        optics.voltage_kv,
        rng,
    )

    # 3. Weak-phase contrast on defocus planes, blended per pixel.
    d_lo = focus_um + columns.height_range_um[0]
    d_hi = focus_um + columns.height_range_um[1]
    planes = defocus_planes(d_lo, d_hi, px_a, lens.wavelength_a, plane_tolerance_rad)
    contrast = weak_phase_contrast(
        spectrum,
        terms,
        planes,
        (ny, nx),
        focus_um,
        focus_um + columns.lab_z_um,
        columns.depth_coeffs,
        columns.step,
    )

    # 4. Expected electrons.
    t_full = upsample(columns.transmission, columns.step, (ny, nx))
    m_full = upsample(columns.modulation, columns.step, (ny, nx), nearest=True)
    expected = contrast  # reused in place: 1 + 2·contrast·modulation, clipped, attenuated
    counts_scale = np.float32(electrons_per_pixel * beam_factor)

    def to_electrons(a: int, b: int) -> None:
        band = expected[a:b]
        band *= m_full[a:b]
        band *= np.float32(2.0)
        band += np.float32(1.0)
        np.maximum(band, np.float32(0.0), out=band)
        band *= t_full[a:b]
        band *= counts_scale

    in_bands(ny, nx, to_electrons)

    return Rendered(
        expected=expected,
        pad=pad,
        centre=centre_truth(specimen, pose, inner, focus_um, optics),
        defocus_range_um=(float(d_lo), float(d_hi)),
        n_defocus_planes=len(planes),
    )


def centre_truth(
    specimen: Specimen, pose: StagePose, field: FieldOfView, focus_um: float, optics: OpticsConfig
) -> CentreTruth:
    """The truth at a field's centre, without rendering the image."""
    ny, nx = field.shape
    centre = trace_rays(
        specimen, pose, np.array([field.centre_um[0]]), np.array([field.centre_um[1]])
    )
    col_axis = field.lab_from_pixels(np.array([nx / 2 + 1.0]), np.array([ny / 2]))
    row_axis = field.lab_from_pixels(np.array([nx / 2]), np.array([ny / 2 + 1.0]))
    dz_col = trace_rays(specimen, pose, *col_axis).lab_z_um[0] - centre.lab_z_um[0]
    dz_row = trace_rays(specimen, pose, *row_axis).lab_z_um[0] - centre.lab_z_um[0]
    cmat = specimen.columns(centre.specimen_x_um, centre.specimen_y_um)
    cos_c = float(centre.cos_incidence[0])
    scale = mfp_scale(optics)
    transmission = 0.0
    if not cmat.opaque[0]:
        transmission = math.exp(
            -cmat.ice_nm[0] / cos_c / (optics.ice_mfp_nm * scale)
            - cmat.carbon_nm[0] / cos_c / (optics.carbon_mfp_nm * scale)
        )
    return CentreTruth(
        defocus_um=float(focus_um + centre.lab_z_um[0]),
        defocus_gradient_um_per_px=(float(dz_col), float(dz_row)),
        transmission=transmission,
        path_nm=float((cmat.ice_nm[0] + cmat.carbon_nm[0]) / cos_c),
        specimen_um=(
            float(centre.specimen_x_um[0]),
            float(centre.specimen_y_um[0]),
            float(centre.specimen_z_um[0]),
        ),
        lab_z_um=float(centre.lab_z_um[0]),
    )
