"""Camera and buffer commands: acquire in a parameter set, change the sets, read buffers.

``V``/``View``, ``F``/``Focus``, ``T``/``Trial``, ``R``/``Record``, ``L``/``Preview`` and
``Search`` expose in the matching low-dose area (the twin's presets are SerialEM's parameter
sets) and put the image in A, rolling the buffers. With the column valves closed no electrons
reach the camera: the image is empty and no dose is given.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from tomopilot.instrument.twin_serialem import calibration
from tomopilot.instrument.twin_serialem.buffers import BufferImage
from tomopilot.instrument.twin_serialem.commands import Reported, command
from tomopilot.instrument.twin_serialem.errors import SEMerror
from tomopilot.instrument.twin_serialem.session import SET_AREAS, Session
from tomopilot.instrument.types import LowDoseArea, Movie


def need(session: Session, letter: str, name: str) -> BufferImage:
    """The image in a buffer, or SerialEM's error for an empty one."""
    image = session.buffers.get(letter)
    if image is None:
        raise SEMerror(f"There is no image in buffer {letter} in script statement: {name}", name)
    return image


def _area_shape(session: Session, area: LowDoseArea) -> tuple[int, int]:
    preset = session.scope.optics.preset(area)
    width, height = preset.camera_area_px or session.scope.camera.size_px
    return height // preset.binning, width // preset.binning


def acquire(session: Session, camera_set: int) -> BufferImage:
    """Expose with a parameter set; the image goes to A (buffers roll)."""
    area = session.area_of_set(camera_set)
    scope = session.scope
    session.ld_area = LowDoseArea.RECORD if area is LowDoseArea.PREVIEW else area
    preset = scope.optics.preset(area)
    stage = scope.stage.position()
    matrix = scope.camera.specimen_to_camera_matrix(area)
    frame_info: tuple[str, int, float] | None = None
    early_sum = session.extensions.pop("early_return_next", None)  # for this shot only
    if not session.valves_open:
        scope.clock.sleep(preset.exposure_s)
        data: NDArray[np.float32] = np.zeros(_area_shape(session, area), np.float32)
        exposure_id = None
        dose = 0.0
        defocus = scope.optics.focus_um() + preset.defocus_offset_um
        time_s, taken = scope.clock.now_s(), scope.clock.datetime()
    elif session.extensions.get("save_frames", {}).get(camera_set):
        movie = _movie(session, area, early_sum)
        image = movie.image
        data = _returned_sum(movie, early_sum)
        frames_written = save_movie(session, movie.frames, image.pixel_size_a, stage.tilt_deg)
        frame_info = (frames_written, movie.n_frames, movie.frame_dose_e_a2)
        session.extensions["last_frames_saved"] = movie.n_frames
    else:
        image = scope.camera.acquire(area)
        data = np.asarray(image.data, np.float32)
    if session.valves_open:
        exposure_id, dose, defocus = image.exposure_id, image.dose_e_a2, image.defocus_um
        time_s, taken = image.time_s, image.datetime
    buffer = BufferImage(
        data=data,
        camera_set=camera_set,
        binning=preset.binning,
        pixel_size_a=preset.pixel_size_a,
        exposure_s=preset.exposure_s,
        magnification=preset.magnification,
        defocus_um=defocus,
        dose_e_a2=dose,
        stage_xyz_um=(stage.x_um, stage.y_um, stage.z_um),
        tilt_deg=stage.tilt_deg,
        image_shift_units=scope.optics.image_shift_units(),
        specimen_to_camera=np.asarray(matrix, np.float64),
        time_s=time_s,
        taken=taken,
        exposure_id=exposure_id,
        low_dose=session.low_dose,
        source=session.set_letter(camera_set),
    )
    buffer.frames = frame_info
    if early_sum == 0 and frame_info is not None:  # returned without a summed image
        return buffer
    session.buffers.push_new(buffer)
    session.variables["imageTickTime"] = f"{time_s:.3f}"
    # tomopilot's addition: the microscope's exposure id (the twin's ground truth is keyed by it)
    session.variables["tomopilotExposureID"] = "" if exposure_id is None else str(exposure_id)
    return buffer


def _movie(session: Session, area: LowDoseArea, early_sum: int | None) -> Movie:
    """A shot that saves frames; with ``EarlyReturnNextShot`` pending, returned early (the
    twin camera's early return for this shot only, where the microscope offers it)."""
    camera = session.scope.camera
    switch = getattr(camera, "set_early_return", None)
    if early_sum is None or switch is None:
        return camera.acquire_movie(area)
    before = bool(getattr(camera, "early_return", False))
    switch(True)
    try:
        return camera.acquire_movie(area)
    finally:
        switch(before)


