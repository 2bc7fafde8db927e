"""Configuration of the twin's specimens: a FIB-milled lamella, a holey-carbon film, a whole grid.

Magnitudes follow ``reference/twin_magnitudes.md`` §3: lamellae 100–300 nm thick with 8–15°
pretilt, 10–20 µm wide; holey films R1.2/1.3 (pitch 2.5 µm) or R2/1 with 50–200 nm of ice.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

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


class GridContaminationConfig(ConfigModel):
    """Contamination over a whole grid: small ice crystals and rare large ethane blobs (est.)."""

    crystals_per_um2: float = Field(default=0.002, ge=0)
    crystal_radius_um: tuple[float, float] = (0.15, 0.8)
    blobs_per_um2: float = Field(default=2e-5, ge=0)
    blob_radius_um: tuple[float, float] = (2.0, 7.0)


class GridConfig(ConfigModel):
    """A whole grid: a mesh of square openings covered by a holey-carbon film with ice.

    Magnitudes (``reference/twin_magnitudes.md`` §3): 300 mesh, pitch ≈ 85 µm with 25 µm bars
    (INST, SSV); Quantifoil R2/1, 2 µm holes on a 3 µm pitch (QF); 50–200 nm of ice in holes
    for tomography, and squares too thick to use near one side of the grid. The mesh fills a
    disc of ``mesh_diameter_um`` (a real 3.05 mm grid has ~2.6 mm of mesh inside its rim; tests
    use a few squares). Ice in a square's holes is ``ice_centre_nm`` plus a linear gradient
    across the grid times a per-square log-normal factor; ice on the carbon is
    ``ice_on_carbon_fraction`` of it. Some squares are broken (the film torn away over part of
    the square), some are empty (film but no ice), and single holes may have lost their ice.
    """

    kind: Literal["grid"] = "grid"
    centre_um: tuple[float, float] = (0.0, 0.0)
    mesh_diameter_um: float = Field(default=2600.0, gt=0, le=3050)
    mesh_pitch_um: float = Field(default=85.0, gt=0)
    bar_um: float = Field(default=25.0, gt=0)
    mesh_angle_deg: float = Field(default=3.0, ge=-45, le=45)
    hole_diameter_um: float = Field(default=2.0, gt=0)
    hole_spacing_um: float = Field(default=1.0, gt=0)
    lattice_angle_deg: float = Field(default=7.0, ge=-90, le=90)
    lattice_offset_um: tuple[float, float] = (0.3, -0.2)
    carbon_thickness_nm: float = Field(default=12.0, ge=0, le=200)
    ice_centre_nm: float = Field(default=110.0, ge=0, le=2000)
    ice_gradient_nm_per_mm: float = Field(default=60.0, ge=0)
    ice_gradient_angle_deg: float = Field(default=30.0, ge=-180, le=180)
    square_ice_spread: float = Field(
        default=0.3, ge=0, le=2, description="log-normal σ of each square's ice factor"
    )
    min_ice_nm: float = Field(default=15.0, ge=0)
    ice_on_carbon_fraction: float = Field(
        default=1.0, ge=0, le=2, description="the ice spans the film, holes and carbon (est.)"
    )
    broken_fraction: float = Field(default=0.08, ge=0, le=1)
    empty_fraction: float = Field(default=0.05, ge=0, le=1)
    empty_hole_fraction: float = Field(
        default=0.03, ge=0, le=1, description="holes whose ice is gone in good squares"
    )
    bend_um: float = Field(default=0.0, ge=-20, le=20, description="sag of each square")
    particles: ParticleConfig = ParticleConfig(density_per_um3=800.0)
    particle_max_pixel_a: float = Field(
        default=50.0, gt=0, description="particles are drawn only at pixels this fine or finer"
    )
    contamination: GridContaminationConfig = GridContaminationConfig()
    ice_texture_rad2_a2_per_nm: float = Field(default=1e-4, ge=0)

    @property
    def hole_pitch_um(self) -> float:
        """Centre-to-centre distance of neighbouring holes."""
        return self.hole_diameter_um + self.hole_spacing_um

    @property
    def opening_um(self) -> float:
        """Side of a square's opening between the bars."""
        return self.mesh_pitch_um - self.bar_um

    @model_validator(mode="after")
    def _bars_narrower_than_pitch(self) -> GridConfig:
        if self.bar_um >= self.mesh_pitch_um:
            raise ValueError(
                f"bar_um {self.bar_um:g} must be smaller than mesh_pitch_um {self.mesh_pitch_um:g}"
            )
        return self


SpecimenConfig = Annotated[
    LamellaConfig | HoleyFilmConfig | GridConfig, Field(discriminator="kind")
]
