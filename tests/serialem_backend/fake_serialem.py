"""A recording fake with the interface of SerialEM's ``serialem`` module, over the twin.

Each command the backend uses is a method with SerialEM's name and argument order; it records
``(name, args)`` in :attr:`FakeSerialEM.calls` and does what SerialEM documents, with the
twin's physics underneath (so the images are real and alignments mean something). It knows
only the commands the backend needs: anything else is missing, as in an old SerialEM.

Faults on demand: :meth:`stop_at` raises ``SEMexited('User STOP')`` on the n-th call of a
command (the operator pressing STOP); :meth:`busy` answers ``SEMmoduleError('... busy')`` the
next n times a command is sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tomopilot.instrument import ImageShiftLimitError, InstrumentError, LowDoseArea
from tomopilot.instrument.twin import TwinConfig, TwinMicroscope
from tomopilot.io.frames import write_frames

LETTER_AREA = {
    "V": LowDoseArea.VIEW,
    "F": LowDoseArea.FOCUS,
    "T": LowDoseArea.TRIAL,
    "R": LowDoseArea.RECORD,
    "S": LowDoseArea.SEARCH,
}
SET_AREA = {
    "V": LowDoseArea.VIEW,
    "F": LowDoseArea.FOCUS,
    "T": LowDoseArea.TRIAL,
    "R": LowDoseArea.RECORD,
    "P": LowDoseArea.PREVIEW,
    "S": LowDoseArea.SEARCH,
}


class SEMerror(Exception):
    """The module's error for a failed command."""


class SEMmoduleError(Exception):
    """The module's error for the connection (and a busy SerialEM)."""


class SEMexited(Exception):
    """The module's error when the script is stopped."""


