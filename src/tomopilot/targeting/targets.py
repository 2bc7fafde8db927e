"""Targets: the typed model of a PACEtomo targets file, and its conversion to and from the file.

A :class:`TargetSet` holds the targets in acquisition order (the first is the tracking target,
"target 1"), the geo points, and the settings overrides (``_set`` numbers, ``_bset``
booleans). Positions are PACEtomo's specimen shifts SSX/SSY (µm, x along the tilt axis)
relative to target 1 at the selection tilt. Run-file state (``_spos``, ``_pbr``/``_nbr``
branch blocks) is carried through untouched, so a run file read and written again is the same.

Examples
--------
>>> ts = TargetSet(targets=[Target(), Target(ss_x_um=1.8, ss_y_um=-3.1)])
>>> ts = name_files(ts, "L03")
>>> ts.targets[1].ts_file
'L03_ts_002.mrc'
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from tomopilot.io.pacetomo_targets import (
    SKIP_WORDS,
    KeyBlock,
    SettingLine,
    TargetBlock,
    TargetsFileData,
    TargetsFormatError,
    parse_bool,
    parse_float,
    read_targets_file,
    write_targets_file,
)

_KNOWN_KEYS = {
    "tgtfile": "tgt_file",
    "tsfile": "ts_file",
    "viewfile": "view_file",
    "SSX": "ss_x_um",
    "SSY": "ss_y_um",
    "stageX": "stage_x_um",
    "stageY": "stage_y_um",
    "skip": "skip",
    "SPACEscore": "space_score",
    "LDArea": "ld_area",
    "focusSSX": "focus_ss_x_um",
    "focusSSY": "focus_ss_y_um",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Target(_Model):
    """One target: where it is, its files, and whether to skip it."""

    ss_x_um: float = 0.0
    ss_y_um: float = 0.0
    stage_x_um: float | None = None
    stage_y_um: float | None = None
    tgt_file: str | None = None
    ts_file: str | None = None
    view_file: str | None = None
    skip: bool = False
    space_score: float | None = None
    ld_area: Literal["R", "V", "S"] | None = None
    focus_ss_x_um: float | None = Field(
        default=None, description="focus point (focusSSX): its shift from this target, µm"
    )
    focus_ss_y_um: float | None = Field(default=None, description="focusSSY, as focusSSX")
    extra: dict[str, str] = Field(default_factory=dict, description="other keys, as written")
    branches: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="run-file branch blocks (_pbr/_nbr), as written"
    )

    @property
    def ss_um(self) -> tuple[float, float]:
        """(SSX, SSY) in µm."""
        return self.ss_x_um, self.ss_y_um

    @property
    def focus_offset_um(self) -> tuple[float, float] | None:
        """Where this target's own focus point lies from it (µm, the SSX/SSY frame), if any:
        Leginon's focus target, chosen off the exposure target (on carbon, say)."""
        if self.focus_ss_x_um is None or self.focus_ss_y_um is None:
            return None
        return self.focus_ss_x_um, self.focus_ss_y_um


class GeoPoint(_Model):
    """A point for measuring the geometry, relative to target 1 at 0° (µm)."""

    ss_x_um: float
    ss_y_um: float


class TargetSet(_Model):
    """Targets (target 1 = tracking target), geo points and settings overrides."""

    targets: list[Target] = Field(default_factory=list)
    geo_points: list[GeoPoint] = Field(default_factory=list)
    settings: dict[str, float] = Field(default_factory=dict, description="_set overrides")
    bool_settings: dict[str, bool] = Field(default_factory=dict, description="_bset overrides")
    spos: str | None = Field(default=None, description="run-file resume position (_spos)")

    def ss_array_um(self) -> NDArray[np.float64]:
        """Specimen shifts (n, 2) of the targets."""
        return np.array([t.ss_um for t in self.targets], dtype=np.float64).reshape(-1, 2)

    @property
    def active(self) -> list[int]:
        """Indices of the targets that are not skipped."""
        return [i for i, t in enumerate(self.targets) if not t.skip]


