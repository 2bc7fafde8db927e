"""Acquisition settings: every PACEtomo script setting, with units in the names.

:class:`AcquisitionSettings` holds the settings of a PACEtomo-style run. Each field has a python
name that carries its unit (``start_tilt_deg``, ``min_defocus_um``, ``delay_is_s``) and PACEtomo's
name as an alias (``startTilt``, ``minDefocus``, ``delayIS``); both spellings are accepted
everywhere (YAML, keyword arguments, targets-file overrides). Defaults are PACEtomo's (v1.9.2).
Values are checked one by one here (types, ranges, the sign of defocus); checks that involve
several settings or the microscope are in :mod:`tomopilot.acquisition.plan.feasibility`.

:func:`apply_overrides` applies a targets file's ``_set name = value`` and
``_bset name = true|false`` lines and names the file and line of a refused one.

Examples
--------
>>> s = AcquisitionSettings.model_validate({"startTilt": 9, "group_size": 3})
>>> s.start_tilt_deg, s.group_size
(9.0, 3)
>>> apply_overrides(s, {"maxDefocus": "-4.5", "addAF": "yes"}, source="L03_tgts.txt").add_autofocus
True
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_origin

from pydantic import (
    AliasChoices,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tomopilot.core.config import ConfigModel
from tomopilot.core.errors import ConfigError

TimeLever = Literal["early_return", "settle_in_startup", "builtin_settling"]

TRUE_WORDS = frozenset({"true", "yes", "y", "on", "1"})
FALSE_WORDS = frozenset({"false", "no", "n", "off", "0"})


class AcquisitionSettings(ConfigModel):
    """The settings of a PACEtomo-style acquisition (python names carry units; PACEtomo names
    are aliases; each field's docstring is its description)."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    # Tilt range and scheme
    start_tilt_deg: float = Field(0.0, alias="startTilt", ge=-90, le=90)
    """Start tilt; a multiple of the step."""
    min_tilt_deg: float = Field(-60.0, alias="minTilt", ge=-90, le=90)
    """Lowest tilt (absolute, not relative to the start)."""
    max_tilt_deg: float = Field(60.0, alias="maxTilt", ge=-90, le=90)
    """Highest tilt (absolute, not relative to the start)."""
    step_deg: float = Field(3.0, alias="step", gt=0, le=90)
    """Tilt increment."""
    group_size: int = Field(2, alias="groupSize", ge=1)
    """Images taken contiguously on one branch before switching."""
    tilt_scheme: Literal["dose_symmetric", "bidirectional", "unidirectional"] = Field(
        "dose_symmetric", alias="tiltScheme"
    )
    """Tilt order (PACEtomo always runs dose_symmetric)."""
    slow_tilt: bool = Field(False, alias="slowTilt")
    """Approach positive tilts from one step below too (bad stages)."""
    auto_start_tilt: bool = Field(False, alias="autoStartTilt")
    """Start at the tilt that compensates the pretilt; min/max shift with it."""
    tilt_targets_deg: float = Field(0.0, alias="tiltTargets", ge=-90, le=90)
    """Stage tilt at which targets were picked; if not 0 it becomes the start tilt."""

    # Defocus
    min_defocus_um: float = Field(-5.0, alias="minDefocus", ge=-100)
    """Least underfocus of the target defocus range (negative)."""
    max_defocus_um: float = Field(-5.0, alias="maxDefocus", ge=-100)
    """Most underfocus of the target defocus range (negative)."""
    step_defocus_um: float = Field(0.5, alias="stepDefocus", ge=0, le=50)
    """Defocus step between consecutive targets."""
    focus_slope_um_per_deg: float = Field(0.0, alias="focusSlope", ge=-1, le=1)
    """Deprecated empirical focus change per degree of tilt."""

    # Timing and per-image overrides
    delay_is_s: float = Field(0.3, alias="delayIS", ge=0, le=60)
    """Wait between setting the image shift and the Record."""
    delay_tilt_s: float = Field(0.3, alias="delayTilt", ge=0, le=600)
    """Wait after every stage tilt."""
    time_levers: list[TimeLever] | None = Field(None, alias="timeLevers")
    """Time savers the engine commands (see ``acquisition/time_levers.py``); None = the
    strategy's choice: ``fused`` uses all; ``pace`` and ``none`` only ``settle_in_startup``, which
    is how PACEtomo's image shifts settle on SerialEM."""
    zero_exp_time_s: float = Field(0.0, alias="zeroExpTime", ge=0, le=600)
    """Exposure of the start-tilt image; 0 = the Record exposure."""
    zero_defocus_um: float = Field(0.0, alias="zeroDefocus", ge=-100)
    """Target defocus of the start-tilt image; 0 = as the series."""

    # Tracking target
    track_exp_time_s: float = Field(0.0, alias="trackExpTime", ge=0, le=600)
    """Exposure of the tracking series; 0 = the Record exposure."""
    track_defocus_um: float = Field(0.0, alias="trackDefocus", ge=-100)
    """Target defocus of the tracking series; 0 = as the others."""
    track_mag: int = Field(0, alias="trackMag", ge=0)
    """Nominal magnification of the tracking series; 0 = the Record mag."""
    track_twice: bool = Field(False, alias="trackTwice")
    """Take a second tracking image when the shift exceeds alignLimit."""
    track_use_trial: bool = Field(False, alias="trackUseTrial")
    """Record the tracking series in the Trial area."""
    track_spot: bool = Field(True, alias="trackSpot")
    """fused: measure each tilt's common step on a spot next to target 1, with a short binned
    exposure off the targets, before target 1's Record (``strategies/fused_track.py``)."""
    focus_check: bool = Field(True, alias="focusCheck")
    """fused: once per branch at high tilt, read the defocus on the Focus area beside target 1
    and follow the tilt axis's motion along the beam (``strategies/fused_focus.py``)."""

    # Specimen geometry
    pretilt_deg: float = Field(0.0, alias="pretilt", gt=-90, lt=90)
    """Lamella pretilt; sign as PACEtomo (thinner at +p stage tilt means -p)."""
    rotation_deg: float = Field(0.0, alias="rotation", ge=-180, le=180)
    """Rotation of the lamella against the tilt axis (CCW positive)."""
    measure_geometry: bool = Field(
        False,
        validation_alias=AliasChoices("measureGeo", "measureGeometry", "measure_geometry"),
        serialization_alias="measureGeo",
    )
    """Measure pretilt and rotation on the geo points before acquiring."""
    tilt_axis_offset_pos_um: float = Field(0.0, alias="taOffsetPos", ge=-20, le=20)
    """Extra tilt-axis offset for the positive branch (model only)."""
    tilt_axis_offset_neg_um: float = Field(0.0, alias="taOffsetNeg", ge=-20, le=20)
    """Extra tilt-axis offset for the negative branch (model only)."""

    # Holey support / target pattern
    target_pattern: bool = Field(False, alias="tgtPattern")
    """Targets are a pattern that is reused at several stage positions."""
    align_to_p: bool = Field(False, alias="alignToP")
    """Align targets to a generic hole template (buffer P)."""
    refine_vectors: bool = Field(False, alias="refineVec")
    """Refine the pattern vectors on the hole template at each position."""
    refine_geometry: bool = Field(False, alias="refineGeo")
    """Refit the geometry from CTF defoci after the start-tilt images."""
    pattern_size: int = Field(0, alias="size", ge=0)
    """Pattern half-size n of a (2n+1)x(2n+1) pattern; 0 = no pattern."""
    pattern_vec_a_x_um: float = Field(0.0, alias="vecA0")
    """Pattern vector A, x (tilt axis)."""
    pattern_vec_a_y_um: float = Field(0.0, alias="vecA1")
    """Pattern vector A, y."""
    pattern_vec_b_x_um: float = Field(0.0, alias="vecB0")
    """Pattern vector B, x (tilt axis)."""
    pattern_vec_b_y_um: float = Field(0.0, alias="vecB1")
    """Pattern vector B, y."""

    # Session
    beam_tilt_compensation: bool = Field(True, alias="beamTiltComp")
    """Compensate image-shift-induced beam tilt (coma vs IS calibration); the twin has no coma to
    compensate, so a run does not act on it."""
    add_autofocus: bool = Field(False, alias="addAF")
    """Autofocus target 1 at every branch switch (adds dose to target 1)."""
    preview_align: bool = Field(True, alias="previewAli")
    """Align each target to its saved Preview map before the series."""
    view_align: bool = Field(False, alias="viewAli")
    """Align each target to its saved View image before the series."""
    realign_to_item: bool = Field(False, alias="realignToItem")
    """Realign target 1 with SerialEM's RealignToItem."""
    ref_from_preview: bool = Field(False, alias="refFromPreview")
    """Use the alignment Preview as reference for the first Record."""
    no_zero_rec_align: bool = Field(False, alias="noZeroRecAli")
    """Do not align the start-tilt Record to the target map."""

    # Output
    sort_by_tilt: bool = Field(True, alias="sortByTilt")
    """Sort the stacks and mdoc files by tilt angle at the end."""
    bin_final_stack: int = Field(1, alias="binFinalStack", ge=1, le=16)
    """Bin the final stacks by this factor (frames are kept)."""
    delete_final_stack: bool = Field(False, alias="delFinalStack")
    """Delete the final stacks, keeping only the frames."""
    do_ctffind: bool = Field(False, alias="doCtfFind")
    """Fit the CTF of every Record with CTFFIND."""
    do_ctfplotter: bool = Field(True, alias="doCtfPlotter")
    """Fit the CTF of every Record with ctfplotter (instead of CTFFIND)."""
    extended_mdoc: bool = Field(True, alias="extendedMdoc")
    """Write PACEtomo's extra keys to the mdoc files."""

    # Advanced
    fit_limit_a: float = Field(30.0, alias="fitLimit", gt=0, le=1000)
    """RefineGeo: CTF fits worse than this resolution are ignored."""
    paraboloid_threshold: int = Field(9, alias="parabolTh", ge=5)
    """RefineGeo: fit a paraboloid from this many CTF points on."""
    image_shift_limit_um: float = Field(20.0, alias="imageShiftLimit", gt=0, le=100)
    """Largest image shift applied; targets beyond it are skipped."""
    data_points: int = Field(4, alias="dataPoints", ge=1, le=100)
    """Recent shifts used to refit each target's height."""
    align_limit_um: float = Field(0.5, alias="alignLimit", gt=0, le=20)
    """Largest alignment shift accepted between tilts (not for target 1)."""
    min_counts_per_s: float = Field(0.0, alias="minCounts", ge=0)
    """End a branch when a Record has fewer mean counts per second; 0 = off."""
    ignore_neg_start: bool = Field(
        True,
        validation_alias=AliasChoices("ignoreNegStart", "ignoreFirstNegShift", "ignore_neg_start"),
        serialization_alias="ignoreNegStart",
    )
    """Ignore the first shift of the negative branch in the height fit."""

    # Hardware
    check_dewar: bool = Field(True, alias="checkDewar")
    """Wait for dewar refills before each Record."""
    cryo_arm: bool = Field(False, alias="cryoARM")
    """JEOL CRYO ARM: refill both dewars together."""
    cold_feg: bool = Field(False, alias="coldFEG")
    """Cold FEG: flash the gun regularly."""
    flash_interval_h: float = Field(-1.0, alias="flashInterval", ge=-1, le=1000)
    """Hours between gun flashes; -1 = only during dewar refills."""
    slit_interval_min: float = Field(0.0, alias="slitInterval", ge=0)
    """Minutes between energy-filter slit refinements; 0 = never."""

    # Target montage
    target_montage: bool = Field(False, alias="tgtMontage")
    """Record an NxN montage at each target instead of one image."""
    target_montage_size: int = Field(1, alias="tgtMntSize", ge=1, le=10)
    """Montage half-size n: (2n+1)x(2n+1) tiles."""
    target_montage_overlap: float = Field(0.05, alias="tgtMntOverlap", ge=0, lt=0.5)
    """Tile overlap as a fraction of the shorter camera side."""
    target_montage_x_offset_um: float = Field(0.0, alias="tgtMntXOffset", ge=-20, le=20)
    """Montage drift along the tilt axis reached at maxTilt."""
    target_montage_focus_correction: bool = Field(False, alias="tgtMntFocusCor")
    """Correct focus per montage tile for its height at tilt."""
    track_montage: bool = Field(False, alias="tgtTrackMnt")
    """Record the tracking target as a montage too."""

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: Any) -> Any:
        """Refuse a setting given twice under two names (``startTilt`` and ``start_tilt_deg``)."""
        if isinstance(data, Mapping):
            seen: dict[str, str] = {}
            for key in data:
                name = setting_name(str(key))
                if name is not None and name in seen:
                    raise ValueError(
                        f"{seen[name]!r} and {key!r} name the same setting: give it once"
                    )
                if name is not None:
                    seen[name] = str(key)
        return data

    @field_validator("min_defocus_um", "max_defocus_um")
    @classmethod
    def _underfocus(cls, value: float) -> float:
        if value >= 0:
            raise ValueError(
                f"defocus is negative for underfocus (SerialEM's sign); {value:g} µm is not "
                f"underfocus (did you mean {-abs(value):g}?)"
            )
        return value

    @field_validator("zero_defocus_um", "track_defocus_um")
    @classmethod
    def _off_or_underfocus(cls, value: float) -> float:
        if value > 0:
            raise ValueError(
                f"defocus is negative for underfocus (0 = off); {value:g} µm is overfocus "
                f"(did you mean {-value:g}?)"
            )
        return value

    def to_pacetomo(self) -> dict[str, float | int | bool | str]:
        """The settings under PACEtomo's names (as a ``_settings.txt`` dump or ``_set`` lines)."""
        return self.model_dump(by_alias=True)