class FakeSerialEM:
    """SerialEM's Python interface, recorded, over a :class:`TwinMicroscope`."""

    SEMerror = SEMerror
    SEMmoduleError = SEMmoduleError
    SEMexited = SEMexited
    simulated_clock = True  # the twin's clock: no time passes between commands

    def __init__(self, twin: TwinMicroscope, *, version: int = 40200) -> None:
        self.twin = twin
        self.version = version
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.low_dose = True
        self.area = "R"
        self.valve_open = True
        self.target_defocus = 0.0
        self.autofocus_result: tuple[float, float] | None = None
        self.buffers: dict[str, Any] = {}
        self.last_exposure_id = -1
        self.saving_frames: dict[str, bool] = {}
        self.frames_dir: Path | None = None
        self.n_frame_files = 0
        self.last_frame_file = ""
        self._stops: dict[str, int] = {}
        self._busy: dict[str, int] = {}
        self._counts: dict[str, int] = {}
        self._original_presets = {a: twin.optics.preset(a) for a in LowDoseArea}

    # -- faults and recording -----------------------------------------------------------------
    def stop_at(self, command: str, occurrence: int) -> None:
        """Raise SEMexited on the ``occurrence``-th call of ``command`` from now."""
        self._stops[command] = self._counts.get(command, 0) + occurrence

    def busy(self, command: str, times: int) -> None:
        """Answer 'busy' the next ``times`` calls of ``command``."""
        self._busy[command] = times

    def names(self) -> list[str]:
        """The command names called so far."""
        return [name for name, _ in self.calls]

    def _enter(self, name: str, args: tuple[Any, ...]) -> None:
        self.calls.append((name, args))
        if self._busy.get(name, 0) > 0:
            self._busy[name] -= 1
            raise SEMmoduleError("SerialEM is busy")
        self._counts[name] = self._counts.get(name, 0) + 1
        if self._stops.get(name) == self._counts[name]:
            raise SEMexited("User STOP")

    def __getattribute__(self, name: str) -> Any:
        attr = object.__getattribute__(self, name)
        if (name[:1].isupper() and callable(attr) and not isinstance(attr, type)) or name in (
            "bufferImage",
        ):
            enter = object.__getattribute__(self, "_enter")

            def recorded(*args: Any) -> Any:
                enter(name, args)
                try:
                    return attr(*args)
                except ImageShiftLimitError as exc:
                    raise SEMerror(f"{name}: {exc}") from exc
                except (InstrumentError, ValueError) as exc:
                    raise SEMerror(f"{name}: {exc}") from exc

            return recorded
        return attr

    # -- helpers --------------------------------------------------------------------------------
    def _area(self) -> LowDoseArea:
        return LETTER_AREA[self.area]

    def _offset(self) -> float:
        return self.twin.optics.preset(self._area()).defocus_offset_um if self.area in "VS" else 0.0

    # -- general --------------------------------------------------------------------------------
    def IsVersionAtLeast(self, version: int, date: int = 0) -> float:
        return 1.0 if int(version) <= self.version else 0.0

    def ReportProperty(self, name: str) -> float:
        if name == "MaximumTiltAngle":
            return float(self.twin.stage.limits.tilt_deg)
        if name == "ImageShiftLimit":
            return float(self.twin.optics.image_shift_limit_um)
        raise SEMerror(f"ReportProperty: unknown property {name}")

    def ReportClock(self) -> float:
        return float(self.twin.clock.now_s())

    def Delay(self, amount: float, unit: str = "sec") -> None:
        factor = {"sec": 1.0, "s": 1.0, "msec": 1e-3, "ms": 1e-3, "min": 60.0}[unit]
        self.twin.clock.sleep(float(amount) * factor)

    # -- low dose -------------------------------------------------------------------------------
    def ReportLowDose(self) -> tuple[float, float]:
        return (1.0 if self.low_dose else 0.0, float("VFTRS".index(self.area)))

    def SetLowDoseMode(self, on: int) -> float:
        was = self.low_dose
        self.low_dose = bool(on)
        return 1.0 if was else 0.0

    def GoToLowDoseArea(self, letter: str) -> None:
        if letter not in LETTER_AREA:
            raise SEMerror(f"GoToLowDoseArea: bad area {letter}")
        self.area = letter

    def ReportMag(self) -> tuple[float, float]:
        return (float(self.twin.optics.preset(self._area()).magnification), 0.0)

    def SetMag(self, mag: int) -> None:
        area = self._area()
        old = self.twin.optics.preset(area)
        self.twin.optics.set_preset(
            area,
            old.model_copy(
                update={
                    "magnification": int(mag),
                    "unbinned_pixel_size_a": old.unbinned_pixel_size_a * old.magnification / mag,
                }
            ),
        )

    def ReportBinning(self, camera_set: str) -> float:
        return float(self.twin.optics.preset(SET_AREA[camera_set]).binning)

    def ReportExposure(self, camera_set: str) -> tuple[float, float]:
        return (float(self.twin.optics.preset(SET_AREA[camera_set]).exposure_s), 0.0)

    def ReportLDDefocusOffset(self, letter: str) -> float:
        return float(self.twin.optics.preset(LETTER_AREA[letter]).defocus_offset_um)

    def ReportAxisPosition(self, letter: str) -> tuple[float, float]:
        return (float(self.twin.optics.preset(LETTER_AREA[letter]).offset_along_axis_um), 0.0)

    def SetAxisPosition(self, letter: str, distance: float, angle: float = 0.0) -> None:
        area = LETTER_AREA[letter]
        preset = self.twin.optics.preset(area)
        self.twin.optics.set_preset(
            area, preset.model_copy(update={"offset_along_axis_um": distance})
        )

    def _update_set(self, camera_set: str, **changes: Any) -> None:
        area = SET_AREA[camera_set]
        preset = self.twin.optics.preset(area)
        self.twin.optics.set_preset(area, preset.model_copy(update=changes))

    def SetExposure(self, camera_set: str, exposure: float, drift: float = 0.0) -> None:
        self._update_set(camera_set, exposure_s=float(exposure))

    def SetBinning(self, camera_set: str, binning: int) -> None:
        self._update_set(camera_set, binning=int(binning))

    def SetCameraArea(self, camera_set: str, *box: Any) -> None:
        if box == ("F",):
            self._update_set(camera_set, camera_area_px=None)
            return
        left, right, top, bottom = (int(v) for v in box)
        self._update_set(camera_set, camera_area_px=(right - left, bottom - top))

    def RestoreCameraSet(self, camera_set: str | None = None) -> None:
        for letter, area in SET_AREA.items():
            if camera_set in (None, letter):
                now = self.twin.optics.preset(area)
                old = self._original_presets[area]
                self.twin.optics.set_preset(
                    area,
                    now.model_copy(
                        update={
                            "exposure_s": old.exposure_s,
                            "binning": old.binning,
                            "camera_area_px": old.camera_area_px,
                        }
                    ),
                )

    # -- calibrations ---------------------------------------------------------------------------
    def SpecimenToCameraMatrix(self, mag_index: int) -> tuple[float, ...]:
        area = self._area()
        binning = self.twin.optics.preset(area).binning
        return tuple(
            float(v) for v in (self.twin.camera.specimen_to_camera_matrix(area) * binning).ravel()
        )

    def SpecimenToISMatrix(self, mag_index: int) -> tuple[float, ...]:
        return tuple(float(v) for v in self.twin.optics.specimen_to_is_matrix().ravel())

    def CameraProperties(self, camera: int = 0) -> tuple[float, ...]:
        width, height = self.twin.camera.size_px
        return (float(width), float(height), 0.0, 5.0)

    def ReportCameraProperty(self, camera: int, name: str) -> float:
        if name == "CountsPerElectron":
            return float(self.twin.config.camera.counts_per_electron)
        raise SEMerror(f"ReportCameraProperty: unknown property {name}")

    # -- stage ----------------------------------------------------------------------------------
    def ReportStageXYZ(self) -> tuple[float, float, float]:
        p = self.twin.stage.position()
        return (p.x_um, p.y_um, p.z_um)

    def ReportTiltAngle(self) -> float:
        return float(self.twin.stage.position().tilt_deg)

    def MoveStageTo(self, x: float, y: float, z: float | None = None) -> None:
        self.twin.stage.move_to(x_um=x, y_um=y, z_um=z)

    def TiltTo(self, tilt: float) -> None:
        self.twin.stage.tilt_to(float(tilt))

    def ReportTiltAxisOffset(self) -> tuple[float, ...]:
        return (float(self.twin.stage.tilt_axis_offset_um), 0.0, 0.0, 0.0, 0.0, 1.0)

    def SetTiltAxisOffset(self, offset: float) -> None:
        self.twin.stage.set_tilt_axis_offset_um(float(offset))

    def Eucentricity(self, flags: int = 3) -> None:
        self.twin.measurements.eucentricity(fine=int(flags) == 2)

    # -- image shift and focus ------------------------------------------------------------------
    def SetImageShift(self, x: float, y: float, settle: float = 0, comp: int = 0) -> None:
        self.twin.optics.set_image_shift_units(float(x), float(y))

    def ReportImageShift(self) -> tuple[float, ...]:
        x, y = self.twin.optics.image_shift_units()
        return (x, y, 0.0, 0.0, 0.0, 0.0)

    def ReportSpecimenShift(self) -> tuple[float, float]:
        return self.twin.optics.image_shift_um()

    def ReportDefocus(self) -> float:
        return float(self.twin.optics.focus_um() + self._offset())

    def SetDefocus(self, value: float) -> None:
        self.twin.optics.set_focus_um(float(value) - self._offset())

    def SetTargetDefocus(self, value: float) -> None:
        self.target_defocus = float(value)

    def ReportTargetDefocus(self) -> float:
        return self.target_defocus

    def G(self, mode: int = 1, area: int = 0) -> None:
        if int(mode) == -1:
            measured = self.twin.measurements.measure_defocus_um()
        else:
            measured = self.twin.measurements.autofocus(self.target_defocus)
        self.area = "F"
        self.autofocus_result = (measured, 0.0)

    def ReportAutoFocus(self) -> tuple[float, float]:
        if self.autofocus_result is None:
            return (0.0, -1.0)
        return self.autofocus_result

    # -- camera ---------------------------------------------------------------------------------
    def SetDoseFracParams(self, camera_set: str, dose_frac: int, save: int = 0, *rest: int) -> None:
        self.saving_frames[camera_set] = bool(save)

    def _acquire(self, area: LowDoseArea, letter: str) -> None:
        camera_set = {"R": "R", "V": "V", "F": "F", "T": "T", "S": "S"}[letter]
        if area is LowDoseArea.PREVIEW:
            camera_set = "P"
        if self.saving_frames.get(camera_set) and self.frames_dir is not None:
            movie = self.twin.camera.acquire_movie(area)
            image = movie.image
            self.n_frame_files += 1
            self.last_frame_file = str(
                write_frames(self.frames_dir / f"frames_{self.n_frame_files:03d}.mrc", movie.frames)
            )
        else:
            image = self.twin.camera.acquire(area)
        self.area = letter
        self.last_exposure_id = image.exposure_id
        self.buffers = {
            "A": image.data,
            **{chr(ord(k) + 1): v for k, v in self.buffers.items() if k < "C"},
        }

    def R(self) -> None:
        self._acquire(LowDoseArea.RECORD, "R")

    def V(self) -> None:
        self._acquire(LowDoseArea.VIEW, "V")

    def F(self) -> None:
        self._acquire(LowDoseArea.FOCUS, "F")

    def T(self) -> None:
        self._acquire(LowDoseArea.TRIAL, "T")

    def L(self) -> None:
        self._acquire(LowDoseArea.PREVIEW, "R")

    def Search(self) -> None:
        self._acquire(LowDoseArea.SEARCH, "S")

    def bufferImage(self, buffer: str) -> np.ndarray:
        if buffer not in self.buffers:
            raise SEMerror(f"bufferImage: buffer {buffer} is empty")
        return np.asarray(self.buffers[buffer])

    def ReportLastFrameFile(self) -> str:
        return self.last_frame_file

    # -- housekeeping ---------------------------------------------------------------------------
    def ReportColumnOrGunValve(self) -> float:
        return 1.0 if self.valve_open else 0.0

    def SetColumnOrGunValve(self, state: int) -> None:
        self.valve_open = bool(state)

    def AreDewarsFilling(self) -> float:
        self._dewars = self.twin.housekeeping.dewar_status()  # one poll (the twin charges it)
        self._dewars_at = self.twin.clock.now_s()
        return 1.0 if self._dewars.filling else 0.0

    def DewarsRemainingTime(self) -> float:
        cached = getattr(self, "_dewars", None)
        if cached is None or getattr(self, "_dewars_at", None) != self.twin.clock.now_s():
            cached = self.twin.housekeeping.dewar_status()
        return float(cached.seconds_until_next_fill)

    def LongOperation(self, *pairs: str) -> None:
        for op in pairs[0::2]:
            if op.lower().startswith("re"):
                self.twin.housekeeping.refill_dewar()
            elif op.lower().startswith("ff"):
                self.twin.housekeeping.flash_feg()
            else:
                raise SEMerror(f"LongOperation: unknown operation {op}")

    def IsFEGFlashingAdvised(self, high: int) -> float:
        if int(high) == 1:
            return 0.0
        return 1.0 if self.twin.housekeeping.flash_advised() else 0.0

    def NextFEGFlashHighTemp(self, high: int) -> None:
        return None

    def RefineZLP(self, interval: float = 0.0) -> None:
        self.twin.housekeeping.refine_zlp()


