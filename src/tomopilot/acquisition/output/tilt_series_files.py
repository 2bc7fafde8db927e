"""The files of one target's tilt series, and the run's side files, as SerialEM/PACEtomo write them.

:class:`TiltSeriesFiles` owns ``<root>_ts_NNN.mrc`` and its ``.mrc.mdoc`` (and the movies under
``frames/``). :meth:`~TiltSeriesFiles.append` writes the frames, then the stack section, then
the mdoc section, and returns only when all are durable, so a journal record written after it
may count the exposure as committed. On resume, :meth:`~TiltSeriesFiles.open_existing` makes
the stack and the mdoc hold exactly the committed sections again, whatever a crash left: a
torn or extra section is dropped (never duplicated), a half-finished sort by tilt is finished
or undone, and movies of dropped exposures are removed.

The run's side files (target previews, settings dump, log) are in
:mod:`tomopilot.acquisition.output.side_files`.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from tomopilot.core.files import atomic_write_text
from tomopilot.instrument.types import Image, LowDoseArea
from tomopilot.io.errors import FormatError
from tomopilot.io.frame_names import (
    FRAMES_FOLDER,
    frame_file_name,
    frame_files_of,
    link_tilt_frames,
    sub_frame_path,
    write_tilt_frames,
)
from tomopilot.io.mdoc_format import (
    MdocHeader,
    MdocSection,
    Newline,
    serialem_time_stamp_s,
    serialem_title,
    tilt_axis_title,
)
from tomopilot.io.mdoc_writer import MdocWriter, mdoc_section_count, parse_mdoc, repair_mdoc
from tomopilot.io.mrc_stack import (
    ImageShapeError,
    MrcStackWriter,
    repair_stack,
    stack_section_count,
)
from tomopilot.io.sort_by_tilt import SortResult, recover_interrupted_sort, sort_tilt_series
from tomopilot.io.stack_pixels import mode_of, section_stats, to_stack_dtype

_log = logging.getLogger(__name__)

# SerialEM's LowDoseConSet: low-dose area index + 1 (View 0, Focus 1, Trial 2, Record 3, ...).
_LOW_DOSE_CON_SET = {
    LowDoseArea.VIEW: 1,
    LowDoseArea.FOCUS: 2,
    LowDoseArea.TRIAL: 3,
    LowDoseArea.RECORD: 4,
    LowDoseArea.PREVIEW: 5,
    LowDoseArea.SEARCH: 6,
}


def section_from_image(image: Image, **fields: Any) -> MdocSection:
    """An mdoc section with what an :class:`~tomopilot.instrument.Image` records.

    Tilt, stage position, magnification, dose, pixel size, defocus, image shift, exposure
    time, binning, counts per electron, low-dose area and time come from the image; the
    microscope and camera state (illumination, spot size, mag index, camera, energy filter…)
    from its :class:`~tomopilot.instrument.types.ScopeState`; ``DoseRate`` is measured from
    the pixels, as SerialEM does (electrons per unbinned pixel per second at the camera).
    ``fields`` (any :class:`MdocSection` field, e.g. ``prior_record_dose_e_a2``,
    ``target_defocus_um``, ``specimen_shift_um``) add to or override them.
    """
    base = MdocSection(
        tilt_angle_deg=image.tilt_deg,
        stage_position_um=(image.stage.x_um, image.stage.y_um),
        stage_z_um=image.stage.z_um,
        magnification=image.magnification,
        exposure_dose_e_a2=image.dose_e_a2,
        dose_rate_e_px_s=image.mean_counts_per_s / image.counts_per_electron,
        pixel_spacing_a=image.pixel_size_a,
        defocus_um=image.defocus_um,
        image_shift_um=image.image_shift_um,
        exposure_time_s=image.exposure_s,
        binning=image.binning,
        low_dose_con_set=_LOW_DOSE_CON_SET.get(image.area),
        counts_per_electron=image.counts_per_electron,
        date_time=image.datetime,
        time_stamp_s=serialem_time_stamp_s(image.datetime),
    )
    state = image.state
    if state is not None:
        slit = None
        if state.slit_width_ev is not None:
            slit = (state.slit_width_ev, state.energy_loss_ev if state.slit_width_ev else 0.0)
        base = replace(
            base,
            intensity=state.intensity,
            spot_size=state.spot_size,
            camera_index=state.camera_index,
            divided_by_2=state.divided_by_2,
            operating_mode=state.operating_mode,
            using_cds=state.using_cds,
            mag_index=state.mag_index,
            filter_slit_and_loss_ev=slit,
            uncropped_size=state.uncropped_size_px,
            rotation_and_flip=state.rotation_and_flip,
        )
    return replace(base, **fields)


class TiltSeriesFiles:
    """Stack, mdoc and movies of one target's tilt series, appended crash-safely.

    Parameters
    ----------
    run_dir
        Folder of the run; the stack is ``run_dir/<ts_stem>.mrc``, the movies go to
        ``run_dir/frames``.
    ts_stem
        Tilt-series stem, e.g. ``L03_ts_001``.
    pixel_size_a
        Pixel size of the saved images (Å).
    shape_yx
        (height, width) of the images.
    dtype
        Stack data type: int16 (SerialEM's usual mode 1), float32 or uint16.
    voltage_kv
        Accelerating voltage, for the mdoc header.
    tilt_axis_deg, binning, spot_size, camera_index
        For the second title (``Tilt axis angle = ..., binning = ...``).
    site
        Microscope or site name for the first title (``SerialEM: <site>  date  time``).
    created
        Time the series was opened (first title); the simulated clock's time for the twin.
    newline
        Line ends of the mdoc: ``"\\n"`` or ``"\\r\\n"`` (as on the Windows scope PC).
    frame_suffix
        Movie format when frames are saved: ``.tif``, ``.mrc`` or ``.eer``.

    Notes
    -----
    Files of a series that holds no committed section yet are replaced, so constructing
    again after a crash during creation is safe; a series with sections is refused (use
    :meth:`open_existing`).
    """

    def __init__(
        self,
        run_dir: Path | str,
        ts_stem: str,
        *,
        pixel_size_a: float,
        shape_yx: tuple[int, int],
        dtype: DTypeLike = np.int16,
        voltage_kv: float,
        tilt_axis_deg: float,
        binning: float = 1,
        spot_size: int = 1,
        camera_index: int = 0,
        site: str = "tomopilot digital twin",
        created: datetime,
        newline: Newline = "\n",
        frame_suffix: str = ".tif",
    ) -> None:
        self.run_dir = Path(run_dir)
        self.ts_stem = ts_stem
        self.frame_suffix = frame_suffix
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for path in (self.stack_path, self.mdoc_path):
            if path.exists() and _holds_sections(path):
                raise FileExistsError(f"{path} already holds exposures; use open_existing")
        self.stack_path.unlink(missing_ok=True)
        self.mdoc_path.unlink(missing_ok=True)
        titles = (
            serialem_title(site, created),
            tilt_axis_title(
                tilt_axis_deg, binning=binning, spot_size=spot_size, camera_index=camera_index
            ),
        )
        self.stack = MrcStackWriter(
            self.stack_path,
            shape_yx=shape_yx,
            dtype=dtype,
            pixel_size_a=pixel_size_a,
            labels=titles,
        )
        header = MdocHeader(
            pixel_spacing_a=pixel_size_a,
            image_file=self.stack_path.name,
            image_size_xy=(shape_yx[1], shape_yx[0]),
            data_mode=mode_of(dtype),
            voltage_kv=voltage_kv,
            titles=titles,
        )
        self.mdoc = MdocWriter(self.mdoc_path, header, newline=newline)

    @classmethod
    def open_existing(
        cls,
        run_dir: Path | str,
        ts_stem: str,
        *,
        n_committed: int | None = None,
        frame_suffix: str = ".tif",
    ) -> TiltSeriesFiles:
        """Reopen a series after a crash, holding exactly ``n_committed`` sections.

        Parameters
        ----------
        n_committed
            Exposures the journal counts as committed. ``None`` keeps the sections that
            both the stack and the mdoc hold completely. A target with no committed exposure
            is simply constructed again (the files may not both exist yet).

        Raises
        ------
        TruncatedFileError
            If either file holds fewer than ``n_committed`` complete sections.
        FormatError
            If either file is missing or corrupt.
        """
        files = cls.__new__(cls)
        files.run_dir = Path(run_dir)
        files.ts_stem = ts_stem
        files.frame_suffix = frame_suffix
        files.repair(n_committed)
        return files

    @property
    def stack_path(self) -> Path:
        """``<run_dir>/<ts_stem>.mrc``."""
        return self.run_dir / f"{self.ts_stem}.mrc"

    @property
    def mdoc_path(self) -> Path:
        """``<run_dir>/<ts_stem>.mrc.mdoc``."""
        return self.run_dir / f"{self.ts_stem}.mrc.mdoc"

    @property
    def frames_dir(self) -> Path:
        """``<run_dir>/frames``."""
        return self.run_dir / FRAMES_FOLDER

    @property
    def n_sections(self) -> int:
        """Sections committed to both files."""
        return self.stack.n_sections

    def repair(self, n_committed: int | None = None) -> int:
        """Make stack and mdoc hold exactly ``n_committed`` sections; return that number.

        Finishes or undoes an interrupted sort by tilt, truncates a torn or uncommitted
        section from either file, and deletes movies of exposures beyond the committed ones.
        """
        for path in (self.stack_path, self.mdoc_path):
            if not path.is_file():
                raise FormatError("tilt-series file not found", path=path)
        recover_interrupted_sort(self.stack_path, self.mdoc_path)
        if n_committed is None:
            n_committed = min(
                stack_section_count(self.stack_path), mdoc_section_count(self.mdoc_path)
            )
        self.stack = repair_stack(self.stack_path, n_committed)
        self.mdoc = repair_mdoc(self.mdoc_path, n_committed)
        for orphan in frame_files_of(self.frames_dir, self.ts_stem, n_committed):
            _log.info("%s: removing movie of uncommitted exposure", orphan)
            orphan.unlink()
        return n_committed

    def append(
        self,
        image_data: ArrayLike,
        section: MdocSection,
        frames: NDArray[Any] | None = None,
        *,
        frame_seed: int = 0,
        frames_file: Path | None = None,
    ) -> int:
        """Write one exposure: movie (if any), stack section, mdoc section; return its index.

        ``MinMaxMean`` (of the image as stored) is filled when the section has none; with
        ``frames``, ``SubFramePath``, ``NumSubFrames`` and ``FrameDosesAndNumber`` are filled
        when absent. With ``frames_file`` (where the instrument already saved ``frames``), the
        movie is linked into the frames folder under its usual name instead of written again.
        Returns only once everything is durable.

        Raises
        ------
        ImageShapeError
            If the image does not fit the stack (nothing is written).
        LossyConversionError
            If the image holds NaN or infinity (nothing is written).
        """
        index = self.stack.n_sections
        if self.mdoc.n_sections != index:
            raise FormatError(
                f"stack holds {index} sections but the mdoc {self.mdoc.n_sections}; repair first",
                path=self.mdoc_path,
            )
        array = np.asarray(image_data)
        if array.shape != self.stack.shape_yx:
            raise ImageShapeError(
                f"image of shape {array.shape} does not fit sections of {self.stack.shape_yx}",
                path=self.stack_path,
            )
        data, n_clipped = to_stack_dtype(array, self.stack.dtype, path=self.stack_path)
        if n_clipped:
            self.stack.clipped_pixels += n_clipped
            _log.warning(
                "%s: %d pixels clipped to the %s range in section %d",
                self.stack_path,
                n_clipped,
                self.stack.dtype.name,
                index,
            )
        if section.min_max_mean is None:
            stats = section_stats(data)
            section = replace(section, min_max_mean=(stats.min, stats.max, stats.mean))
        if frames is not None:
            section = self._write_frames(index, section, frames, frame_seed, frames_file)
        self.stack.append(data)
        self.mdoc.append(section)
        return index

    def _write_frames(
        self,
        index: int,
        section: MdocSection,
        frames: NDArray[Any],
        seed: int,
        frames_file: Path | None,
    ) -> MdocSection:
        if section.date_time is None:
            raise ValueError("a section with frames needs its date_time (it names the file)")
        suffix = self.frame_suffix if frames_file is None else frames_file.suffix
        name = frame_file_name(
            self.ts_stem, index, section.tilt_angle_deg, section.date_time, suffix
        )
        n_frames = 1 if frames.ndim == 2 else int(frames.shape[0])
        if frames_file is not None:
            link_tilt_frames(self.frames_dir, name, frames_file)
        else:
            write_tilt_frames(
                self.frames_dir, name, frames, pixel_size_a=section.pixel_spacing_a, seed=seed
            )
        frame_dose = (section.exposure_dose_e_a2 or 0.0) / n_frames
        return replace(
            section,
            sub_frame_path=section.sub_frame_path or sub_frame_path(name),
            num_sub_frames=section.num_sub_frames or n_frames,
            frame_doses_and_number=section.frame_doses_and_number or ((frame_dose, n_frames),),
        )

    @property
    def rawtlt_path(self) -> Path:
        """``<ts stem>.rawtlt``: the tilt angles in stack order (IMOD, AreTomo)."""
        return self.run_dir / f"{self.ts_stem}.rawtlt"

    def finish(self, *, sort_by_tilt: bool) -> SortResult | None:
        """Close the series; with ``sort_by_tilt``, reorder it by tilt (PACEtomo's sortByTilt).

        Then writes :attr:`rawtlt_path`, one angle per line in the stack's order, as IMOD's
        ``extracttilts`` would from the mdoc (etomo and AreTomo's ``-AngFile`` read it; no
        ``.tlt`` is written, that name is tiltalign's output). Safe to call again after a
        crash during the sort.
        """
        result = None
        if sort_by_tilt:
            result = sort_tilt_series(self.stack_path, self.mdoc_path)
            self.stack = MrcStackWriter.open(self.stack_path)
            self.mdoc = MdocWriter.open(self.mdoc_path)
        angles = [float(s.items["TiltAngle"]) for s in parse_mdoc(self.mdoc_path).sections]
        atomic_write_text(self.rawtlt_path, "".join(f"{a:.2f}\n" for a in angles))
        return result


def _holds_sections(path: Path) -> bool:
    try:
        if path.suffix == ".mdoc":
            return mdoc_section_count(path) > 0
        return stack_section_count(path) > 0
    except FormatError:
        return True  # unreadable: never overwrite silently
