"""Autoalignment: ``AlignTo`` with trimming and a shift limit, and what it reports.

``AlignTo buf`` cross-correlates the image in A with ``buf`` and, unless ``#N`` = 1, corrects
the field by image shift. Dark borders (rows or columns whose mean is under 10 % of the image's
median, contiguous from an edge: the area outside a small beam, a grid bar) are trimmed from both
images first unless ``#T`` = 1, as SerialEM does. A reference that was itself aligned counts as
shifted by its alignment, so aligning each image to the previous (aligned) one keeps the frame of
the first. ``LimitNextAutoAlign um`` arms a shift limit
for the next alignment: peaks beyond it are ignored; when the strongest peak lies beyond it and
nothing inside stands out from the correlation's noise (6 σ above its mean), nothing is applied
and the reported value is −1.

``ReportAlignShift`` gives the field correction of the last alignment of A: the image shift it
applied, as the content motion in unbinned pixels, in nm along the IS axes, and in nm on the
specimen (x along the tilt axis).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from tomopilot.imaging.errors import NoCorrelationPeakError
from tomopilot.imaging.fourier import taper_mask
from tomopilot.imaging.xcorr import align
from tomopilot.instrument.twin_serialem import calibration as cal
from tomopilot.instrument.twin_serialem.buffers import BufferImage
from tomopilot.instrument.twin_serialem.camera_commands import need
from tomopilot.instrument.twin_serialem.commands import Reported, command
from tomopilot.instrument.twin_serialem.errors import SEMerror
from tomopilot.instrument.twin_serialem.optics_commands import shift_by_units
from tomopilot.instrument.twin_serialem.session import Session

DARK_BORDER_FRACTION = 0.1
MIN_TRIMMED_PX = 32
PEAK_MIN_Z = 6.0  # a peak inside a shift limit must stand this many σ above the CC's mean


def dark_border_box(data: NDArray[np.float32]) -> tuple[slice, slice]:
    """Rows and columns left after cutting dark borders contiguous from the edges."""
    level = float(np.median(data))
    if level <= 0:
        return slice(0, data.shape[0]), slice(0, data.shape[1])

    def span(means: NDArray[np.float64]) -> slice:
        bright = means > DARK_BORDER_FRACTION * level
        idx = np.flatnonzero(bright)
        if not idx.size:
            return slice(0, len(means))
        return slice(int(idx[0]), int(idx[-1]) + 1)

    return span(data.mean(axis=1)), span(data.mean(axis=0))


def _crop_centre(data: NDArray[np.float32], shape: tuple[int, int]) -> NDArray[np.float32]:
    ny, nx = data.shape
    y0, x0 = (ny - shape[0]) // 2, (nx - shape[1]) // 2
    return data[y0 : y0 + shape[0], x0 : x0 + shape[1]]


def _matched(reference: BufferImage, image: BufferImage) -> tuple[NDArray[np.float32], ...]:
    """Both images at A's pixel size and a common centred shape."""
    ref = reference.data.astype(np.float32)
    ratio = reference.pixel_size_a / image.pixel_size_a
    if abs(ratio - 1) > 1e-3:
        ref = ndimage.zoom(ref, ratio, order=1).astype(np.float32)
    data = image.data.astype(np.float32)
    shape = (min(ref.shape[0], data.shape[0]), min(ref.shape[1], data.shape[1]))
    return _crop_centre(ref, shape), _crop_centre(data, shape)


def _trim(ref: NDArray[np.float32], data: NDArray[np.float32]) -> tuple[NDArray[np.float32], ...]:
    r_rows, r_cols = dark_border_box(ref)
    d_rows, d_cols = dark_border_box(data)
    rows = slice(max(r_rows.start, d_rows.start), min(r_rows.stop, d_rows.stop))
    cols = slice(max(r_cols.start, d_cols.start), min(r_cols.stop, d_cols.stop))
    if rows.stop - rows.start < MIN_TRIMMED_PX or cols.stop - cols.start < MIN_TRIMMED_PX:
        return ref, data
    return ref[rows, cols], data[rows, cols]


PADDING = {0: 0.25, -1: 0.5, 1: 0.1}  # zero padding per side, as a fraction of the image