def small_twin(seed: int = 5) -> TwinMicroscope:
    """A twin with small Records (256² after binning) so tests stay fast."""
    config = TwinConfig.model_validate(
        {
            "seed": seed,
            "presets": {
                "record": {"camera_area_px": [2048, 2048], "binning": 8},
                "preview": {"camera_area_px": [2048, 2048], "binning": 8, "exposure_s": 0.5},
                "view": {"camera_area_px": [2048, 2048], "binning": 8},
            },
        }
    )
    return TwinMicroscope(config)


def short_run_config(path: Path, run_dir: Path, microscope: dict[str, Any]) -> Path:
    """Write a short run config (3 targets at 0, ±3, ±6°, groups of 2) to ``path``."""
    import yaml

    data = {
        "microscope": microscope,
        "targets": [{"SSX": 0.0, "SSY": 0.0}, {"SSX": 1.2, "SSY": 0.8}, {"SSX": -1.0, "SSY": 1.4}],
        "settings": {
            "minTilt": -6,
            "maxTilt": 6,
            "step": 3,
            "groupSize": 2,
            "pretilt": 10,
            "maxDefocus": -4,
            "minDefocus": -3,
            "delayIS": 0.1,
            "delayTilt": 0.1,
        },
        "output": {"dir": str(run_dir), "root": "L1"},
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