def format_number(value: float) -> str:
    """Shortest text that reads back as the same float (``0``, ``-10.5``, ``0.1234567``)."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _target_from_block(block: TargetBlock, path: Path | None) -> Target:
    fields: dict[str, object] = {}
    extra: dict[str, str] = {}
    for key, value in block.entries:
        name = _KNOWN_KEYS.get(key)
        if name is None:
            extra[key] = value
        elif name == "skip":
            fields[name] = SKIP_WORDS[value]
        elif name in (
            "ss_x_um",
            "ss_y_um",
            "stage_x_um",
            "stage_y_um",
            "space_score",
            "focus_ss_x_um",
            "focus_ss_y_um",
        ):
            fields[name] = parse_float(value, what=key, path=path)
        elif name == "ld_area":
            if value not in ("R", "V", "S"):
                raise TargetsFormatError(
                    f"target {block.number}: LDArea must be R, V or S, not {value!r}", path=path
                )
            fields[name] = value
        else:
            fields[name] = value
    branches = {kind: dict(b.entries) | {"_number": b.number} for kind, b in block.branches.items()}
    return Target.model_validate({**fields, "extra": extra, "branches": branches})


def from_file_data(
    data: TargetsFileData,
    *,
    path: Path | str | None = None,
    stage_to_specimen: NDArray[np.float64] | None = None,
) -> TargetSet:
    """Build a :class:`TargetSet` from a parsed file.

    Targets without SSX/SSY get them from their stage position relative to target 1,
    through ``stage_to_specimen`` (identity by default, as on the Microscope protocol).
    """
    where = Path(path) if path is not None else None
    targets = [_target_from_block(block, where) for block in data.targets]
    matrix = np.eye(2) if stage_to_specimen is None else np.asarray(stage_to_specimen)
    if targets:
        first = targets[0]
        for number, target in zip((b.number for b in data.targets), targets, strict=True):
            if "SSX" in {k for k, _ in _block(data, number).entries}:
                continue
            if target.stage_x_um is None or target.stage_y_um is None or first.stage_x_um is None:
                raise TargetsFormatError(
                    f"target {number} has neither SSX/SSY nor stageX/stageY", path=where
                )
            d = np.array(
                [
                    target.stage_x_um - first.stage_x_um,
                    target.stage_y_um - (first.stage_y_um or 0.0),
                ]
            )
            ss = matrix @ d
            target.ss_x_um, target.ss_y_um = float(ss[0]), float(ss[1])
    geo = []
    for block in data.geo_points:
        values = dict(block.entries)
        if "SSX" not in values or "SSY" not in values:
            raise TargetsFormatError(f"_geo {block.number} needs SSX and SSY", path=where)
        geo.append(
            GeoPoint(
                ss_x_um=parse_float(values["SSX"], what="SSX", path=where),
                ss_y_um=parse_float(values["SSY"], what="SSY", path=where),
            )
        )
    settings = {s.name: float(s.value) for s in data.settings if not s.boolean}
    bools = {
        s.name: parse_bool(s.value, what=s.name, path=where) for s in data.settings if s.boolean
    }
    return TargetSet(
        targets=targets, geo_points=geo, settings=settings, bool_settings=bools, spos=data.spos
    )


def _block(data: TargetsFileData, number: str) -> TargetBlock:
    return next(b for b in data.targets if b.number == number)


def to_file_data(targets: TargetSet) -> TargetsFileData:
    """The file form of a :class:`TargetSet` (numbers as their shortest exact text)."""
    settings = [SettingLine(k, format_number(v)) for k, v in targets.settings.items()]
    settings += [
        SettingLine(k, "true" if v else "false", True) for k, v in targets.bool_settings.items()
    ]
    blocks = []
    for index, target in enumerate(targets.targets, start=1):
        entries: list[tuple[str, str]] = []
        for key in ("tgtfile", "tsfile", "viewfile"):
            value = getattr(target, _KNOWN_KEYS[key])
            if value is not None:
                entries.append((key, value))
        entries += [("SSX", format_number(target.ss_x_um)), ("SSY", format_number(target.ss_y_um))]
        for key in ("stageX", "stageY", "SPACEscore", "focusSSX", "focusSSY"):
            value = getattr(target, _KNOWN_KEYS[key])
            if value is not None:
                entries.append((key, format_number(value)))
        if target.ld_area is not None:
            entries.append(("LDArea", target.ld_area))
        entries.append(("skip", "True" if target.skip else "False"))
        entries += list(target.extra.items())
        branches = {
            kind: KeyBlock(b.get("_number", "1"), [(k, v) for k, v in b.items() if k != "_number"])
            for kind, b in target.branches.items()
        }
        blocks.append(TargetBlock(f"{index:03d}", entries, branches))
    geo = [
        KeyBlock(str(i), [("SSX", format_number(g.ss_x_um)), ("SSY", format_number(g.ss_y_um))])
        for i, g in enumerate(targets.geo_points, start=1)
    ]
    return TargetsFileData(settings=settings, spos=targets.spos, targets=blocks, geo_points=geo)


def load_targets(
    path: Path | str, *, stage_to_specimen: NDArray[np.float64] | None = None
) -> TargetSet:
    """Read a PACEtomo targets (or run) file into a :class:`TargetSet`.

    Raises
    ------
    TargetsFormatError
        Naming the file and line of the first problem.
    """
    data = read_targets_file(path)
    return from_file_data(data, path=path, stage_to_specimen=stage_to_specimen)


def save_targets(path: Path | str, targets: TargetSet) -> Path:
    """Write a targets file atomically; nothing is written if a value cannot be represented."""
    return write_targets_file(path, to_file_data(targets))


def name_files(
    targets: TargetSet, root: str, *, maps: bool = True, views: bool = False
) -> TargetSet:
    """Give every target PACEtomo's file names: ``<root>_ts_NNN.mrc`` and, with ``maps``,
    ``<root>_tgt_NNN.mrc`` (pattern targets have no map); ``views`` adds target 1's
    ``<root>_tgt_001_view.mrc``.
    """
    out = targets.model_copy(deep=True)
    for index, target in enumerate(out.targets, start=1):
        target.ts_file = f"{root}_ts_{index:03d}.mrc"
        target.tgt_file = f"{root}_tgt_{index:03d}.mrc" if maps else None
        if views and index == 1:
            target.view_file = f"{root}_tgt_{index:03d}_view.mrc"
    return out
