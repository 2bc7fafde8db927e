"""File and directory commands: open, save, read, close; autodoc keys; the working directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import mrcfile
import numpy as np

from tomopilot.instrument.twin_serialem.buffers import BufferImage
from tomopilot.instrument.twin_serialem.camera_commands import need, put_image
from tomopilot.instrument.twin_serialem.commands import Reported, command
from tomopilot.instrument.twin_serialem.errors import SEMerror
from tomopilot.instrument.twin_serialem.image_files import ImageFile, rotation_angle_deg, value_text
from tomopilot.instrument.twin_serialem.session import Session
from tomopilot.io.mdoc_format import MdocSection
from tomopilot.io.mrc_stack import MrcStackWriter

RECORD_SET = 3


class OpenFiles:
    """The files a session has open, and which is current."""

    def __init__(self) -> None:
        self.files: list[ImageFile] = []
        self.current = -1
        self.allow_overwrite = False

    def current_file(self, name: str) -> ImageFile:
        """The current file, or SerialEM's error when none is open."""
        if self.current < 0:
            raise SEMerror(f"There is no file open in script statement: {name}", name)
        return self.files[self.current]


def files_of(session: Session) -> OpenFiles:
    """The session's open files."""
    found = session.extensions.get("files")
    if found is None:
        found = session.extensions["files"] = OpenFiles()
    assert isinstance(found, OpenFiles)
    return found


@command("OpenNewFile", "S")
def open_new_file(session: Session, name: str) -> Reported:
    """Open a new MRC file (and its .mdoc); refuses an existing file unless overwrite is on."""
    files = files_of(session)
    path = session.resolve(name)
    mdoc = path.with_name(path.name + ".mdoc")
    if path.exists() or mdoc.exists():
        if not files.allow_overwrite:
            raise SEMerror(
                f"File {path} already exists (AllowFileOverwrite 1 to replace it) in script "
                f"statement: OpenNewFile {name}",
                "OpenNewFile",
            )
        path.unlink(missing_ok=True)
        mdoc.unlink(missing_ok=True)
    if not path.parent.is_dir():
        raise SEMerror(
            f"Directory {path.parent} does not exist in script statement: OpenNewFile {name}",
            "OpenNewFile",
        )
    files.files.append(ImageFile(path))
    files.current = len(files.files) - 1
    return None


@command("OpenOldFile", "S")
def open_old_file(session: Session, name: str) -> Reported:
    """Open an existing MRC file to read sections from it or append to it."""
    files = files_of(session)
    path = session.resolve(name)
    if not path.is_file():
        raise SEMerror(
            f"File {path} does not exist in script statement: OpenOldFile {name}", "OpenOldFile"
        )
    files.files.append(ImageFile(path, existing=MrcStackWriter.open(path)))
    files.current = len(files.files) - 1
    return None


@command("SwitchToFile", "I")
def switch_to_file(session: Session, number: int) -> Reported:
    """Make open file ``number`` (1-based) the current one."""
    files = files_of(session)
    if not 1 <= number <= len(files.files):
        raise ValueError(f"There is no open file number {number} (1 to {len(files.files)})")
    files.current = number - 1
    return None


@command("CloseFile", "|S")
def close_file(session: Session, option: str = "") -> Reported:
    """Close the current file (``e``: fail if none is open)."""
    files = files_of(session)
    if files.current < 0:
        if option.lower().startswith("e"):
            raise SEMerror("There is no file open in script statement: CloseFile e", "CloseFile")
        return None
    files.files[files.current].write_autodoc()
    del files.files[files.current]
    files.current = len(files.files) - 1
    return None