def _returned_sum(movie: Movie, early_sum: int | None) -> NDArray[np.float32]:
    """The image SerialEM hands back: the full (gain-normalised) sum, or with an early return
    of ``early_sum`` frames (0 < n < all) the sum of the first n, normalised as the full one."""
    full = np.asarray(movie.image.data, np.float32)
    if early_sum is None or early_sum <= 0 or early_sum >= movie.n_frames:
        return full
    raw_all = movie.frames.sum(axis=0, dtype=np.float64)
    raw_first = movie.frames[:early_sum].sum(axis=0, dtype=np.float64)
    ratio = np.divide(raw_first, raw_all, out=np.zeros_like(raw_all), where=raw_all > 0)
    return np.asarray(full * ratio, np.float32)


@command("EarlyReturnNextShot", "I|II")
def early_return_next_shot(
    session: Session, n_frames: int, deferred_sum: int = 0, no_stack: int = 0
) -> Reported:
    """The next shot returns as soon as its sum of ``n_frames`` frames is ready (-1: the full
    sum, 0: no summed image) while the frames are still being written; only a shot that saves
    frames is affected (SerialEM's help: K2/K3 dose fractionation). ``deferred_sum`` and
    ``no_stack`` are accepted and not modelled."""
    session.extensions["early_return_next"] = 65535 if n_frames < 0 else int(n_frames)
    return None


def save_movie(
    session: Session, frames: NDArray[np.float32], pixel_size_a: float, tilt_deg: float
) -> str:
    """Write a movie's frames to the frames folder as TIFF, named as SetFrameBaseName asked."""
    from tomopilot.io.frames import write_frames

    folder = session.directory / "frames"
    base = session.extensions.get("frame_base", (0, 1, 0, "frames"))[3] or "frames"
    count = session.extensions.get("frame_count", 0) + 1
    session.extensions["frame_count"] = count
    name = f"{base}_{count:03d}_{tilt_deg:.1f}.tif"
    counts = np.round(frames)
    data = counts.astype(np.uint16) if np.allclose(frames, counts) else frames
    path = write_frames(folder / name, data, pixel_size_a=pixel_size_a)
    session.extensions["last_frame_file"] = str(path)
    return str(path)


@command("SetDoseFracParams", "CI|IIII")
def set_dose_frac_params(
    session: Session, camera_set: int, dose_frac: int, save: int = 0, *rest: int
) -> Reported:
    """Dose fractionation for a parameter set; ``save`` non-zero saves its frames (TIFF)."""
    session.extensions.setdefault("save_frames", {})[camera_set] = bool(dose_frac and save)
    return None


@command("ReportNumFramesSaved")
def report_num_frames_saved(session: Session) -> Reported:
    """Frames saved by the last acquisition that saved frames (0 if none)."""
    return (int(session.extensions.get("last_frames_saved", 0)),)


def _acquirer(camera_set: int) -> object:
    def handler(session: Session) -> Reported:
        acquire(session, camera_set)
        return None

    return handler


for _set, _names in (
    (0, ("V", "View")),
    (1, ("F", "Focus")),
    (2, ("T", "Trial")),
    (3, ("R", "Record")),
    (4, ("L", "Preview")),
    (5, ("Search",)),
):
    command(_names[0], aliases=_names[1:])(_acquirer(_set))  # type: ignore[arg-type]


@command("AcquireToMatchBuffer", "B")
def acquire_to_match_buffer(session: Session, letter: str) -> Reported:
    """A new image with the parameter set, exposure, binning and size of ``letter``'s image."""
    reference = need(session, letter, "AcquireToMatchBuffer")
    if reference.camera_set < 0:
        raise SEMerror(
            f"The image in buffer {letter} was not taken with a parameter set in script "
            f"statement: AcquireToMatchBuffer {letter}",
            "AcquireToMatchBuffer",
        )
    area = session.area_of_set(reference.camera_set)
    optics = session.scope.optics
    original = optics.preset(area)
    width, height = reference.shape_xy
    wanted = original.model_copy(
        update={
            "binning": reference.binning,
            "exposure_s": reference.exposure_s,
            "camera_area_px": (width * reference.binning, height * reference.binning),
        }
    )
    optics.set_preset(area, wanted)
    try:
        acquire(session, reference.camera_set)
    finally:
        optics.set_preset(area, original)
    return None


# -- parameter sets --------------------------------------------------------------------------
def _modify(session: Session, camera_set: int, **update: object) -> None:
    area = session.area_of_set(camera_set)
    optics = session.scope.optics
    current = optics.preset(area)
    session.saved_presets.setdefault(area, current)
    optics.set_preset(area, current.model_validate({**current.model_dump(), **update}))


