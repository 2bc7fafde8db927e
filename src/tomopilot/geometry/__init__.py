"""Specimen geometry: plane and paraboloid fits, geo points, refineGeo, tilt-axis offset,
eucentricity and beam footprints.

Library code here uses only the Microscope protocol and images; conventions are in
:mod:`tomopilot.geometry.plane_fit` (heights z up, defocus = focus − height).
"""

from tomopilot.geometry.eucentricity import EucentricityResult, eucentricity
from tomopilot.geometry.footprints import (
    ellipse_outline_um,
    footprints_overlap,
    overlapping_pairs,
    points_in_polygon,
)
from tomopilot.geometry.geo_points import lamella_geo_points, pattern_geo_points, unsafe_geo_points
from tomopilot.geometry.measure_geometry import GeometryMeasurement, GeoReading, measure_geometry
from tomopilot.geometry.plane_fit import (
    FitWarning,
    GeometryFitError,
    ParaboloidFit,
    PlaneFit,
    angles_from_slopes,
    fit_paraboloid,
    fit_plane,
    fit_surface,
    slopes_from_angles,
)
from tomopilot.geometry.refine_geometry import GeometryRefinement, refine_geometry
from tomopilot.geometry.tilt_axis_offset import (
    AxisOffsetResult,
    apply_tilt_axis_offset,
    fit_axis_offset,
    measure_tilt_axis_offset,
)

__all__ = [
    "AxisOffsetResult",
    "EucentricityResult",
    "FitWarning",
    "GeoReading",
    "GeometryFitError",
    "GeometryMeasurement",
    "GeometryRefinement",
    "ParaboloidFit",
    "PlaneFit",
    "angles_from_slopes",
    "apply_tilt_axis_offset",
    "ellipse_outline_um",
    "eucentricity",
    "fit_axis_offset",
    "fit_paraboloid",
    "fit_plane",
    "fit_surface",
    "footprints_overlap",
    "lamella_geo_points",
    "measure_geometry",
    "measure_tilt_axis_offset",
    "overlapping_pairs",
    "pattern_geo_points",
    "points_in_polygon",
    "refine_geometry",
    "slopes_from_angles",
    "unsafe_geo_points",
]
