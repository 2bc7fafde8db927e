"""What a tracking strategy is, and the tools the engine lends it.

A strategy predicts, for every target at every tilt, the image shift and focus that should put
the target in the beam at the right defocus (:meth:`Strategy.prepare`), and learns from each
Record (:meth:`Strategy.observe`). The engine owns the order of operations, the files and the
journal; the strategy owns its model, which it can dump and restore for ``--resume``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from tomopilot.acquisition.plan.settings import AcquisitionSettings
from tomopilot.acquisition.plan.tilt_schemes import TiltStep
from tomopilot.geometry.scope_state import temporary_preset
from tomopilot.imaging.errors import NoCorrelationPeakError
from tomopilot.imaging.fourier import taper_mask
from tomopilot.imaging.xcorr import align
from tomopilot.instrument.protocol import Microscope
from tomopilot.instrument.types import Image, LowDoseArea, Movie


@dataclass(frozen=True)
class TargetInfo:
    """A target as the strategy sees it.

    Attributes
    ----------
    index
        1-based, target 1 being the tracking target.
    ss_um
        Specimen shift (x along the tilt axis, y across) relative to target 1, measured at
        the selection tilt.
    defocus_um
        The target's own defocus level (PACEtomo's F_k offset from F0, see §3.2).
    skip
        Never imaged.
    """

    index: int
    ss_um: tuple[float, float]
    defocus_um: float
    skip: bool = False


@dataclass
class ExposureRequest:
    """What to set before one Record."""

    image_shift_um: tuple[float, float]
    focus_um: float
    target_defocus_um: float
    exposure_s: float | None = None
    magnification: int | None = None
    predicted_dy_um: float = 0.0
    predicted_dz_um: float = 0.0


@dataclass
class Outcome:
    """What the strategy concluded from one Record."""

    alignment_um: tuple[float, float] = (0.0, 0.0)
    aborted: str | None = None
    specimen_shift_um: tuple[float, float] | None = None
    eucentric_offset_um: float | None = None
    ctf_defocus_um: float | None = None
    retake: Image | None = None
    """A second Record that replaces the one observed (PACEtomo's trackTwice); its image
    shift is ``specimen_shift_um``."""
    retake_movie: Movie | None = None
    """The retake's movie, when the run saves frames (:meth:`Toolkit.series_record`): its
    section links these frames, not the replaced Record's."""


class BranchEnded(Exception):
    """Raised by :meth:`Strategy.prepare` when a branch must end before its next exposure (a
    dose cap it would pass): the engine ends the branch and takes nothing more on it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


UPSAMPLE_DEFAULT = 20  # the aligner's sub-pixel factor unless a strategy asks for another

# Stretched comparisons (View relocations) run on images binned to at most this size.
STRETCH_MAX_PX = 1024


class Toolkit:
    """Measurements a strategy may make, lent by the engine.

    Alignment works on two images of the same low-dose area and returns the displacement of
    the specimen relative to the field, in specimen µm (x along the tilt axis): adding it to the
    image shift re-centres the target.
    """

    def __init__(
        self, scope: Microscope, settings: AcquisitionSettings, *, save_frames: bool = False
    ) -> None:
        self.scope = scope
        self.settings = settings
        self.save_frames = save_frames
        """Whether the run keeps a movie of every Record of its tilt series."""
        self.setup_dose_e_a2: dict[int, float] = {}
        """The dose (e/Å²) the engine's set-up put on each target with the images it took there
        (its map, its start Preview): where a strategy that keeps a dose budget starts from."""
        self.view_maps: dict[int, Image] = {}
        """Per target, the View from selection the set-up realigned it to (``viewfile``: the
        hole and its edge), for finding it again where its Preview map shows too little."""
        self.autofocus_scale = 1.0
        """The autofocus's readings per true µm of defocus, as the set-up measured it
        (acquisition/setup/autofocus_scale.py); 1 until measured."""
        self._matrices: dict[tuple[str, int, int], NDArray[np.float64]] = {}

    def camera_matrix(self, image: Image) -> NDArray[np.float64]:
        """Specimen µm → pixels of ``image``'s area, binning and magnification."""
        key = (image.area.value, image.binning, image.magnification)
        if key not in self._matrices:
            matrix = self.scope.camera.specimen_to_camera_matrix(image.area)
            preset = self.scope.optics.preset(image.area)
            if preset.pixel_size_a != image.pixel_size_a:  # another magnification or binning
                matrix = matrix * (preset.pixel_size_a / image.pixel_size_a)
            self._matrices[key] = matrix
        return self._matrices[key]

    def shift_um(
        self,
        reference: Image,
        image: Image,
        *,
        limit_um: float | None = None,
        flatten_a: float | None = None,
        upsample: int | None = None,
    ) -> tuple[NDArray[np.float64], float] | None:
        """Specimen displacement from ``reference`` to ``image`` (µm) and the peak's significance.

        Images of the same field at different binnings (a Preview map and a Record) are
        compared at the coarser pixel. ``limit_um`` restricts the search (PACEtomo's
        alignLimit); ``None`` is returned when nothing correlates inside it or the two images
        do not show the same field. ``flatten_a`` (Å) removes a smooth background before the
        correlation (see :func:`~tomopilot.imaging.xcorr.align`). ``upsample`` is the sub-pixel
        refinement factor (the aligner's default when None); its cost grows with it.
        """
        pair = _same_field(reference, image)
        if pair is None:
            return None
        ref_data, img_data, coarse = pair
        matrix = self.camera_matrix(coarse)
        pixels_per_um = float(np.sqrt(abs(np.linalg.det(matrix))))
        try:
            result = align(
                ref_data,
                img_data,
                max_shift_px=None if limit_um is None else limit_um * pixels_per_um,
                low_pass_px=2.0,
                flatten_px=None if flatten_a is None else flatten_a / coarse.pixel_size_a,
                upsample=UPSAMPLE_DEFAULT if upsample is None else upsample,
            )
        except NoCorrelationPeakError:
            return None
        shift_px = np.array([result.shift_x_px, result.shift_y_px])
        return np.linalg.solve(matrix, shift_px), result.significance

    def locate_in_wider(
        self, reference: Image, wider: Image
    ) -> tuple[NDArray[np.float64], float] | None:
        """Where ``reference``'s field now lies within a ``wider`` image (a View), in µm.

        The reference is resampled to the wider image's pixel size, padded with its mean into a
        frame of the wider image's shape and tapered, then cross-correlated; the result has the
        same meaning as :meth:`shift_um` (specimen displacement from reference to now).
        """
        ratio = reference.pixel_size_a / wider.pixel_size_a
        template = np.asarray(reference.data, dtype=np.float32)
        if not math.isclose(ratio, 1.0, rel_tol=1e-3):
            template = np.asarray(ndimage.zoom(template, ratio, order=1), dtype=np.float32)
        big = np.asarray(wider.data, dtype=np.float32)
        th, tw = template.shape
        bh, bw = big.shape
        if th > bh or tw > bw:
            return None
        mean = float(template.mean())
        frame = np.full(big.shape, mean, np.float32)
        y0, x0 = (bh - th) // 2, (bw - tw) // 2
        window = taper_mask(template.shape, max(2, min(th, tw) // 8))
        frame[y0 : y0 + th, x0 : x0 + tw] = mean + (template - mean) * window
        try:
            result = align(frame, big, low_pass_px=3.0, high_pass_px=min(th, tw) / 2.0)
        except NoCorrelationPeakError:
            return None
        matrix = self.camera_matrix(wider)
        shift_px = np.array([result.shift_x_px, result.shift_y_px])
        return np.linalg.solve(matrix, shift_px), result.significance

    def shift_stretched_um(
        self, reference: Image, image: Image, stretch_y: float
    ) -> tuple[NDArray[np.float64], float] | None:
        """Like :meth:`shift_um` for two images of one area at different tilts.

        The reference is first stretched by ``stretch_y`` across the tilt axis (the change of
        foreshortening between its tilt and the image's), about its centre.
        """
        if (
            reference.data.shape != image.data.shape
            or reference.magnification != image.magnification
            or not math.isclose(reference.pixel_size_a, image.pixel_size_a, rel_tol=1e-6)
        ):
            return None
        matrix = self.camera_matrix(image)
        unit = matrix / np.sqrt(abs(np.linalg.det(matrix)))  # rotation: specimen → camera
        stretch = unit @ np.diag([1.0, stretch_y]) @ np.linalg.inv(unit)  # (x, y) pixels
        inverse = np.linalg.inv(stretch)[::-1, ::-1]  # ndimage works in (row, column)
        centre = (np.array(reference.data.shape) - 1) / 2.0
        offset = centre - inverse @ centre
        data = np.asarray(reference.data, dtype=np.float32)
        target = np.asarray(image.data, dtype=np.float32)
        factor = math.ceil(max(data.shape) / STRETCH_MAX_PX)
        if factor > 1:  # a relocation needs tens of nm, not the full pixel: work binned
            data, target = _bin(data, factor), _bin(target, factor)
            centre = (np.array(data.shape) - 1) / 2.0
            offset = centre - inverse @ centre
        warped = ndimage.affine_transform(data, inverse, offset=offset, order=1, mode="nearest")
        try:
            result = align(np.asarray(warped, np.float32), target, low_pass_px=2.0)
        except NoCorrelationPeakError:
            return None
        shift_px = np.array([result.shift_x_px, result.shift_y_px]) * factor
        return np.linalg.solve(matrix, shift_px), result.significance

    def view(self) -> Image:
        """A View image at the current image shift (the wide, low-dose field)."""
        return self.scope.camera.acquire(LowDoseArea.VIEW)

    def record(
        self,
        exposure_s: float | None = None,
        area: LowDoseArea = LowDoseArea.RECORD,
        *,
        magnification: int | None = None,
    ) -> Image:
        """Take one exposure, optionally with another exposure time or magnification."""
        with self.conditions(area, exposure_s=exposure_s, magnification=magnification):
            return self.scope.camera.acquire(area)

    def series_record(
        self, exposure_s: float | None = None, *, magnification: int | None = None
    ) -> tuple[Image, Movie | None]:
        """A Record that goes into the tilt series in place of another (a retake): with its
        movie when the run saves frames, so that its section links its own frames."""
        if self.save_frames:
            movie = self.record_movie(exposure_s, magnification=magnification)
            return movie.image, movie
        return self.record(exposure_s, magnification=magnification), None

    def record_movie(
        self, exposure_s: float | None = None, *, magnification: int | None = None
    ) -> Movie:
        """A Record movie (frames kept), optionally with another exposure time or magnification."""
        with self.conditions(
            LowDoseArea.RECORD, exposure_s=exposure_s, magnification=magnification
        ):
            return self.scope.camera.acquire_movie(LowDoseArea.RECORD)

    @contextmanager
    def conditions(
        self,
        area: LowDoseArea,
        *,
        exposure_s: float | None = None,
        magnification: int | None = None,
    ) -> Iterator[None]:
        """Run the body with ``area``'s exposure time or magnification changed, restored after.

        A magnification change scales the pixel on the specimen inversely (PACEtomo's trackMag
        records the tracking target at its own magnification). The image shift is in specimen
        µm, so it holds across the change, as PACEtomo re-applies it after changing the mag.
        """
        preset = self.scope.optics.preset(area)
        update: dict[str, Any] = {}
        if exposure_s is not None:
            update["exposure_s"] = exposure_s
        if magnification is not None and magnification != preset.magnification:
            update["magnification"] = magnification
            update["unbinned_pixel_size_a"] = (
                preset.unbinned_pixel_size_a * preset.magnification / magnification
            )
        with temporary_preset(self.scope, area, **update):
            yield


def _bin(data: NDArray[np.float32], factor: int) -> NDArray[np.float32]:
    ny, nx = (data.shape[0] // factor) * factor, (data.shape[1] // factor) * factor
    blocks = data[:ny, :nx].reshape(ny // factor, factor, nx // factor, factor)
    return np.asarray(blocks.mean(axis=(1, 3)), dtype=np.float32)


def _same_field(
    reference: Image, image: Image
) -> tuple[NDArray[np.float32], NDArray[np.float32], Image] | None:
    """Both images at the coarser pixel, if they show the same field; else None."""
    if reference.magnification != image.magnification:
        return None
    ratio = reference.pixel_size_a / image.pixel_size_a
    factor = round(ratio if ratio >= 1 else 1 / ratio)
    if abs(max(ratio, 1 / ratio) - factor) > 1e-6:
        return None
    ref, img = reference.data, image.data
    coarse = reference if ratio >= 1 else image
    if ratio > 1:
        img = _bin(img, factor)
    elif ratio < 1:
        ref = _bin(ref, factor)
    if ref.shape != img.shape:
        return None
    return ref, img, coarse


@runtime_checkable
class HoldsImages(Protocol):
    """A strategy that keeps reference images no stack or map holds (fused's Views).

    The engine saves them when they change and reloads them on resume by the keys
    :meth:`Strategy.reference_keys` names.
    """

    def held_images(self) -> dict[str, Image]:
        """The images the state refers to that are not Records or target maps, by key."""
        ...


class Strategy(Protocol):
    """A tracking and focusing strategy (see module docstring)."""

    name: str

    def setup(
        self,
        targets: list[TargetInfo],
        start_tilt_deg: float,
        focus0_um: float,
        start_is_um: dict[int, tuple[float, float]],
        toolkit: Toolkit,
        references: dict[str, Image],
    ) -> None:
        """Initialise the model at the start tilt (after target 1 is focused to F0).

        ``references`` holds the target maps (``map:N``) taken at the selection tilt.
        """
        ...

    def prepare(self, target: int, step: TiltStep) -> ExposureRequest:
        """Image shift and focus for ``target`` at ``step``."""
        ...

    def observe(
        self, target: int, step: TiltStep, image: Image, request: ExposureRequest
    ) -> Outcome:
        """Learn from the Record just taken."""
        ...

    def alive(self, target: int, branch: str) -> bool:
        """Whether ``target`` is still imaged on ``branch``."""
        ...

    def abort(self, target: int, branch: str, reason: str) -> None:
        """Stop imaging ``target`` on ``branch`` (the engine found it impossible)."""
        ...

    def recover(self, step: TiltStep, shift_um: tuple[float, float]) -> None:
        """After a resume: apply the shift found by re-aligning target 1 at ``step``."""
        ...

    def correct_heights(self, corrections_um: dict[int, float]) -> None:
        """refineGeo after the start round: add these to the targets' heights z₀ (µm)."""
        ...

    def state(self) -> dict[str, Any]:
        """Everything needed to continue (JSON-friendly)."""
        ...

    def restore(
        self, state: dict[str, Any], references: dict[str, Image], toolkit: Toolkit | None = None
    ) -> None:
        """Continue from :meth:`state`; ``references`` holds the images named in it."""
        ...

    def reference_keys(self) -> set[str]:
        """Names of the images the current state refers to (``map:N`` or ``img:N:branch``)."""
        ...