@command("SetExposure", "CF|F")
def set_exposure(
    session: Session, camera_set: int, exposure_s: float, drift_s: float = -1.0
) -> Reported:
    """Exposure time (and drift settling) of a parameter set, restored when the script ends."""
    if not 0 < exposure_s <= 60:
        raise ValueError(f"Exposure time {exposure_s} s is out of range (0 to 60 s)")
    _modify(session, camera_set, exposure_s=exposure_s)
    if drift_s >= 0:
        session.extensions.setdefault("drift_settling", {})[camera_set] = drift_s
    return None


@command("SetBinning", "CI")
def set_binning(session: Session, camera_set: int, binning: int) -> Reported:
    """Binning of a parameter set (the camera area must divide by it)."""
    if binning not in (1, 2, 3, 4, 6, 8, 16):
        raise ValueError(f"Binning {binning} is not available on this camera")
    _modify(session, camera_set, binning=binning)
    return None


@command("SetCameraArea", "CV|FFF")
def set_camera_area(session: Session, camera_set: int, *spec: object) -> Reported:
    """Camera area: F, H, Q, WH, WQ, or unbinned left right top bottom (centred on the twin)."""
    width, height = session.scope.camera.size_px
    binning = session.scope.optics.preset(session.area_of_set(camera_set)).binning
    if len(spec) == 1 and isinstance(spec[0], str):
        fractions = {"F": (1, 1), "H": (2, 2), "Q": (4, 4), "WH": (1, 2), "WQ": (1, 4)}
        key = spec[0].upper()
        if key not in fractions:
            raise ValueError(f"Camera area must be F, H, Q, WH or WQ, not {spec[0]!r}")
        fx, fy = fractions[key]
        w, h = width // fx, height // fy
    elif len(spec) == 4 and all(isinstance(v, int | float) for v in spec):
        left, right, top, bottom = (float(v) for v in spec)  # type: ignore[arg-type]
        w, h = int(right - left), int(bottom - top)
        if w <= 0 or h <= 0 or right > width or bottom > height or left < 0 or top < 0:
            raise ValueError(f"Camera area {spec} lies outside the {width}x{height} camera")
    else:
        raise ValueError("Camera area needs F, H, Q, WH, WQ or four numbers")
    w -= w % binning
    h -= h % binning
    _modify(session, camera_set, camera_area_px=(w, h))
    return None


@command("RestoreCameraSet", "|C")
def restore_camera_set(session: Session, camera_set: int = -1) -> Reported:
    """Undo the Set... changes of one parameter set, or of all."""
    areas = list(session.saved_presets) if camera_set < 0 else [session.area_of_set(camera_set)]
    for area in areas:
        original = session.saved_presets.pop(area, None)
        if original is not None:
            session.scope.optics.set_preset(area, original)
    return None


@command("ReportBinning", "C")
def report_binning(session: Session, camera_set: int) -> Reported:
    """The binning of a parameter set."""
    return (session.scope.optics.preset(session.area_of_set(camera_set)).binning,)


@command("ReportExposure", "C")
def report_exposure(session: Session, camera_set: int) -> Reported:
    """(exposure s, drift settling s) of a parameter set."""
    preset = session.scope.optics.preset(session.area_of_set(camera_set))
    drift = session.extensions.get("drift_settling", {}).get(camera_set, 0.0)
    return preset.exposure_s, drift


CAMERA_PIXEL_UM = 14.0  # physical pixel of the twin's Falcon-like detector


@command("CameraProperties", "|I")
def camera_properties(session: Session, camera: int = 1) -> Reported:
    """(unbinned width, height, RotationAndFlip, physical pixel µm) of the camera."""
    if camera != 1:
        raise ValueError(f"There is no active camera {camera} (the twin has one)")
    width, height = session.scope.camera.size_px
    return width, height, 0, CAMERA_PIXEL_UM


@command("ReportCameraProperty", "IS")
def report_camera_property(session: Session, camera: int, name: str) -> Reported:
    """A camera property by name (CameraSizeX/Y, PixelSizeInMicrons, RotationAndFlip ...)."""
    if camera != 1:
        raise ValueError(f"There is no active camera {camera} (the twin has one)")
    width, height = session.scope.camera.size_px
    table: dict[str, object] = {
        "camerasizex": width,
        "camerasizey": height,
        "pixelsizeinmicrons": CAMERA_PIXEL_UM,
        "rotationandflip": 0,
        "countsperelectron": 1.0,
        "name": "twin camera",
        "ststem": 0,
    }
    key = name.casefold()
    if key not in table:
        raise ValueError(f"{name} is not a camera property the twin reports")
    return (table[key],)


# -- buffers -----------------------------------------------------------------------------------
@command("Copy", "BB")
def copy(session: Session, source: str, target: str) -> Reported:
    """Copy an image from one buffer to another (``Copy A O`` keeps a reference)."""
    session.buffers.put(target, need(session, source, "Copy").copy())
    return None


