"""The defocus of a Record from its own Thon rings (no extra dose).

Used by ``fused`` (closed-loop focus at every Record) and by the run's ``refineGeo`` step (the
start-tilt Records of all targets). The fit runs on the central crop, searches ±3 µm around
the focus that was set, and refuses rings too weak to trust.
"""

from __future__ import annotations

from collections import deque

from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.strategies.base import ExposureRequest, Outcome
from tomopilot.imaging.ctf import CtfOptics
from tomopilot.imaging.errors import DefocusFitError
from tomopilot.imaging.estimate_defocus import estimate_defocus
from tomopilot.instrument.types import Image

CTF_MIN_SCORE = 0.3
CTF_CROP_PX = 512
SEARCH_UM = 3.0
# Used only when a backend does not report the microscope's state (a Krios's values).
DEFAULT_VOLTAGE_KV = 300.0
DEFAULT_CS_MM = 2.7
AMPLITUDE_CONTRAST = 0.1


def voltage_kv(image: Image) -> float:
    """The accelerating voltage the image was taken at (kV)."""
    return image.state.voltage_kv if image.state is not None else DEFAULT_VOLTAGE_KV


def image_optics(image: Image) -> CtfOptics:
    """The CTF optics of the microscope that took ``image`` (its voltage and Cs)."""
    state = image.state
    cs = state.cs_mm if state is not None and state.cs_mm is not None else DEFAULT_CS_MM
    return CtfOptics(voltage_kv=voltage_kv(image), cs_mm=cs, amplitude_contrast=AMPLITUDE_CONTRAST)


# The last few fits, by Record: the strategy (fused) and the engine (the mdoc's defocus,
# refineGeo) both ask for the same Record's fit; the second asks the first's answer.
_RECENT: deque[tuple[Image, float, CtfOptics, float | None]] = deque(maxlen=4)


def record_defocus_um(
    image: Image, focus_um: float, optics: CtfOptics | None = None
) -> float | None:
    """The Record's defocus (µm, negative = underfocus) fitted near ``focus_um``; None if weak.

    The fit uses the image's own voltage and Cs unless ``optics`` is given. The same Record
    fitted again near the same focus gets the first fit's answer (no second fit)."""
    optics = optics or image_optics(image)
    for seen, focus, seen_optics, result in _RECENT:
        if seen is image and focus == focus_um and seen_optics == optics:
            return result
    result = _fit(image, focus_um, optics)
    _RECENT.append((image, focus_um, optics, result))
    return result


def _fit(image: Image, focus_um: float, optics: CtfOptics) -> float | None:
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