def _pacetomo_name(name: str) -> str:
    info = AcquisitionSettings.model_fields[name]
    if info.alias is not None:
        return info.alias
    return str(info.serialization_alias)


#: PACEtomo's name of every setting, by python name.
PACETOMO_NAMES: dict[str, str] = {n: _pacetomo_name(n) for n in AcquisitionSettings.model_fields}


def _spellings() -> dict[str, str]:
    out: dict[str, str] = {}
    for name, info in AcquisitionSettings.model_fields.items():
        out[name] = name
        if info.alias is not None:
            out[info.alias] = name
        if isinstance(info.validation_alias, AliasChoices):
            out.update({str(a): name for a in info.validation_alias.choices})
    return out


_SPELLINGS = _spellings()


def setting_name(key: str) -> str | None:
    """The python name of a setting given by its PACEtomo or python name, or ``None``."""
    return _SPELLINGS.get(key)


_WHERE = re.compile(r"^(?P<path>.+):(?P<line>\d+)$")


def _where(source: str) -> tuple[Path | None, int | None]:
    match = _WHERE.match(source)
    if match:
        return Path(match["path"]), int(match["line"])
    return (Path(source) if source else None), None


def _kind(name: str) -> Literal["bool", "int", "float", "choice"]:
    annotation = AcquisitionSettings.model_fields[name].annotation
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    if get_origin(annotation) is Literal:
        return "choice"
    return "float"


