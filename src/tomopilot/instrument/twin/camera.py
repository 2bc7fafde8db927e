"""The twin's camera: exposures and frame movies in a low-dose area, with their ground truth."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray
from scipy import ndimage

from tomopilot.imaging.fourier import WORKERS
from tomopilot.instrument.errors import CameraTimeoutError, NoBeamError
from tomopilot.instrument.events import ExposureTaken, FaultTriggered
from tomopilot.instrument.twin.core import (
    STREAM_MOTION,
    STREAM_NOISE,
    STREAM_TEXTURE,
    TwinCore,
    logged,
)
from tomopilot.instrument.twin.field import FieldOfView
from tomopilot.instrument.twin.ground_truth import ExposureTruth
from tomopilot.instrument.twin.image_shift_settling import exposure_lag, lag_um, smear
from tomopilot.instrument.twin.motion import MotionModel, make_motion
from tomopilot.instrument.twin.optics import TwinOptics, intensity, mag_index
from tomopilot.instrument.twin.render import Rendered, centre_truth, render
from tomopilot.instrument.twin.stage import TwinStage
from tomopilot.instrument.types import AreaPreset, Image, LowDoseArea, Movie, ScopeState

CAMERA_TIMEOUT_S = 30.0  # how long a hung acquisition takes to fail (est.)
DARK_FRACTION = 0.002  # signal left when the beam is blocked (est.)
SMEAR_MIN_PX = 0.1  # a settling blur shorter than this leaves the rendered field as it is
FRAME_SAVE_S = 0.014  # writing per saved frame (K3T: DM's "save" 0.19-0.21 s for 15; timing.py)


class TwinCamera:
    """Camera of the twin (implements :class:`~tomopilot.instrument.Camera`)."""

    _part = "camera"

    def __init__(self, core: TwinCore, stage: TwinStage, optics: TwinOptics) -> None:
        self._core = core
        self._stage = stage
        self._optics = optics

    @property
    def size_px(self) -> tuple[int, int]:
        return self._core.config.camera.size_px

    def readout_area(self, preset: AreaPreset) -> tuple[int, int, int, int]:
        """(x0, y0, width, height) in unbinned pixels of a preset's centred sub-area."""
        width, height = self.size_px
        w, h = preset.camera_area_px or (width, height)
        w -= w % preset.binning
        h -= h % preset.binning
        return (width - w) // 2, (height - h) // 2, w, h

    def _state(self, preset: AreaPreset, shape: tuple[int, ...]) -> ScopeState:
        """What SerialEM would read back from this microscope for an exposure of ``preset``."""
        config = self._core.config
        cam, optics = config.camera, config.optics
        return ScopeState(
            voltage_kv=optics.voltage_kv,
            cs_mm=optics.cs_mm,
            spot_size=preset.spot_size,
            intensity=intensity(preset),
            mag_index=mag_index(preset.magnification),
            camera_index=cam.index,
            operating_mode=cam.operating_mode,
            using_cds=cam.correlated_double_sampling,
            divided_by_2=False,
            rotation_and_flip=0,  # the twin's images are neither rotated nor flipped
            slit_width_ev=optics.slit_width_ev,
            energy_loss_ev=0.0,
            uncropped_size_px=(-int(shape[-1]), -int(shape[-2])),
        )

    def field(self, area: LowDoseArea) -> FieldOfView:
        """The field of view an exposure in ``area`` would have now."""
        preset = self._optics.preset(area)
        _, _, w, h = self.readout_area(preset)
        centre = self._optics.field_centre_lab_um(area, self._stage.tilt_axis_offset_um)
        rotation = self._core.config.optics.tilt_axis_angle_deg + 90.0
        return FieldOfView(
            centre, (h // preset.binning, w // preset.binning), preset.pixel_size_a, rotation
        )

    def gain_reference(self, area: LowDoseArea = LowDoseArea.RECORD) -> NDArray[np.float32]:
        """The gain reference for raw frames of ``area``, in the field's convention.

        Raw frames are *multiplied* by it, as RELION (``--gainref``), MotionCor2 (``-Gain``) and
        SerialEM apply a gain reference: the inverse of each pixel's relative sensitivity,
        mean 1, and 0 on defective pixels (hot pixels and dead columns), which RELION treats
        as bad pixels to fill.
        """
        preset = self._optics.preset(area)
        readout = self.readout_area(preset)
        sensitivity = self._core.detector.gain(preset.binning, readout)
        bad = self._core.detector.defect_map(preset.binning, readout)
        reference = np.where(bad, 0.0, 1.0 / sensitivity)
        good = reference[~bad]
        if good.size:
            reference /= good.mean()
        return reference.astype(np.float32)

    def defect_map(self, area: LowDoseArea = LowDoseArea.RECORD) -> NDArray[np.bool_]:
        """Defective (hot or dead) pixels of ``area``'s readout."""
        preset = self._optics.preset(area)
        return self._core.detector.defect_map(preset.binning, self.readout_area(preset))

    def correct(self, raw: NDArray[np.float32], preset: AreaPreset) -> NDArray[np.float32]:
        """Gain-normalise and repair defects in a raw image, as the camera software does."""
        detector = self._core.detector
        readout = self.readout_area(preset)
        out = (raw / detector.gain(preset.binning, readout)).astype(np.float32)
        bad = detector.defect_map(preset.binning, readout)
        if bad.any():
            rows, cols = np.nonzero(bad)
            dead = np.flatnonzero(bad.all(axis=0))
            isolated = ~np.isin(cols, dead)
            detector.repair(out, rows[isolated], cols[isolated], dead)
        return out

    def specimen_to_camera_matrix(self, area: LowDoseArea) -> NDArray[np.float64]:
        field = self.field(LowDoseArea(area))
        rot = math.radians(field.rotation_deg)
        matrix = np.array([[math.cos(rot), -math.sin(rot)], [math.sin(rot), math.cos(rot)]])
        return np.asarray(matrix / field.pixel_um, dtype=np.float64)

    @logged
    def acquire(self, area: LowDoseArea = LowDoseArea.RECORD) -> Image:
        image, _, _ = self._expose(LowDoseArea(area), n_frames=None)
        return image

    @logged
    def acquire_movie(
        self, area: LowDoseArea = LowDoseArea.RECORD, n_frames: int | None = None
    ) -> Movie:
        preset = self._optics.preset(LowDoseArea(area))
        n = n_frames or preset.n_frames
        if n < 1:
            raise ValueError(f"a movie needs at least one frame, not {n}")
        image, frames, frame_dose = self._expose(LowDoseArea(area), n_frames=n)
        assert frames is not None
        return Movie(
            frames=frames,
            frame_dose_e_a2=frame_dose,
            frame_time_s=preset.exposure_s / n,
            image=image,
        )

    @logged
    def set_early_return(self, enabled: bool) -> None:
        """Return from each exposure that saves frames once its sum is ready, not after the
        whole read-out and the frame writing.

        SerialEM's ``EarlyReturnNextShot -1`` before the shot (K2/K3): the script goes on with
        the full sum while the camera computer finishes the frame stack and writes it; another
        shot that saves frames waits until the writing is done, a single shot does not (the
        frame stack was already accessed for the sum). SerialEM's help allows it only for a
        shot that aligns or saves dose-fractionation frames, so an exposure without frames (a
        Preview, a View, a Record whose frames are not saved) gets nothing from it and reads
        out in full. Stage tilts, image shifts and focus changes never wait.
        """
        self._core.early_return = bool(enabled)

    @property
    def early_return(self) -> bool:
        """Whether exposures that save frames return early (:meth:`set_early_return`)."""
        return self._core.early_return

    def _start_exposure(self, saves_frames: bool) -> None:
        """Wait for a camera still writing frames (a shot that saves frames only), start it
        up, and wait out image-shift settling left over."""
        core = self._core
        if saves_frames:
            core.wait_until("camera_busy", core.camera_free_s)
        core.spend("exposure_overhead", core.config.camera.pre_exposure_s)
        core.wait_until("image_shift_settle", core.settled_s)

    def _finish_exposure(self, frame_saving_s: float, saves_frames: bool) -> None:
        """Read out (in the background with early return on, for a shot that saves frames)
        and write the frames."""
        core = self._core
        cam = core.config.camera
        if core.early_return and saves_frames:
            background = cam.readout_s + frame_saving_s
            returned = min(cam.sum_return_s, background)
            core.spend("readout", returned)
            core.camera_free_s = core.clock.now_s() + background - returned
            return
        core.spend("frame_saving", frame_saving_s)
        core.spend("readout", cam.readout_s)

    def _smear(
        self,
        expected: NDArray[np.float32],
        field: FieldOfView,
        lag: tuple[float, float],
        start_s: float,
        preset: AreaPreset,
    ) -> NDArray[np.float32]:
        """The rendered field blurred by the image shift still settling during the exposure:
        the content moves with the beam's lag (from its start to its end, about the mean)."""
        optics = self._core.config.optics
        transients = self._core.is_transients
        ends = []
        for t in (start_s, start_s + preset.exposure_s):
            x, y = lag_um(transients, t, optics)
            ends.append(field.lab_vector_to_pixels(x - lag[0], y - lag[1]))
        if max(abs(ends[0][0] - ends[1][0]), abs(ends[0][1] - ends[1][1])) < SMEAR_MIN_PX:
            return expected
        return smear(expected, ends[0], ends[1])

    # -- the exposure ---------------------------------------------------------------------------
    def _check_faults(self, index: int) -> bool:
        core = self._core
        now = core.clock.now_s()
        forced = core.faults.on_time(now)
        if forced is not None:
            core.events.emit(FaultTriggered(time_s=now, fault="dewar_refill"))
            core.start_fill(now)
        spec = core.faults.on_exposure(index, now)
        if spec is None:
            return False
        core.events.emit(FaultTriggered(time_s=now, fault=spec.kind, detail=f"exposure {index}"))
        core.truth.note(now, spec.kind, exposure=index)
        if spec.kind == "camera_timeout":
            core.spend("camera_timeout", CAMERA_TIMEOUT_S)
            raise CameraTimeoutError(
                f"the camera did not return exposure {index} within {CAMERA_TIMEOUT_S:g} s"
            )
        if spec.kind == "no_beam":
            raise NoBeamError(
                "no electrons reach the camera: the beam is blanked or the valves are closed"
            )
        return True  # a dark image

    def _expose(
        self, area: LowDoseArea, n_frames: int | None
    ) -> tuple[Image, NDArray[np.float32] | None, float]:
        core = self._core
        cam = core.config.camera
        index = core.n_exposures
        core.n_exposures += 1
        dark = self._check_faults(index)
        preset = self._optics.preset(area)
        field = self.field(area)
        readout = self.readout_area(preset)
        self._start_exposure(n_frames is not None)
        start_s = core.clock.now_s()
        # A beam on before the image shift has settled: the image is short of its place by the
        # mean lag over the exposure and smeared by the part that arrives meanwhile.
        lag, blur_um = exposure_lag(
            core.is_transients, start_s, start_s + preset.exposure_s, core.config.optics
        )
        if lag != (0.0, 0.0):
            field = replace(
                field, centre_um=(field.centre_um[0] - lag[0], field.centre_um[1] - lag[1])
            )
        pose = core.stage.pose(start_s + preset.exposure_s / 2)
        focus = self._optics.focus_um() + preset.defocus_offset_um
        feg = core.feg_factor()
        electrons = preset.dose_rate_e_px_s * preset.exposure_s * preset.binning**2 * feg
        signal = core.zlp_factor() * (DARK_FRACTION if dark else 1.0)
        motion: MotionModel | None = None
        pad = 0
        if n_frames is not None:
            velocity = core.stage.drift_velocity_um_s(start_s)
            drift_px = field.lab_vector_to_pixels(float(velocity[0]), float(velocity[1]))
            motion = make_motion(
                core.config.movie,
                core.rng(STREAM_MOTION, index),
                n_frames=n_frames,
                frame_time_s=preset.exposure_s / n_frames,
                pixel_size_a=field.pixel_size_a,
                tilt_deg=pose.tilt_deg,
                axis_angle_on_camera_deg=field.rotation_deg,
                drift_px_s=drift_px,
                shape=field.shape,
            )
            reach = (
                float(np.max(np.abs(motion.frame_shifts_px)))
                + 3 * core.config.movie.local_motion_a / field.pixel_size_a
            )
            pad = math.ceil(reach) + 8
        flat = not cam.render
        if core.replaying or flat:  # the truth, not the pixels
            centre = centre_truth(core.specimen, pose, field, focus, core.config.optics)
        else:
            rendered = render(
                core.specimen,
                pose,
                field,
                focus,
                core.config.optics,
                electrons,
                core.rng(STREAM_TEXTURE, index),
                pad=pad,
                beam_factor=signal,
            )
            centre = rendered.centre
            if blur_um > 0.0:
                rendered.expected = self._smear(rendered.expected, field, lag, start_s, preset)
        core.spend("exposure", preset.exposure_s)
        noise = core.rng(STREAM_NOISE, index)
        frames: NDArray[np.float32] | None = None
        saving_s = 0.0
        frame_dose = 0.0 if n_frames is None else preset.dose_e_a2 / n_frames
        if core.replaying or flat:
            level = 0.0 if core.replaying else electrons * signal * centre.transmission
            data = np.full(field.shape, level * cam.counts_per_electron, np.float32)
            if n_frames is not None:
                frames = np.repeat(data[None] / np.float32(n_frames), n_frames, axis=0)
                saving_s = FRAME_SAVE_S * n_frames
        elif motion is None or n_frames is None:
            data = core.detector.read_out(
                rendered.image,
                binning=preset.binning,
                area=readout,
                exposure_s=preset.exposure_s,
                rng=noise,
            )
        else:
            frames = self._frames(rendered, motion, n_frames, preset, readout, noise)
            data = frames.sum(axis=0)
            if not cam.frames_gain_normalized:
                data = self.correct(data, preset)
            saving_s = FRAME_SAVE_S * n_frames
        # A counting camera delivers whole counts (gain-normalised and rounded, as SerialEM
        # keeps a K3's or Falcon's Record); the stack then holds exactly what was aligned.
        data = np.rint(data).astype(np.float32, copy=False)
        self._finish_exposure(saving_s, n_frames is not None)
        stage = self._stage.position()
        truth = ExposureTruth(
            exposure_id=index,
            area=area.value,
            time_s=start_s,
            duration_s=preset.exposure_s,
            dose_e_a2=preset.dose_e_a2 * feg * (0.0 if dark else 1.0),
            beam_centre_lab_um=field.centre_um,
            beam_radius_um=preset.beam_diameter_um / 2,
            field_shape=field.shape,
            pixel_size_a=field.pixel_size_a,
            rotation_deg=field.rotation_deg,
            pose=pose,
            stage_reported=(stage.x_um, stage.y_um, stage.z_um, stage.tilt_deg),
            image_shift_true_um=self._optics.true_image_shift_um(),
            focus_um=focus,
            defocus_um=centre.defocus_um,
            defocus_gradient_um_per_px=centre.defocus_gradient_um_per_px,
            specimen_centre_um=centre.specimen_um,
            transmission_centre=centre.transmission,
            path_centre_nm=centre.path_nm,
            dark=dark,
            motion=motion,
            is_lag_um=lag,
            is_blur_nm=blur_um * 1e3,
        )
        core.truth.record(truth)
        image = Image(
            data=data,
            area=area,
            pixel_size_a=preset.pixel_size_a,
            binning=preset.binning,
            magnification=preset.magnification,
            exposure_s=preset.exposure_s,
            dose_e_a2=preset.dose_e_a2,
            defocus_um=focus,
            stage=stage,
            image_shift_um=self._optics.image_shift_um(),
            time_s=start_s,
            datetime=core.clock.datetime(),
            exposure_id=index,
            counts_per_electron=cam.counts_per_electron,
            state=self._state(preset, data.shape),
        )
        core.events.emit(
            ExposureTaken(
                time_s=core.clock.now_s(),
                exposure_id=index,
                area=area.value,
                dose_e_a2=preset.dose_e_a2,
                duration_s=preset.exposure_s,
                mean_counts=image.mean_counts,
            )
        )
        return image, frames, frame_dose

    def _frames(
        self,
        rendered: Rendered,
        motion: MotionModel,
        n_frames: int,
        preset: AreaPreset,
        readout: tuple[int, int, int, int],
        rng: np.random.Generator,
    ) -> NDArray[np.float32]:
        expected = rendered.expected
        pad = rendered.pad
        ny, nx = expected.shape
        spectrum = sfft.rfft2(expected, workers=WORKERS)
        fy = np.fft.fftfreq(ny)
        fx = np.fft.rfftfreq(nx)
        h, w = ny - 2 * pad, nx - 2 * pad
        local = None
        if len(motion.modes):
            cols_px = np.arange(nx) - pad + 0.5
            rows_px = np.arange(ny) - pad + 0.5
            local = motion.local_field_on_grid(cols_px, rows_px)
        out = np.empty((n_frames, h, w), np.float32)
        frame_time = preset.exposure_s / n_frames
        moved = np.empty_like(spectrum)
        for i in range(n_frames):
            sx, sy = motion.frame_shifts_px[i]
            # The shift's phase ramp exp(−2πi(fy·sy + fx·sx)) is a column times a row.
            ramp_rows = np.exp(-2j * np.pi * fy * sy).astype(np.complex64)
            ramp_cols = np.exp(-2j * np.pi * fx * sx).astype(np.complex64)
            np.multiply(spectrum, ramp_rows[:, None], out=moved)
            moved *= ramp_cols[None, :]
            shifted = np.asarray(sfft.irfft2(moved, s=(ny, nx), workers=WORKERS), dtype=np.float32)
            if local is not None:
                shifted = _warp(shifted, local, np.float32(motion.time_profile[i]))
            frame = shifted[pad : pad + h, pad : pad + w]
            np.maximum(frame, np.float32(0.0), out=frame)
            frame *= np.float32(1.0 / n_frames)
            out[i] = self._core.detector.read_out(
                np.ascontiguousarray(frame),
                binning=preset.binning,
                area=readout,
                exposure_s=frame_time,
                rng=rng,
                corrected=self._core.config.camera.frames_gain_normalized,
            )
        return out


_WARP_POOL = ThreadPoolExecutor(max_workers=WORKERS)
WARP_BAND_ROWS = 64


def _warp(
    image: NDArray[np.float32],
    local: tuple[NDArray[np.float32], NDArray[np.float32]],
    amount: np.float32,
) -> NDArray[np.float32]:
    """``image`` sampled bilinearly at (row − amount·local_y, column − amount·local_x).

    Row bands on the worker threads (scipy's interpolation releases the GIL); each output pixel
    is computed from the same coordinates whatever the band, so the result does not depend on
    the worker count.
    """
    ny, nx = image.shape
    local_x, local_y = local
    out = np.empty_like(image)
    columns = np.arange(nx, dtype=np.float32)

    def band(a: int) -> None:
        b = min(ny, a + WARP_BAND_ROWS)
        coords = np.empty((2, b - a, nx), np.float32)
        np.multiply(local_y[a:b], -amount, out=coords[0])
        coords[0] += np.arange(a, b, dtype=np.float32)[:, None]
        np.multiply(local_x[a:b], -amount, out=coords[1])
        coords[1] += columns[None, :]
        out[a:b] = ndimage.map_coordinates(image, coords, order=1, mode="nearest")

    list(_WARP_POOL.map(band, range(0, ny, WARP_BAND_ROWS)))
    return out
