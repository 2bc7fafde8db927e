"""PACEtomo's ``sortByTilt``: reorder a finished tilt series from acquisition order to tilt order.

The stack's sections and the mdoc's sections are put in increasing ``TiltAngle`` (ties keep
acquisition order) and the ZValues renumbered 0 … N−1; each section's keys (``DateTime``,
``PriorRecordDose``, ``SubFramePath`` …) travel with its image. The acquisition-order mdoc
is kept as ``unsorted/<ts stem>.mrc.mdoc`` for dose weighting: in a subfolder, so that an
import of ``<run>/*.mdoc`` (RELION 5, Warp, AreTomo) takes every series once (PACEtomo's
``<ts stem>_unsorted.mrc.mdoc`` beside it matches that glob and doubles every series).

Crash safety: the unsorted copy is written first; the sorted stack and mdoc are written in
full to hidden files next to the originals, and the sorted mdoc's rename to its ``.sorted``
name is the commit point. Before it, the originals are untouched; after it,
:func:`recover_interrupted_sort` (run by :func:`sort_tilt_series` itself and by the
tilt-series writer on resume) finishes the two renames. Either way the pair left is the
unsorted one or the sorted one, never a mixture.

Examples
--------
>>> from pathlib import Path
>>> unsorted_mdoc_path(Path("run/L03_ts_001.mrc")).as_posix()
'run/unsorted/L03_ts_001.mrc.mdoc'
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from tomopilot.core.files import atomic_write_bytes, fsync_dir
from tomopilot.io.errors import FormatError
from tomopilot.io.mdoc_writer import MdocWriter, parse_mdoc
from tomopilot.io.mrc_stack import HEADER_BYTES, MrcStackWriter

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SortResult:
    """What :func:`sort_tilt_series` did.

    Attributes
    ----------
    order
        ``order[i]`` is the acquisition-order index of the section now at ZValue ``i``.
    unsorted_mdoc
        The kept acquisition-order mdoc.
    changed
        False when the series was already in tilt order (or already sorted before).
    """

    order: tuple[int, ...]
    unsorted_mdoc: Path
    changed: bool


def _stem(stack_path: Path) -> str:
    name = stack_path.name
    return name[: -len(".mrc")] if name.lower().endswith(".mrc") else stack_path.stem


UNSORTED_DIR = "unsorted"


def unsorted_mdoc_path(stack_path: Path | str) -> Path:
    """``unsorted/<ts stem>.mrc.mdoc`` beside the stack: out of reach of a ``*.mdoc`` glob."""
    stack_path = Path(stack_path)
    return stack_path.parent / UNSORTED_DIR / f"{_stem(stack_path)}.mrc.mdoc"


def _pending(path: Path, state: str) -> Path:
    return path.with_name(f".{path.name}.{state}")


def recover_interrupted_sort(stack_path: Path | str, mdoc_path: Path | str | None = None) -> bool:
    """Finish a sort that passed its commit point, or discard one that did not.

    Returns True when an interrupted sort was rolled forward.
    """
    stack_path = Path(stack_path)
    mdoc_path = Path(mdoc_path) if mdoc_path else stack_path.with_name(stack_path.name + ".mdoc")
    if _roll_forward(stack_path, mdoc_path):
        _log.info("%s: finished a sort by tilt interrupted after its commit point", stack_path)
        return True
    for leftover in (_pending(stack_path, "sorted"), _pending(stack_path, "sorting")):
        leftover.unlink(missing_ok=True)
    return False


def _roll_forward(stack_path: Path, mdoc_path: Path) -> bool:
    """The two renames after the commit point; False when the sort had not reached it."""
    sorted_stack, sorted_mdoc = _pending(stack_path, "sorted"), _pending(mdoc_path, "sorted")
    if not sorted_mdoc.exists():
        return False
    if sorted_stack.exists():
        os.replace(sorted_stack, stack_path)
    os.replace(sorted_mdoc, mdoc_path)
    fsync_dir(stack_path.parent)
    return True


def sort_tilt_series(stack_path: Path | str, mdoc_path: Path | str | None = None) -> SortResult:
    """Reorder a tilt series (stack and mdoc) by tilt angle, keeping the unsorted mdoc.

    Parameters
    ----------
    stack_path
        The stack (``<ts stem>.mrc``), written by :class:`~tomopilot.io.mrc_stack.MrcStackWriter`.
    mdoc_path
        Its mdoc; ``<stack>.mdoc`` by default.

    Raises
    ------
    FormatError
        If the stack and mdoc disagree on the number of sections, a section has no
        ``TiltAngle``, or either file is torn or corrupt.
    """
    stack_path = Path(stack_path)
    mdoc_path = Path(mdoc_path) if mdoc_path else stack_path.with_name(stack_path.name + ".mdoc")
    recover_interrupted_sort(stack_path, mdoc_path)
    stack = MrcStackWriter.open(stack_path)
    MdocWriter.open(mdoc_path)  # refuses a torn or malformed file
    parsed = parse_mdoc(mdoc_path)
    if len(parsed.sections) != stack.n_sections:
        raise FormatError(
            f"the mdoc has {len(parsed.sections)} sections but the stack {stack_path.name} "
            f"has {stack.n_sections}",
            path=mdoc_path,
        )
    angles = []
    for section in parsed.sections:
        try:
            angles.append(float(section.items["TiltAngle"]))
        except (KeyError, ValueError) as exc:
            raise FormatError(
                f"section {section.z_value} has no valid TiltAngle",
                path=mdoc_path,
                field="TiltAngle",
            ) from exc
    order = tuple(sorted(range(len(angles)), key=lambda i: angles[i]))
    unsorted = unsorted_mdoc_path(stack_path)
    if order == tuple(range(len(angles))):
        if not unsorted.exists():
            atomic_write_bytes(unsorted, mdoc_path.read_bytes())
        return SortResult(order, unsorted, changed=False)
    atomic_write_bytes(unsorted, mdoc_path.read_bytes())
    _write_sorted_stack(stack, order, _pending(stack_path, "sorting"))
    os.replace(_pending(stack_path, "sorting"), _pending(stack_path, "sorted"))
    fsync_dir(stack_path.parent)
    text = parsed.header_text + "".join(
        parsed.sections[old].renumbered(new, parsed.newline) for new, old in enumerate(order)
    )
    # The commit point: the sorted mdoc appears under its pending name in one rename.
    atomic_write_bytes(_pending(mdoc_path, "sorted"), text.encode("utf-8", "surrogateescape"))
    _roll_forward(stack_path, mdoc_path)
    _log.info("%s: sorted %d sections by tilt angle", stack_path, len(order))
    return SortResult(order, unsorted, changed=True)


def _write_sorted_stack(stack: MrcStackWriter, order: tuple[int, ...], target: Path) -> None:
    """Copy the header (statistics do not depend on order) and the sections in ``order``."""
    size = stack.section_bytes
    with stack.path.open("rb") as source, target.open("wb") as sink:
        sink.write(source.read(HEADER_BYTES))
        for old in order:
            source.seek(stack.data_offset + old * size)
            sink.write(source.read(size))
        sink.flush()
        os.fsync(sink.fileno())