def _coerce(name: str, key: str, value: str | float | bool) -> bool | int | float | str:
    """Parse an override for setting ``name``; raise ValueError with the user's wording."""
    kind = _kind(name)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            if value in (0, 1):
                return bool(value)
            raise ValueError(f"{key} is on/off: give true or false (or 1/0), not {value!r}")
        word = value.strip().lower()
        if word in TRUE_WORDS | FALSE_WORDS:
            return word in TRUE_WORDS
        raise ValueError(f"{key} is on/off: give true, false, yes, no, on or off, not {value!r}")
    if kind == "choice":
        if isinstance(value, str):
            return value.strip()
        raise ValueError(f"{key} takes a name, not {value!r}")
    if isinstance(value, bool):
        raise ValueError(f"{key} is a number (a _set line), not a true/false value")
    if isinstance(value, str):
        try:
            # float's own rules (it ignores the whitespace around a number, but not the control
            # characters str.strip() would also remove, such as the unit separator "\x1f").
            number = float(value)
        except ValueError:
            raise ValueError(f"{key} must be a number, not {value!r}") from None
    else:
        number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{key} must be a finite number, not {value!r}")
    if kind == "int":
        if not number.is_integer():
            raise ValueError(f"{key} must be a whole number, not {value!r}")
        return int(number)
    return number


