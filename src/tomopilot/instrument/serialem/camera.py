"""The camera through SerialEM: ``R``/``V``/``F``/``T``/``L``/``Search`` into buffer A.

After the exposure the image is taken from buffer A with ``bufferImage('A')`` (an object with
the buffer protocol, read by :func:`numpy.asarray`), and described from what tomopilot already
knows (the area's preset, the focus and image shift it set, the stage readout after its last
move) plus ``ReportClock``: a Record costs the exposure command, the buffer transfer and one
clock reading. The dose is SerialEM's counts-based estimate: mean counts per unbinned pixel per
second over ``CountsPerElectron``, times the exposure, over the pixel area.

Movies: SerialEM saves the frames itself; :meth:`SerialEMCamera.acquire_movie` turns frame
saving on for the area's parameter set (``SetDoseFracParams set 1 1``, restored with the other
camera parameters at the end), records, asks ``ReportLastFrameFile`` where the frames went and
reads them with tomopilot's frame reader, so SerialEM's frame folder must be reachable from
tomopilot's computer. The run's ``frames/`` folder then links SerialEM's file (hard link, else
symbolic link) rather than writing the frames a second time. With the ``early_return`` lever
(:meth:`SerialEMCamera.set_early_return`) each such shot is preceded by
``EarlyReturnNextShot -1``: SerialEM returns the full sum while the frames are still being
written, so the frames are not read (only counted, ``ReportNumFramesSaved``); the link points
at the file SerialEM completes. A plain image of that parameter set afterwards
(:meth:`SerialEMCamera.acquire`, a retake) turns saving off again first
(``SetDoseFracParams set 1 0``): only movies leave frame files, and each is linked by a section.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tomopilot.instrument.errors import CameraTimeoutError
from tomopilot.instrument.events import ExposureTaken
from tomopilot.instrument.serialem.core import (
    ACQUIRE_COMMAND,
    AREA_LETTER,
    CAMERA_SET,
    SerialEMCore,
)
from tomopilot.instrument.serialem.session import SerialEMCommandError
from tomopilot.instrument.types import AreaPreset, Image, LowDoseArea, Movie, ScopeState
from tomopilot.io.errors import FormatError
from tomopilot.io.frames import read_frames

_log = logging.getLogger(__name__)


class SerialEMCamera:
    """The detector (implements :class:`~tomopilot.instrument.Camera`).

    ``exposure_ids``, if given, names each exposure (the twin-backed loop passes the twin's
    exposure index so the ground truth can be found); otherwise exposures are counted.
    """

    def __init__(self, core: SerialEMCore) -> None:
        self._core = core
        self._size: tuple[int, int] | None = None
        self.exposure_ids: object | None = None
        self._saving_frames: set[str] = set()
        self._unreported: set[str] = set()
        self.early_return = False

    def set_early_return(self, enabled: bool) -> None:
        """Send ``EarlyReturnNextShot -1`` before every shot that saves frames (the
        ``early_return`` time lever): SerialEM hands the full sum back while the camera
        computer still writes the frames, and the next dose-fractionation shot waits until
        they are written. SerialEM offers it only for such shots, on K2/K3 cameras (the full
        sum with GMS 2.31 or later); where it refuses the command the lever is dropped and the
        run goes on without it. Shots without frames are unaffected."""
        self.early_return = bool(enabled)

    @property
    def size_px(self) -> tuple[int, int]:
        if self._size is None:
            width, height = self._core.session.floats("CameraProperties", n=2)
            self._size = (round(width), round(height))
        return self._size

    def specimen_to_camera_matrix(self, area: LowDoseArea) -> NDArray[np.float64]:
        area = LowDoseArea(area)
        binning = self._core.preset(area).binning
        return self._core.camera_matrix(AREA_LETTER[area]) / binning

    def acquire(self, area: LowDoseArea = LowDoseArea.RECORD) -> Image:
        """An image only: if a movie turned frame saving on for ``area``'s parameter set, it is
        turned off first (``SetDoseFracParams set 1 0``), since SerialEM saves the frames of
        every shot of such a set and a plain image (a retake, a set-up Record) would otherwise
        leave a movie on disk that no section links."""
        area = LowDoseArea(area)
        camera_set = CAMERA_SET[area]
        if camera_set in self._saving_frames:
            self._core.session.call("SetDoseFracParams", camera_set, 1, 0)
            self._saving_frames.discard(camera_set)
        return self._expose(area)

    def _expose(self, area: LowDoseArea) -> Image:
        core = self._core
        preset = core.preset(area)
        focus = core.focus_um()
        stage = core.stage_position()
        image_shift = core.image_shift_um()
        start = core.clock.now_s()
        core.session.call(ACQUIRE_COMMAND[area])
        core.area = AREA_LETTER[area]
        data = np.asarray(core.session.call("bufferImage", "A"), dtype=np.float32)
        if data.ndim != 2 or data.size == 0:
            raise CameraTimeoutError(f"SerialEM returned no {area} image (shape {data.shape})")
        if area in core.binning_unknown:
            preset = self._learn_binning(area, preset)
        end = core.clock.now_s()
        binning = preset.binning
        per_px_s = float(np.mean(data, dtype=np.float64)) / (binning**2 * preset.exposure_s)
        rate = per_px_s * core.electrons_per_count()
        dose = rate * preset.exposure_s / preset.unbinned_pixel_size_a**2
        core.presets[area] = preset.model_copy(update={"dose_rate_e_px_s": max(0.0, rate)})
        exposure_id = self._next_id()
        core.events.emit(
            ExposureTaken(
                time_s=end,
                exposure_id=exposure_id,
                area=area.value,
                dose_e_a2=dose,
                duration_s=end - start,
                mean_counts=float(np.mean(data, dtype=np.float64)),
            )
        )
        return Image(
            data=np.ascontiguousarray(data),
            area=area,
            pixel_size_a=preset.pixel_size_a,
            binning=binning,
            magnification=preset.magnification,
            exposure_s=preset.exposure_s,
            dose_e_a2=dose,
            defocus_um=focus + preset.defocus_offset_um,
            stage=stage,
            image_shift_um=image_shift,
            time_s=start,
            datetime=core.clock.datetime(),
            exposure_id=exposure_id,
            counts_per_electron=1.0 / core.electrons_per_count(),
            state=self._scope_state(area),
        )

    def _scope_state(self, area: LowDoseArea) -> ScopeState:
        """What an mdoc records of the microscope, read back from SerialEM after an exposure.

        Voltage and Cs come from the facility's settings (scripts cannot read them). After a
        Record (the exposures that go into mdocs), spot size, magnification index, intensity
        and the energy filter are read with ``ReportSpotSize``, ``ReportMagIndex``,
        ``ReportPercentC2`` and ``ReportEnergyFilter``. A value this SerialEM cannot report (an
        older version, no filter) stays unknown (``None``), and its mdoc key is left out as
        SerialEM leaves it out.
        """
        core = self._core
        if area is not LowDoseArea.RECORD:
            return ScopeState(voltage_kv=core.options.voltage_kv, cs_mm=core.options.cs_mm)
        spot = self._optional("ReportSpotSize", 1)
        mag_index = self._optional("ReportMagIndex", 1)
        c2 = self._optional("ReportPercentC2", 2)
        slit = self._optional("ReportEnergyFilter", 3)
        slit_in = slit is not None and slit[2] > 0
        return ScopeState(
            voltage_kv=core.options.voltage_kv,
            cs_mm=core.options.cs_mm,
            spot_size=None if spot is None else round(spot[0]),
            intensity=None if c2 is None else c2[1],
            mag_index=None if mag_index is None else round(mag_index[0]),
            slit_width_ev=(slit[0] if slit_in else 0.0) if slit is not None else None,
            energy_loss_ev=slit[1] if slit is not None and slit_in else 0.0,
        )

    def _optional(self, command: str, n: int) -> tuple[float, ...] | None:
        """``n`` numbers from a report command, or None if this SerialEM cannot give them."""
        if command in self._unreported:
            return None
        try:
            return self._core.session.floats(command, n=n)
        except SerialEMCommandError:
            self._unreported.add(command)  # not asked again: an older SerialEM, no filter
            return None

    def _learn_binning(self, area: LowDoseArea, preset: AreaPreset) -> AreaPreset:
        """The binning of ``area`` from ``ImageProperties A`` (width, height, binning, ...)."""
        core = self._core
        values = core.session.floats("ImageProperties", "A", n=3)
        learned = preset.model_copy(update={"binning": max(1, round(values[2]))})
        core.presets[area] = learned
        core.binning_unknown.discard(area)
        return learned

    def _next_id(self) -> int:
        core = self._core
        core.n_exposures += 1
        provider = self.exposure_ids
        if callable(provider):
            return int(provider())
        return core.n_exposures - 1

    def _ask_early_return(self) -> bool:
        """``EarlyReturnNextShot -1``; False (and the lever off) where SerialEM refuses it."""
        try:
            self._core.session.call("EarlyReturnNextShot", -1)
        except SerialEMCommandError as exc:
            _log.warning("early return dropped: SerialEM refused EarlyReturnNextShot (%s)", exc)
            self.early_return = False
            return False
        return True

    def acquire_movie(
        self, area: LowDoseArea = LowDoseArea.RECORD, n_frames: int | None = None
    ) -> Movie:
        area = LowDoseArea(area)
        core = self._core
        camera_set = CAMERA_SET[area]
        if camera_set not in self._saving_frames:  # dose fractionation with frame saving on
            core.session.call("SetDoseFracParams", camera_set, 1, 1)
            core.originals.camera_sets_changed = True
            self._saving_frames.add(camera_set)
        early = self.early_return and self._ask_early_return()
        image = self._expose(area)
        path = str(self._core.session.call("ReportLastFrameFile") or "")
        if not path:
            raise SerialEMCommandError(
                "ReportLastFrameFile", f"no frames were saved: turn frame saving on for {area}"
            )
        if early:  # still being written: the run links the file, nothing reads it now
            n_saved = round(self._core.session.floats("ReportNumFramesSaved", n=1)[0])
            frames = np.zeros((max(1, n_saved), 0, 0), np.float32)
        else:
            try:
                frames = np.asarray(read_frames(Path(path)), dtype=np.float32)
            except (OSError, FormatError) as exc:
                raise SerialEMCommandError(
                    "ReportLastFrameFile",
                    f"cannot read the frames SerialEM saved at {path}: {exc}",
                ) from exc
        n = frames.shape[0]
        return Movie(
            frames=frames,
            frame_dose_e_a2=image.dose_e_a2 / max(1, n),
            frame_time_s=image.exposure_s / max(1, n),
            image=image,
            source_path=Path(path),
        )
