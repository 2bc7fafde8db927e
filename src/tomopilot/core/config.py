"""Configuration: pydantic v2 models loaded from user-facing YAML.

Every configuration model derives from :class:`ConfigModel`, which refuses unknown keys (a typo
is an error, not a silently ignored setting). :func:`load_config` turns a validation failure into
a :class:`~tomopilot.core.errors.ConfigError` that names the file, the line and the field, and
:func:`write_resolved_config` writes the fully resolved model (defaults included) beside the
outputs of a run.

Examples
--------
>>> class Stage(ConfigModel):
...     tilt_limit_deg: float = 60.0
>>> Stage.model_validate({"tilt_limit_deg": 70}).tilt_limit_deg
70.0
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from tomopilot.core.errors import ConfigError
from tomopilot.core.files import atomic_write_text
from tomopilot.core.input_files import UNTYPED_INPUT_ERRORS, describe_exception, read_input_text

M = TypeVar("M", bound=BaseModel)


class ConfigModel(BaseModel):
    """Base of configuration models: strict keys, validated assignment, frozen-free."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


def _node_line(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the YAML node at ``loc``, or of its deepest existing parent."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(
                (v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key),
                None,
            )
            if match is None:
                return line
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            if key >= len(node.value):
                return line
            node = node.value[key]
        else:
            return line
        line = node.start_mark.line + 1
    return line


def _format_loc(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for key in loc:
        if isinstance(key, int):
            parts.append(f"[{key}]")
        else:
            parts.append(("." if parts else "") + key)
    return "".join(parts)


def validation_error_to_config_error(
    exc: ValidationError,
    *,
    path: Path | None = None,
    root: yaml.Node | None = None,
) -> ConfigError:
    """Turn pydantic's error into a :class:`ConfigError` naming the first bad field."""
    first = exc.errors()[0]
    loc = tuple(first["loc"])
    field = _format_loc(loc) or "<root>"
    line = _node_line(root, loc) if root is not None else None
    message = first["msg"]
    if "input" in first and first["type"] not in {"missing"}:
        message += f" (got {first['input']!r})"
    more = len(exc.errors()) - 1
    if more:
        message += f"; and {more} more problem{'s' if more > 1 else ''}"
    return ConfigError(message, path=path, field=field, line=line)


def parse_config(text: str, model: type[M], *, path: Path | None = None) -> M:
    """Validate YAML ``text`` into ``model``; see :func:`load_config`."""
    try:
        root = yaml.compose(text, Loader=_LOADER)
        data: Any = yaml.load(text, Loader=_LOADER)  # a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"not valid YAML: {exc}", path=path, line=line) from exc
    except UNTYPED_INPUT_ERRORS as exc:
        # PyYAML's constructors raise plain errors, e.g. ValueError for an integer of more
        # digits than Python converts (4,300): find the scalar at fault for its line.
        line = _bad_scalar_line(text)
        raise ConfigError(
            f"not valid YAML: {describe_exception(exc)}", path=path, line=line
        ) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of settings", path=path, line=1)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error_to_config_error(exc, path=path, root=root) from None


def load_config(path: Path | str, model: type[M]) -> M:
    """Load a YAML file into a pydantic model.

    Parameters
    ----------
    path
        The YAML file.
    model
        The pydantic model class to validate into.

    Raises
    ------
    ConfigError
        When the file is missing, is not YAML, or a value is refused; the message names the
        file, the line and the field.
    """
    path = Path(path)
    text = read_input_text(path, what="configuration", error=ConfigError)
    return parse_config(text, model, path=path)


_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""LibYAML's safe loader when PyYAML was built with it (10-50 times faster), else PyYAML's."""

_YAML_OR_UNTYPED: tuple[type[BaseException], ...] = (yaml.YAMLError, *UNTYPED_INPUT_ERRORS)


def _bad_scalar_line(text: str) -> int | None:
    """The line of the first scalar PyYAML cannot construct on its own, if any."""
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except _YAML_OR_UNTYPED:
        return None
    stack: list[yaml.Node] = [root] if root is not None else []
    while stack:
        node = stack.pop(0)
        if isinstance(node, yaml.ScalarNode):
            try:
                yaml.load(yaml.serialize(node), Loader=_LOADER)  # a safe loader
            except _YAML_OR_UNTYPED:
                return int(node.start_mark.line) + 1
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack += [key, value]
        elif isinstance(node, yaml.SequenceNode):
            stack += list(node.value)
    return None


def dump_config(config: BaseModel) -> str:
    """The resolved configuration as YAML text (defaults included, enums as values)."""
    data = config.model_dump(mode="json", by_alias=False)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def write_resolved_config(config: BaseModel, path: Path | str) -> Path:
    """Write the fully resolved configuration beside a run's outputs (atomically)."""
    header = f"# resolved {type(config).__name__}, written by tomopilot; every default is shown\n"
    return atomic_write_text(path, header + dump_config(config))