def _padded(data: NDArray[np.float32], fraction: float) -> NDArray[np.float32]:
    """Mean-subtracted, edge-tapered and zero-padded, so the correlation does not wrap around
    (a shift of half the field would otherwise be read with either sign)."""
    ny, nx = data.shape
    taper = taper_mask(data.shape, max(2, min(ny, nx) // 16))
    centred = (data - float(data.mean())) * taper
    py, px = round(ny * fraction), round(nx * fraction)
    return np.pad(centred, ((py, py), (px, px))).astype(np.float32)


def _peak_z_within(ref: NDArray[np.float32], data: NDArray[np.float32], limit_px: float) -> float:
    """Height of the best correlation within ``limit_px`` of zero shift, in σ of the whole map."""
    cc = np.real(np.fft.ifft2(np.fft.fft2(data) * np.conj(np.fft.fft2(ref))))
    cc = ndimage.gaussian_filter(np.fft.fftshift(cc), 1.0)
    ny, nx = cc.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    inside = (xx - nx // 2) ** 2 + (yy - ny // 2) ** 2 <= limit_px**2
    spread = float(cc.std())
    return float((cc[inside].max() - cc.mean()) / spread) if spread > 0 else 0.0


def measure_shift(
    session: Session,
    reference: BufferImage,
    image: BufferImage,
    *,
    trim: bool,
    limit_px: float | None,
    expected_px: tuple[float, float] = (0.0, 0.0),
    sigma_px: float = 0.0,
    padding: int = 0,
) -> tuple[float, float] | None:
    """Content shift (binned px of ``image``) of ``image`` relative to ``reference``."""
    ref, data = _matched(reference, image)
    if trim:
        ref, data = _trim(ref, data)
    fraction = PADDING.get(padding, PADDING[0])
    ref, data = _padded(ref, fraction), _padded(data, fraction)
    radius = 3 * sigma_px if sigma_px > 0 else None
    strongest = align(
        ref, data, low_pass_px=2.0, expected_shift_px=expected_px, max_shift_px=radius, taper_px=0
    )
    if limit_px is None or np.hypot(strongest.shift_x_px, strongest.shift_y_px) <= limit_px:
        return strongest.shift_x_px, strongest.shift_y_px
    if _peak_z_within(ref, data, limit_px) < PEAK_MIN_Z:
        return None  # nothing inside the limit stands out from the correlation noise
    try:
        within = align(ref, data, low_pass_px=2.0, max_shift_px=limit_px, taper_px=0)
    except NoCorrelationPeakError:
        return None
    return within.shift_x_px, within.shift_y_px


def correction_units(
    session: Session, image: BufferImage, shift_px: tuple[float, float]
) -> NDArray[np.float64]:
    """The image-shift change (IS units) that puts the content back where the reference had it.

    Content at p in the reference sits at p + s in A: the field is off by −M⁻¹s, and an image
    shift of +M⁻¹s µm corrects it.
    """
    spec = np.linalg.solve(image.specimen_to_camera, np.asarray(shift_px, np.float64))
    return np.asarray(cal.specimen_to_is(session) @ spec, np.float64)


@command(
    "AlignTo",
    "B|IIIIFFFI",
)
def align_to(
    session: Session,
    letter: str,
    no_image_shift: int = 0,
    no_trim: int = 0,
    periodic: int = 0,
    show: int = 0,
    expected_x: float = 0.0,
    expected_y: float = 0.0,
    sigma: float = 0.0,
    padding: int = 0,
) -> Reported:
    """Align A to ``letter``; correct by image shift unless ``no_image_shift``."""
    if letter == "A":
        raise SEMerror("Cannot align buffer A to itself in script statement: AlignTo A", "AlignTo")
    reference = need(session, letter, "AlignTo")
    image = need(session, "A", "AlignTo")
    limit_um, session.align_limit_um = session.align_limit_um, None
    limit_px = None
    if limit_um is not None:
        limit_px = limit_um * float(np.sqrt(abs(np.linalg.det(image.specimen_to_camera))))
    shift = measure_shift(
        session,
        reference,
        image,
        trim=not no_trim,
        limit_px=limit_px,
        expected_px=(expected_x, expected_y),
        sigma_px=sigma,
        padding=padding,
    )
    if shift is None:
        session.report(f"AlignTo {letter}: no correlation peak within {limit_um} um")
        image.align_shift_px = (0.0, 0.0)
        image.align_is_units = (0.0, 0.0)
        return (-1,)
    # A reference that was itself aligned is taken as aligned (shifted by its own alignment
    # shift), so a chain of alignments to the previous image keeps the first image's frame.
    scale = reference.pixel_size_a / image.pixel_size_a
    shift = (
        shift[0] + reference.align_shift_px[0] * scale,
        shift[1] + reference.align_shift_px[1] * scale,
    )
    delta = correction_units(session, image, shift)
    image.align_shift_px = (float(shift[0]), float(shift[1]))
    image.align_is_units = (float(delta[0]), float(delta[1]))
    if not no_image_shift and shift_by_units(session, delta) == (1,):
        raise SEMerror(
            f"The alignment shift would exceed the image shift limit in script "
            f"statement: AlignTo {letter}",
            "AlignTo",
        )
    return None


@command("ClearAlignment", "|I")
def clear_alignment(session: Session, no_image_shift: int = 0) -> Reported:
    """Forget A's alignment shift, undoing its image shift unless ``no_image_shift``."""
    image = need(session, "A", "ClearAlignment")
    if not no_image_shift and image.align_is_units != (0.0, 0.0):
        shift_by_units(session, -np.asarray(image.align_is_units))
    image.align_shift_px = (0.0, 0.0)
    image.align_is_units = (0.0, 0.0)
    return None


@command("LimitNextAutoAlign", "F")
def limit_next_auto_align(session: Session, limit_um: float) -> Reported:
    """Ignore peaks farther than ``limit_um`` in the next alignment."""
    if limit_um <= 0:
        raise ValueError(f"Shift limit must be positive, not {limit_um}")
    session.align_limit_um = limit_um
    return None


@command("ReportAlignShift")
def report_align_shift(session: Session) -> Reported:
    """(px x, y unbinned; nm along IS axes x, y; nm on the specimen x, y) of A's alignment."""
    image = need(session, "A", "ReportAlignShift")
    units = np.asarray(image.align_is_units)
    spec = cal.is_to_specimen(session) @ units
    px = -image.specimen_to_camera @ spec * image.binning
    session.report(f"Alignment shift {spec[0] * 1e3:.0f} {spec[1] * 1e3:.0f} nm")
    return (
        float(px[0]),
        float(px[1]),
        float(units[0] * 1e3),
        float(units[1] * 1e3),
        float(spec[0] * 1e3),
        float(spec[1] * 1e3),
    )


@command("ReportISforBufferShift", "|B")
def report_is_for_buffer_shift(session: Session, letter: str = "A") -> Reported:
    """The image shift (IS units) equivalent to a buffer's alignment shift."""
    image = need(session, letter, "ReportISforBufferShift")
    return image.align_is_units


@command("AlignBetweenMags", "B|FFF")
def align_between_mags(
    session: Session,
    letter: str,
    centre_x: float = -1.0,
    centre_y: float = -1.0,
    max_shift_um: float = 0.0,
) -> Reported:
    """Align A to a region of a lower-magnification image (``letter``), by image shift.

    The reference is scaled to A's pixel size around ``(centre_x, centre_y)`` (its binned
    pixels; −1 = its centre), cut to A's size and correlated. Reports the shift applied
    (specimen µm x, y).
    """
    reference = need(session, letter, "AlignBetweenMags")
    image = need(session, "A", "AlignBetweenMags")
    if reference.pixel_size_a < image.pixel_size_a * 1.2:
        raise SEMerror(
            f"Buffer {letter} must be at a lower magnification than A in script statement: "
            f"AlignBetweenMags {letter}",
            "AlignBetweenMags",
        )
    ny, nx = reference.data.shape
    cx = nx / 2 if centre_x < 0 else centre_x
    cy = ny / 2 if centre_y < 0 else centre_y
    scale = reference.pixel_size_a / image.pixel_size_a
    h, w = image.data.shape
    rows = cy + (np.arange(h) - h / 2 + 0.5) / scale - 0.5
    cols = cx + (np.arange(w) - w / 2 + 0.5) / scale - 0.5
    grid = np.meshgrid(rows, cols, indexing="ij")
    patch = ndimage.map_coordinates(
        reference.data.astype(np.float32),
        grid,
        order=1,
        mode="constant",
        cval=float(np.mean(reference.data)),
    ).astype(np.float32)
    template = BufferImage(**{**image.__dict__, "data": patch})
    limit_px = None
    if max_shift_um > 0:
        limit_px = max_shift_um * float(np.sqrt(abs(np.linalg.det(image.specimen_to_camera))))
    shift = measure_shift(session, template, image, trim=True, limit_px=limit_px)
    if shift is None:
        return (-1,)
    delta = correction_units(session, image, shift)
    image.align_shift_px = (float(shift[0]), float(shift[1]))
    image.align_is_units = (float(delta[0]), float(delta[1]))
    if shift_by_units(session, delta) == (1,):
        raise SEMerror(
            "The alignment shift would exceed the image shift limit in script statement: "
            f"AlignBetweenMags {letter}",
            "AlignBetweenMags",
        )
    spec = cal.is_to_specimen(session) @ delta
    return float(spec[0]), float(spec[1])