def mdoc_section(session: Session, image: BufferImage) -> MdocSection:
    """What SerialEM writes for an image in its ``[ZValue]`` section."""
    prior = None
    if image.camera_set == RECORD_SET:
        prior = session.dose_accumulators.get(session.dose_area, 0.0)
    return MdocSection(
        tilt_angle_deg=image.tilt_deg,
        stage_position_um=(image.stage_xyz_um[0], image.stage_xyz_um[1]),
        stage_z_um=image.stage_xyz_um[2],
        magnification=image.magnification or None,
        exposure_dose_e_a2=image.dose_e_a2,
        pixel_spacing_a=image.pixel_size_a,
        defocus_um=image.defocus_um,
        image_shift_um=image.image_shift_units,
        rotation_angle_deg=rotation_angle_deg(image),
        exposure_time_s=image.exposure_s,
        binning=float(image.binning),
        low_dose_con_set=(image.camera_set + 1 if image.low_dose else -image.camera_set - 1)
        if image.camera_set >= 0
        else None,
        target_defocus_um=session.target_defocus_um,
        prior_record_dose_e_a2=prior,
        date_time=image.taken,
        sub_frame_path=_frame_path(session, image),
        num_sub_frames=image.frames[1] if image.frames else None,
        frame_doses_and_number=((image.frames[2], image.frames[1]),) if image.frames else None,
    )


def _frame_path(session: Session, image: BufferImage) -> str | None:
    if not image.frames:
        return None
    path = Path(image.frames[0])
    return (
        str(path.relative_to(session.directory))
        if path.is_relative_to(session.directory)
        else str(path)
    )


@command("S", "|BI", aliases=("Save",))
def save(session: Session, letter: str = "A", file_number: int = 0) -> Reported:
    """Save a buffer's image to the current file (or to file number ``file_number``)."""
    files = files_of(session)
    if file_number:
        if not 1 <= file_number <= len(files.files):
            raise SEMerror(
                f"There is no open file number {file_number} in script statement: "
                f"Save {letter} {file_number}",
                "S",
            )
        target = files.files[file_number - 1]
    else:
        target = files.current_file("Save")
    image = need(session, letter, "Save")
    z = target.save(image, mdoc_section(session, image))
    image.saved_to = f"{target.path}:{z}"
    session.record.add(
        "image",
        file=str(target.path),
        section=z,
        exposure_id=image.exposure_id,
        camera_set=image.camera_set,
        tilt_deg=image.tilt_deg,
        target_defocus_um=session.target_defocus_um,
        time_s=image.time_s,
    )
    return None


def _autodoc_target(session: Session, name: str) -> ImageFile:
    return files_of(session).current_file(name)


@command("AddToAutodoc", "SV")
def add_to_autodoc(session: Session, key: str, value: object) -> Reported:
    """Add ``key = value`` to the last section of the current file's autodoc."""
    if not key or any(c in key for c in " =[]\n\r"):
        raise ValueError(f"{key!r} cannot be an autodoc key")
    try:
        _autodoc_target(session, "AddToAutodoc").add_to_autodoc(key, value_text(value))
    except ValueError as exc:
        raise ValueError(f"autodoc key {key}: {exc}") from exc
    return None


@command("WriteAutodoc")
def write_autodoc(session: Session) -> Reported:
    """Write the current file's autodoc."""
    _autodoc_target(session, "WriteAutodoc").write_autodoc()
    return None


@command("ReportFileZsize")
def report_file_zsize(session: Session) -> Reported:
    """Number of sections in the current file."""
    return (files_of(session).current_file("ReportFileZsize").n_sections,)


@command("ReportFileNumber")
def report_file_number(session: Session) -> Reported:
    """The current file's number (1-based), or −1 when no file is open."""
    files = files_of(session)
    return (files.current + 1 if files.current >= 0 else -1,)


@command("AllowFileOverwrite", "I")
def allow_file_overwrite(session: Session, allow: int) -> Reported:
    """Let OpenNewFile replace an existing file (1) or not (0)."""
    files_of(session).allow_overwrite = bool(allow)
    return None


@command("SetNewFileType", "I|I")
def set_new_file_type(session: Session, kind: int, montage_kind: int = 0) -> Reported:
    """0 = MRC (the twin writes MRC stacks only)."""
    if kind != 0 or montage_kind != 0:
        raise ValueError("The twin-backed module writes MRC files only (file type 0)")
    return None


@command("DoesFileExist", "S")
def does_file_exist(session: Session, name: str) -> Reported:
    """1 if the file exists, else 0."""
    return (1 if session.resolve(name).exists() else 0,)


