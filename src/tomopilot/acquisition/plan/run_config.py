"""The user-facing configuration of ``tomopilot acquire CONFIG.yaml``.

A minimal file::

    targets:
      file: L03_tgts.txt        # a PACEtomo targets file, relative to this YAML
    settings:                   # PACEtomo's names or tomopilot's
      startTilt: 0
      maxDefocus: -4.5

Targets can also be written inline (``targets: {inline: [{SSX: 0, SSY: 0}, ...]}`` or a bare
list under ``targets:``), each with ``SSX``/``SSY`` (or ``ss_x_um``/``ss_y_um``), ``skip``
and, optionally, ``stageX``/``stageY`` and the selection's map images ``tgtfile`` (Preview)
and ``viewfile`` (View; target 1's is used to realign to it), named relative to the output
folder as PACEtomo keeps them beside the targets file. The other sections are
``microscope`` (``backend: twin`` with a :class:`~tomopilot.instrument.twin.TwinConfig` under
``twin:``, or ``backend: serialem`` with ``host``, ``port`` and facility settings under
``serialem:``), ``area`` (stage position of target 1), ``strategy`` (``pace``, ``fused`` or
``none``), ``output`` (``dir``, ``root``), ``save_frames`` and ``frames_format``. Relative
paths are resolved against the YAML's folder. A targets file's ``_set``/``_bset`` lines override
``settings``.

:func:`resolve_run` puts it all together and refuses impossible settings before any exposure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from numpy.typing import NDArray
from pydantic import AliasChoices, Field, PrivateAttr, field_validator, model_validator

from tomopilot.acquisition.plan.feasibility import check_feasible, tilt_scheme_from_settings
from tomopilot.acquisition.plan.sequential_settings import SequentialSettings
from tomopilot.acquisition.plan.settings import AcquisitionSettings, apply_overrides
from tomopilot.acquisition.plan.tilt_schemes import TiltScheme
from tomopilot.core.config import ConfigModel, load_config
from tomopilot.core.errors import ConfigError
from tomopilot.core.input_files import decode_text
from tomopilot.instrument.twin import TwinConfig
from tomopilot.io.frames import FrameFormat
from tomopilot.io.pacetomo_targets import read_targets_file
from tomopilot.targeting.targets import Target, from_file_data


class SerialEMSettings(ConfigModel):
    """What SerialEM cannot report about a microscope, and how to reach its Python module.

    ``module``: ``serialem`` is SerialEM's own Python module (on the microscope PC's
    PYTHONPATH); ``twin`` serves SerialEM's interface from the digital twin of ``twin:`` in this
    process (the loop that tests tomopilot's SerialEM backend end to end).
    """

    module: Literal["serialem", "twin"] = "serialem"
    stage_xy_limit_um: float = Field(990.0, gt=0)
    stage_z_limit_um: float = Field(300.0, gt=0)
    xy_backlash_um: float = Field(5.0, ge=0, le=50)
    tilt_backlash_deg: float = Field(3.0, ge=0, le=10)
    beam_diameter_um: float = Field(1.5, gt=0)
    dewar_poll_s: float = Field(30.0, gt=0, le=600)
    busy_retries: int = Field(8, ge=0, le=50)
    voltage_kv: float = Field(300.0, gt=0, le=1000)
    cs_mm: float = Field(2.7, ge=0, le=10)


class MicroscopeConfig(ConfigModel):
    """Which microscope to drive: the digital twin by default, or SerialEM.

    ``backend: serialem`` drives SerialEM through its Python module at ``host``:``port``
    (default: ``PY_SERIALEM_IP``/``PY_SERIALEM_PORT``, else 127.0.0.1:48888); facility settings
    go under ``serialem:``. ``twin:`` configures the twin (also the twin behind
    ``serialem: {module: twin}``).
    """

    backend: Literal["twin", "serialem"] = "twin"
    host: str | None = Field(None, min_length=1, max_length=255)
    port: int | None = Field(None, gt=0, lt=65536)
    serialem: SerialEMSettings = Field(default_factory=SerialEMSettings)
    twin: TwinConfig = Field(default_factory=TwinConfig)

    @field_validator("backend", mode="before")
    @classmethod
    def _lower_backend(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class InlineTarget(ConfigModel):
    """A target written in the YAML: specimen shift from target 1, or a stage position."""

    ss_x_um: float | None = Field(None, validation_alias=AliasChoices("SSX", "ssx_um", "ss_x_um"))
    ss_y_um: float | None = Field(None, validation_alias=AliasChoices("SSY", "ssy_um", "ss_y_um"))
    stage_x_um: float | None = Field(None, validation_alias=AliasChoices("stageX", "stage_x_um"))
    stage_y_um: float | None = Field(None, validation_alias=AliasChoices("stageY", "stage_y_um"))
    tgt_file: str | None = Field(None, validation_alias=AliasChoices("tgtfile", "tgt_file"))
    view_file: str | None = Field(None, validation_alias=AliasChoices("viewfile", "view_file"))
    skip: bool = False
    focus_ss_x_um: float | None = Field(
        None, validation_alias=AliasChoices("focusSSX", "focus_ss_x_um")
    )
    focus_ss_y_um: float | None = Field(
        None, validation_alias=AliasChoices("focusSSY", "focus_ss_y_um")
    )

    @model_validator(mode="after")
    def _has_position(self) -> InlineTarget:
        ss = (self.ss_x_um is None, self.ss_y_um is None)
        stage = (self.stage_x_um is None, self.stage_y_um is None)
        if ss[0] != ss[1] or stage[0] != stage[1]:
            raise ValueError("give both SSX and SSY (or both stageX and stageY)")
        if all(ss) and all(stage):
            raise ValueError("a target needs SSX/SSY (µm from target 1) or stageX/stageY")
        if (self.focus_ss_x_um is None) != (self.focus_ss_y_um is None):
            raise ValueError("give both focusSSX and focusSSY (the focus point from the target)")
        return self


class TargetsConfig(ConfigModel):
    """Where the targets come from: a PACEtomo targets file, or an inline list."""

    file: Path | None = None
    inline: list[InlineTarget] | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_list(cls, data: Any) -> Any:
        return {"inline": data} if isinstance(data, list) else data

    @model_validator(mode="after")
    def _one_source(self) -> TargetsConfig:
        if (self.file is None) == (self.inline is None):
            raise ValueError("give either 'file' (a targets file) or 'inline' (a list)")
        if self.inline is not None and not self.inline:
            raise ValueError("the inline list of targets is empty")
        return self


class AreaConfig(ConfigModel):
    """The stage position of target 1 (µm)."""

    x_um: float = Field(validation_alias=AliasChoices("x_um", "stageX"))
    y_um: float = Field(validation_alias=AliasChoices("y_um", "stageY"))


class OutputConfig(ConfigModel):
    """Where the run writes: ``<dir>/<root>_ts_NNN.mrc`` and friends."""

    dir: Path = Path(".")
    root: str = Field("area", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)


class AcquireConfig(ConfigModel):
    """Everything ``tomopilot acquire`` needs."""

    microscope: MicroscopeConfig = Field(default_factory=MicroscopeConfig)
    targets: TargetsConfig
    area: AreaConfig | None = None
    settings: AcquisitionSettings = Field(default_factory=AcquisitionSettings)
    strategy: Literal["pace", "fused", "none", "sequential"] = "pace"
    sequential: SequentialSettings = Field(default_factory=SequentialSettings)
    """Settings of the ``sequential`` strategy (Leginon's tomography node)."""
    output: OutputConfig = Field(default_factory=OutputConfig)
    save_frames: bool = False
    frames_format: FrameFormat = "tiff"

    _source: Path | None = PrivateAttr(default=None)

    @field_validator("strategy", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @property
    def source_path(self) -> Path | None:
        """The YAML file this configuration was loaded from, if any."""
        return self._source


def _yaml_line(path: Path, keys: tuple[str, ...]) -> int | None:
    """The 1-based line of the value at ``keys`` in a YAML file (best effort)."""
    try:
        node: yaml.Node | None = yaml.compose(decode_text(path.read_bytes()))
    except (OSError, yaml.YAMLError):
        return None
    line = None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            break
        node = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


def load_acquire_config(path: Path | str) -> AcquireConfig:
    """Load ``tomopilot acquire``'s YAML, resolving paths against the YAML's folder.

    Raises
    ------
    ConfigError
        Naming the file, line and field of a refused value, or of a targets file that does
        not exist.
    """
    path = Path(path)
    config = load_config(path, AcquireConfig)
    base = path.resolve().parent
    targets = config.targets
    if targets.file is not None:
        file = targets.file if targets.file.is_absolute() else base / targets.file
        if not file.is_file():
            problem = "is a directory, not a file" if file.is_dir() else "does not exist"
            raise ConfigError(
                f"the targets file {file} {problem}",
                path=path,
                field="targets.file",
                line=_yaml_line(path, ("targets", "file")),
            )
        targets = targets.model_copy(update={"file": file})
    out_dir = config.output.dir if config.output.dir.is_absolute() else base / config.output.dir
    resolved = config.model_copy(
        update={"targets": targets, "output": config.output.model_copy(update={"dir": out_dir})}
    )
    resolved._source = path
    return resolved


def _setting_sources(text: str, path: Path) -> dict[str, str]:
    """``name → "file:line"`` of the ``_set``/``_bset`` lines of a targets file (last wins)."""
    sources: dict[str, str] = {}
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        tokens = line.strip().split(" ")
        if tokens[0] in ("_set", "_bset") and len(tokens) > 1:
            sources[tokens[1]] = f"{path}:{number}"
    return sources


def _inline_targets(items: list[InlineTarget], matrix: NDArray[np.float64]) -> list[Target]:
    first = items[0]
    out = []
    for index, item in enumerate(items):
        if item.ss_x_um is not None and item.ss_y_um is not None:
            ss_x, ss_y = item.ss_x_um, item.ss_y_um
        elif (
            first.stage_x_um is None
            or first.stage_y_um is None
            or item.stage_x_um is None
            or item.stage_y_um is None
        ):
            raise ConfigError(
                f"target {index + 1} is given by its stage position, so target 1 needs "
                "stageX/stageY too",
                field=f"targets.inline[{index}]",
            )
        else:
            offset = np.array(
                [item.stage_x_um - first.stage_x_um, item.stage_y_um - first.stage_y_um]
            )
            ss_x, ss_y = (float(v) for v in matrix @ offset)
        stage_x, stage_y = item.stage_x_um, item.stage_y_um
        out.append(
            Target(
                ss_x_um=ss_x,
                ss_y_um=ss_y,
                stage_x_um=stage_x,
                stage_y_um=stage_y,
                tgt_file=item.tgt_file,
                view_file=item.view_file,
                skip=item.skip,
                focus_ss_x_um=item.focus_ss_x_um,
                focus_ss_y_um=item.focus_ss_y_um,
            )
        )
    return out


@dataclass(frozen=True)
class _TargetsRead:
    targets: list[Target]
    geo_points_um: list[tuple[float, float]]
    overrides: dict[str, str]
    sources: dict[str, str]


def _read_targets(config: AcquireConfig, matrix: NDArray[np.float64] | None) -> _TargetsRead:
    spec = config.targets
    if spec.file is None:
        assert spec.inline is not None
        targets = _inline_targets(spec.inline, np.eye(2) if matrix is None else matrix)
        return _TargetsRead(targets, [], {}, {})
    data = read_targets_file(spec.file)
    text = decode_text(spec.file.read_bytes())
    target_set = from_file_data(data, path=spec.file, stage_to_specimen=matrix)
    if not target_set.targets:
        raise ConfigError("the targets file holds no target (_tgt block)", path=spec.file)
    overrides = {s.name: s.value for s in data.settings}
    geo = [(g.ss_x_um, g.ss_y_um) for g in target_set.geo_points]
    return _TargetsRead(target_set.targets, geo, overrides, _setting_sources(text, spec.file))


def resolve_targets(
    config: AcquireConfig, *, stage_to_specimen: NDArray[np.float64] | None = None
) -> tuple[list[Target], dict[str, str]]:
    """The targets (target 1 first) and the targets file's setting overrides.

    Parameters
    ----------
    config
        A configuration from :func:`load_acquire_config` (paths resolved).
    stage_to_specimen
        2×2 matrix turning stage offsets into specimen shifts, for targets given only by their
        stage position (identity by default).

    Returns
    -------
    targets : list of Target
        :class:`tomopilot.targeting.targets.Target` objects.
    overrides : dict of str to str
        ``_set``/``_bset`` names and values as written (empty for inline targets); pass them
        to :func:`~tomopilot.acquisition.plan.settings.apply_overrides`, or use :func:`resolve_run`,
        which names each override's file and line in errors.

    Raises
    ------
    tomopilot.io.pacetomo_targets.TargetsFormatError
        For a malformed targets file (naming its file and line).
    ConfigError
        For inline targets that cannot be placed.
    """
    read = _read_targets(config, stage_to_specimen)
    return read.targets, read.overrides


@dataclass(frozen=True)
class ResolvedRun:
    """A run ready to go: targets, final settings, tilt scheme and the warnings found."""

    config: AcquireConfig
    targets: list[Target]
    geo_points_um: list[tuple[float, float]]
    settings: AcquisitionSettings
    overrides: dict[str, str]
    override_sources: dict[str, str]
    area_stage_um: tuple[float, float]
    scheme: TiltScheme
    warnings: list[str]


def microscope_limits(config: AcquireConfig) -> tuple[float, float]:
    """(stage tilt limit in degrees, image-shift limit in µm) of the configured twin.

    A real microscope's limits are read from it when the run starts (``limits=`` of
    :func:`resolve_run`); offline (``--dry-run``) the twin's stand in.
    """
    twin = config.microscope.twin
    return twin.stage.tilt_limit_deg, twin.optics.image_shift_limit_um


def resolve_run(
    config: AcquireConfig,
    *,
    stage_to_specimen: NDArray[np.float64] | None = None,
    limits: tuple[float, float] | None = None,
) -> ResolvedRun:
    """Read the targets, apply their overrides to the settings, and check feasibility.

    The stage position of target 1 is ``area`` if given, else target 1's ``stageX/stageY``,
    else (0, 0). ``limits`` (tilt °, image shift µm) are the microscope's, when it is connected.

    Raises
    ------
    ConfigError
        For an unknown or refused override (naming the targets file and line).
    ImpossibleSettingsError
        Listing every problem with the settings, targets and microscope limits together.
    """
    read = _read_targets(config, stage_to_specimen)
    settings = apply_overrides(config.settings, read.overrides, source=read.sources)
    tilt_limit_deg, is_limit_um = limits if limits is not None else microscope_limits(config)
    warnings = check_feasible(
        settings,
        stage_tilt_limit_deg=tilt_limit_deg,
        image_shift_limit_um=is_limit_um,
        target_shifts_um=[t.ss_um for t in read.targets],
        skipped={i for i, t in enumerate(read.targets) if t.skip},
        n_geo_points=len(read.geo_points_um) if config.targets.file is not None else None,
        path=config.source_path,
    )
    first = read.targets[0]
    if config.area is not None:
        area = (config.area.x_um, config.area.y_um)
    elif first.stage_x_um is not None and first.stage_y_um is not None:
        area = (first.stage_x_um, first.stage_y_um)
    else:
        area = (0.0, 0.0)
    return ResolvedRun(
        config=config,
        targets=read.targets,
        geo_points_um=read.geo_points_um,
        settings=settings,
        overrides=read.overrides,
        override_sources=read.sources,
        area_stage_um=area,
        scheme=tilt_scheme_from_settings(settings, stage_tilt_limit_deg=tilt_limit_deg),
        warnings=warnings,
    )
