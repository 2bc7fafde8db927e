"""Configuration of the twin's specimens: a FIB-milled lamella and a holey-carbon film.

Magnitudes follow ``reference/twin_magnitudes.md`` §3: lamellae 100–300 nm thick with 8–15°
pretilt, 10–20 µm wide; holey films R1.2/1.3 (pitch 2.5 µm) or R2/1 with 50–200 nm of ice.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from tomopilot.core.config import ConfigModel


class ParticleConfig(ConfigModel):
    """Macromolecules in the ice: ribosome-like clusters of Gaussian blobs."""

    density_per_um3: float = Field(default=1500.0, ge=0)
    radius_nm: float = Field(default=12.5, gt=0, description="overall particle radius")
    contrast_v: float = Field(
        default=2.7, ge=0, description="mean inner potential of protein above ice (V)"
    )


class CrowdingConfig(ConfigModel):
    """The crowd of smaller proteins that fills cytoplasm: a fixed fine texture.

    Rendered only at fine pixels (≤ ``max_pixel_a``), where it matters; it is what tracking
    locks on to between the larger particles.
    """

    density_per_um3: float = Field(default=5e5, ge=0)
    mass_kda: float = Field(default=60.0, gt=0)
    contrast_v: float = Field(default=2.7, ge=0)
    max_pixel_a: float = Field(default=16.0, gt=0)


class MembraneConfig(ConfigModel):
    """Lipid membranes: small vesicles and large organelle envelopes (spherical shells)."""

    vesicles_per_um2: float = Field(default=0.6, ge=0)
    vesicle_radius_nm: tuple[float, float] = (20.0, 80.0)
    organelles_per_um2: float = Field(default=0.05, ge=0)
    organelle_radius_nm: tuple[float, float] = (250.0, 600.0)
    thickness_nm: float = Field(default=4.0, gt=0)
    contrast_v: float = Field(default=2.0, ge=0)


class ContaminationConfig(ConfigModel):
    """Crystalline-ice contamination on the surface: dense, opaque-ish spheres."""

    per_um2: float = Field(default=0.02, ge=0)
    radius_nm: tuple[float, float] = (60.0, 300.0)


class LamellaConfig(ConfigModel):
    """A FIB-milled lamella.

    The lamella's mid-plane height above the grid plane is
    ``z = tan(pretilt) · (y cos(rotation) − x sin(rotation))`` relative to its centre, the same
    plane PACEtomo fits. Its window spans ``width_um`` along x (the tilt axis) and
    ``length_um`` along y; beyond ±x lies the dark bulk, beyond +y the bright milled trench and
    beyond −y bulk again.
    """

    kind: Literal["lamella"] = "lamella"
    centre_um: tuple[float, float] = (0.0, 0.0)
    thickness_nm: float = Field(default=200.0, ge=20, le=1000)
    pretilt_deg: float = Field(default=10.0, ge=-30, le=30)
    rotation_deg: float = Field(default=0.0, ge=-180, le=180)
    width_um: float = Field(default=14.0, gt=0)
    length_um: float = Field(default=12.0, gt=0)
    bulk_thickness_nm: float = Field(default=3000.0, gt=0)
    particles: ParticleConfig = ParticleConfig()
    crowding: CrowdingConfig = CrowdingConfig()
    membranes: MembraneConfig = MembraneConfig()
    contamination: ContaminationConfig = ContaminationConfig()
    ice_texture_rad2_a2_per_nm: float = Field(
        default=1e-4,
        ge=0,
        description="phase spectral density of amorphous ice per nm of thickness (Thon rings)",
    )


class HoleyFilmConfig(ConfigModel):
    """A holey-carbon film on a grid square, optionally bent like a paraboloid.

    Holes of ``hole_diameter_um`` sit on a square lattice of pitch
    ``hole_diameter_um + hole_spacing_um`` rotated by ``lattice_angle_deg``. The film height is
    ``bend_um · (r / (grid_hole_um / 2))²`` over the grid square; outside lie the grid bars.
    """

    kind: Literal["holey_film"] = "holey_film"
    centre_um: tuple[float, float] = (0.0, 0.0)
    hole_diameter_um: float = Field(default=1.2, gt=0)
    hole_spacing_um: float = Field(default=1.3, gt=0)
    lattice_angle_deg: float = Field(default=7.0, ge=-90, le=90)
    lattice_offset_um: tuple[float, float] = (0.3, -0.2)
    ice_thickness_nm: float = Field(default=80.0, ge=0, le=1000)
    carbon_thickness_nm: float = Field(default=12.0, ge=0, le=200)
    bend_um: float = Field(default=0.0, ge=-20, le=20)
    grid_pitch_um: float = Field(default=85.0, gt=0)
    grid_bar_um: float = Field(default=25.0, gt=0)
    particles: ParticleConfig = ParticleConfig(density_per_um3=800.0)
    crowding: CrowdingConfig = CrowdingConfig(density_per_um3=0.0)
    membranes: MembraneConfig = MembraneConfig(vesicles_per_um2=0.0, organelles_per_um2=0.0)
    contamination: ContaminationConfig = ContaminationConfig(per_um2=0.01)
    ice_texture_rad2_a2_per_nm: float = Field(default=1e-4, ge=0)

    @property
    def pitch_um(self) -> float:
        """Centre-to-centre distance of neighbouring holes."""
        return self.hole_diameter_um + self.hole_spacing_um

    @property
    def grid_hole_um(self) -> float:
        """Side of the open grid square."""
        return self.grid_pitch_um - self.grid_bar_um


SpecimenConfig = Annotated[LamellaConfig | HoleyFilmConfig, Field(discriminator="kind")]