@command("ImageProperties", "|B")
def image_properties(session: Session, letter: str = "A") -> Reported:
    """(width, height, binning, exposure s, pixel size nm, parameter set) of a buffer's image."""
    image = need(session, letter, "ImageProperties")
    width, height = image.shape_xy
    return width, height, image.binning, image.exposure_s, image.pixel_size_a / 10, image.camera_set


@command("ImageConditions", "|B")
def image_conditions(session: Session, letter: str = "A") -> Reported:
    """(dose e/Å², magnification) of a buffer's image."""
    image = need(session, letter, "ImageConditions")
    return image.dose_e_a2, image.magnification


@command("ReportMeanCounts", "|BI")
def report_mean_counts(session: Session, letter: str = "A", option: int = 0) -> Reported:
    """Mean counts; 1 = unbinned counts per second; 2 = (mean, sd, min, max)."""
    image = need(session, letter, "ReportMeanCounts")
    data = image.data.astype(np.float64)
    mean = float(data.mean())
    if option == 1:
        return (mean / (image.binning**2 * image.exposure_s),)
    if option == 2:
        return mean, float(data.std()), float(data.min()), float(data.max())
    return (mean,)


@command("ReportCurrentBuffer")
def report_current_buffer(session: Session) -> Reported:
    """The letter of the buffer shown last."""
    return (session.buffers.current,)


@command("AddBufToStackWindow", "|BIIII")
def add_buf_to_stack_window(session: Session, letter: str = "A", *options: int) -> Reported:
    """Show a buffer in a stack window: the twin has no windows; checked and logged."""
    need(session, letter, "AddBufToStackWindow")
    session.log(f"(stack window) added buffer {letter}")
    return None


@command("CropCenterToSize", "BII")
def crop_center_to_size(session: Session, letter: str, width: int, height: int) -> Reported:
    """Crop a buffer's image in place to a centred ``width`` × ``height``."""
    image = need(session, letter, "CropCenterToSize")
    nx, ny = image.shape_xy
    if not (0 < width <= nx and 0 < height <= ny):
        raise ValueError(f"Size {width} x {height} is not within the {nx} x {ny} image")
    x0, y0 = (nx - width) // 2, (ny - height) // 2
    image.data = np.ascontiguousarray(image.data[y0 : y0 + height, x0 : x0 + width])
    return None


@command("ReduceImage", "BF")
def reduce_image(session: Session, letter: str, factor: float) -> Reported:
    """Reduce a buffer's image by ``factor`` (block-averaged, anti-aliased) into A."""
    image = need(session, letter, "ReduceImage")
    step = round(factor)
    if abs(factor - step) > 1e-6 or not 1 <= step <= 16:
        raise ValueError(f"Reduction factor {factor} must be a whole number from 1 to 16")
    ny, nx = image.data.shape
    h, w = ny // step, nx // step
    blocks = image.data[: h * step, : w * step].reshape(h, step, w, step)
    reduced = image.copy()
    reduced.data = blocks.mean(axis=(1, 3)).astype(np.float32)
    reduced.binning = image.binning * step
    reduced.pixel_size_a = image.pixel_size_a * step
    reduced.specimen_to_camera = image.specimen_to_camera / step
    session.buffers.push_new(reduced)
    return None


def put_image(
    session: Session, data: object, letter: str, template: BufferImage | None = None
) -> None:
    """``PutImageInBuffer``: an array from the script into a buffer (A rolls)."""
    array = np.asarray(data, dtype=np.float32)
    if array.ndim != 2 or min(array.shape) < 1:
        raise ValueError(f"PutImageInBuffer needs a 2-D image, not shape {array.shape}")
    base = template or session.buffers.get("A")
    scope = session.scope
    stage = scope.stage.position()
    image = BufferImage(
        data=np.ascontiguousarray(array),
        camera_set=-1,
        binning=base.binning if base else 1,
        pixel_size_a=base.pixel_size_a if base else 1.0,
        exposure_s=base.exposure_s if base else 0.0,
        magnification=base.magnification if base else 0,
        defocus_um=base.defocus_um if base else 0.0,
        dose_e_a2=0.0,
        stage_xyz_um=(stage.x_um, stage.y_um, stage.z_um),
        tilt_deg=stage.tilt_deg,
        image_shift_units=scope.optics.image_shift_units(),
        specimen_to_camera=(
            base.specimen_to_camera
            if base
            else calibration.specimen_to_camera(session, session.ld_area)
        ),
        time_s=scope.clock.now_s(),
        taken=scope.clock.datetime(),
        source="script",
    )
    if letter == "A":
        session.buffers.push_new(image)
    else:
        session.buffers.put(letter, image)


__all__ = ["SET_AREAS", "acquire", "need", "put_image"]
