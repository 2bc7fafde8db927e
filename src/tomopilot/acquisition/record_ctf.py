"""The defocus of a Record from its own Thon rings (no extra dose).

Used by ``fused`` (closed-loop focus at every Record) and by the run's ``refineGeo`` step (the
start-tilt Records of all targets). The fit runs on the central crop, searches ±3 µm around
the focus that was set, and refuses rings too weak to trust.
"""

from __future__ import annotations

from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.strategies.base import ExposureRequest, Outcome
from tomopilot.imaging.ctf import CtfOptics
from tomopilot.imaging.errors import DefocusFitError
from tomopilot.imaging.estimate_defocus import estimate_defocus
from tomopilot.instrument.types import Image

CTF_MIN_SCORE = 0.3
CTF_CROP_PX = 512
SEARCH_UM = 3.0
OPTICS = CtfOptics(voltage_kv=300.0, cs_mm=2.7, amplitude_contrast=0.1)


def record_defocus_um(image: Image, focus_um: float, optics: CtfOptics = OPTICS) -> float | None:
    """The Record's defocus (µm, negative = underfocus) fitted near ``focus_um``; None if weak."""
    data = image.data
    ny, nx = data.shape
    crop = min(CTF_CROP_PX, ny, nx)
    y0, x0 = (ny - crop) // 2, (nx - crop) // 2
    try:
        fit = estimate_defocus(
            data[y0 : y0 + crop, x0 : x0 + crop],
            image.pixel_size_a,
            optics,
            tile_px=min(256, crop),
            defocus_range_um=(focus_um - SEARCH_UM, min(focus_um + SEARCH_UM, -0.3)),
            min_score=CTF_MIN_SCORE,
        )
    except DefocusFitError:
        return None
    return fit.defocus_um


def record_ctf_um(
    image: Image, request: ExposureRequest, outcome: Outcome, settings: AcquisitionSettings
) -> float | None:
    """The Record's defocus for its mdoc and for refineGeo: the strategy's own fit when it made
    one, else ours when doCtfFind, doCtfPlotter or refineGeo asks for it (PACEtomo fits every
    Record)."""
    if outcome.ctf_defocus_um is not None:
        return outcome.ctf_defocus_um
    s = settings
    if s.do_ctffind or s.do_ctfplotter or s.refine_geometry:
        return record_defocus_um(image, request.focus_um)
    return None