def apply_overrides(
    settings: AcquisitionSettings,
    overrides: Mapping[str, str | float | bool],
    *,
    source: str | Mapping[str, str],
) -> AcquisitionSettings:
    """Apply targets-file overrides (``_set`` / ``_bset`` lines) to a copy of ``settings``.

    Parameters
    ----------
    settings
        The settings to start from (left unchanged).
    overrides
        Setting name (PACEtomo's or python's) → value. Strings are parsed as the setting needs:
        numbers for numeric settings (as ``_set``), ``true|false|yes|no|on|off|y|n|1|0`` (any
        case) for on/off settings (as ``_bset``); numbers and booleans are taken as they are.
    source
        Where the overrides come from, for error messages: one string for all of them, or a
        mapping from key to its own source. A source of the form ``path:line`` is reported as
        that file and line.

    Returns
    -------
    AcquisitionSettings
        A validated copy with the overrides applied, in the order given.

    Raises
    ------
    ConfigError
        For an unknown name or a refused value; the message names the key and its source.
    """
    out = settings.model_copy(deep=True)
    for key, value in overrides.items():
        where = source if isinstance(source, str) else source.get(key, "")
        path, line = _where(where)
        name = setting_name(key)
        if name is None:
            raise ConfigError(
                f"unknown setting {key!r} (not a PACEtomo or tomopilot setting name)",
                path=path,
                field=key,
                line=line,
            )
        try:
            setattr(out, name, _coerce(name, key, value))
        except ValueError as exc:
            message = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            raise ConfigError(
                f"{message} (got {value!r})" if isinstance(exc, ValidationError) else message,
                path=path,
                field=key,
                line=line,
            ) from None
    return out