def _read_section(session: Session, path: Path, z: int, letter: str, name: str) -> None:
    try:
        with mrcfile.mmap(path, mode="r", permissive=True) as mrc:
            data = np.asarray(mrc.data)
            pixel = float(mrc.voxel_size.x) or 1.0
    except (OSError, ValueError) as exc:
        raise SEMerror(f"Cannot read {path} ({exc}) in script statement: {name}", name) from exc
    stack = data if data.ndim == 3 else data[None]
    if not 0 <= z < stack.shape[0]:
        raise SEMerror(
            f"Section {z} is out of range (0 to {stack.shape[0] - 1}) in script statement: "
            f"{name} {z}",
            name,
        )
    base = session.buffers.get("A")
    put_image(session, np.array(stack[z], np.float32), letter, base)
    image = session.buffers.get(letter)
    assert image is not None
    image.pixel_size_a = pixel
    image.source = f"{path}:{z}"
    if base is not None and abs(base.pixel_size_a - pixel) > 1e-3:
        image.specimen_to_camera = base.specimen_to_camera * base.pixel_size_a / pixel


@command("ReadFile", "I|B")
def read_file(session: Session, z: int, letter: str = "") -> Reported:
    """Read section ``z`` of the current file into the read buffer (or ``letter``)."""
    current = files_of(session).current_file("ReadFile")
    target = letter or session.buffers.read_buffer(session.low_dose)
    _read_section(session, current.path, z, target, "ReadFile")
    return None


@command("ReadOtherFile", "IVS")
def read_other_file(session: Session, z: int, letter: object, name: str) -> Reported:
    """Read section ``z`` of another file into a buffer (−1 = the read buffer)."""
    if isinstance(letter, str) and len(letter) == 1 and letter.upper() in "ABCDEFGHIJKLMNOPQRST":
        target = letter.upper()
    elif letter == -1:
        target = session.buffers.read_buffer(session.low_dose)
    else:
        raise ValueError(f"Buffer must be a letter A to T or -1, not {letter!r}")
    path = session.resolve(name)
    if not path.is_file():
        raise SEMerror(
            f"File {path} does not exist in script statement: ReadOtherFile", "ReadOtherFile"
        )
    _read_section(session, path, z, target, "ReadOtherFile")
    return None


@command("ReportDirectory")
def report_directory(session: Session) -> Reported:
    """The working directory."""
    return (str(session.directory),)


@command("UserSetDirectory", "|S")
def user_set_directory(
    session: Session, prompt: str = "Choose a new current working directory"
) -> Reported:
    """Ask for a directory (answered from the answers file, default the current one)."""
    answer = session.answers.answer("UserSetDirectory", prompt, str(session.directory))
    path = session.resolve(str(answer))
    path.mkdir(parents=True, exist_ok=True)
    session.directory = path.resolve()
    return (str(session.directory),)


@command("SnapshotToFile", "FFIS|SS")
def snapshot_to_file(
    session: Session,
    zoom: float,
    scaling: float,
    scale_bar: int,
    kind: str,
    compression: str = "",
    name: str = "",
) -> Reported:
    """Save buffer A as an 8-bit TIFF snapshot (the twin has no display to grab)."""
    import tifffile

    if kind.upper() not in ("TIF", "TIFF", "-1", "CUR"):
        raise ValueError(f"The twin writes TIFF snapshots only, not {kind}")
    image = need(session, "A", "SnapshotToFile")
    if not name:
        raise ValueError("SnapshotToFile needs a file name")
    data = image.data.astype(np.float64)
    lo, hi = np.percentile(data, [0.5, 99.5])
    scaled = np.clip((data - lo) / max(hi - lo, 1e-9) * 255, 0, 255).astype(np.uint8)
    path = session.resolve(name)
    tmp = path.with_name(path.name + ".tmp")
    tifffile.imwrite(tmp, scaled)
    shutil.move(tmp, path)
    return None


@command("SaveToOtherFile", "BVVS")
def save_to_other_file(
    session: Session, letter: str, kind: object, compression: object, name: str
) -> Reported:
    """Save one buffer's image to its own file (MRC; TIFF types are refused by the twin)."""
    from tomopilot.io.mrc_image import write_mrc

    if str(kind).upper() not in ("MRC", "CUR", "-1"):
        raise ValueError(f"The twin-backed module saves single images as MRC only, not {kind}")
    image = need(session, letter, "SaveToOtherFile")
    write_mrc(session.resolve(name), image.data, pixel_size_a=image.pixel_size_a)
    return None
