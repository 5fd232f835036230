"""YAML data files (personas, scenarios) read into pydantic models with one-line errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from callers.errors import ConfigError
from callers.inputs import excerpt
from callers.safe_yaml import load_yaml

M = TypeVar("M", bound=BaseModel)

# pydantic error type -> what was expected, for messages a file's author can act on.
_EXPECTED = {
    "missing": "field required",
    "extra_forbidden": "unknown field",
    "string_type": "expected text",
    "string_too_short": "must not be empty",
    "string_pattern_mismatch": "must be a slug of a-z, 0-9 and '-'",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "dict_type": "expected a mapping",
    "list_type": "expected a list",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
}


def _shown(value: Any) -> str:
    return excerpt(value)


def describe(error: dict[str, Any]) -> str:
    """One pydantic error as '<field.path>: <what was expected>'."""
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "value_error" and not error["loc"]:  # a whole-file check names its own field
        return str(error["ctx"]["error"])
    if kind == "value_error":  # our own checks: the message already says it all
        what = str(error["ctx"]["error"])
    elif kind == "literal_error":
        what = f"must be one of {error['ctx']['expected']}, got {_shown(error['input'])}"
    elif kind == "greater_than":
        what = f"must be greater than {error['ctx']['gt']:g}, got {_shown(error['input'])}"
    elif kind in ("missing", "extra_forbidden"):
        what = _EXPECTED[kind]
    else:
        what = f"{_EXPECTED.get(kind, error['msg'])}, got {_shown(error['input'])}"
    return f"{where}: {what}"


def load_model(path: str | Path, model: type[M], kind: str) -> M:
    """Read and validate one YAML file; any problem is a one-line ConfigError naming it."""
    data = load_yaml(path, kind)  # not UTF-8, duplicate keys, an alias bomb: one line
    if data is None:
        raise ConfigError(f"{path}: the file is empty, expected {kind} fields")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of {kind} fields, "
                          f"got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        errors = e.errors(include_url=False)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(f"{path}: {describe(errors[0])}{more}") from None


def list_models(directory: str | Path, load: Callable[[Path], M], kind: str) -> list[M]:
    """Every file of a directory, sorted by id; duplicate ids are a ConfigError."""
    files = sorted([*Path(directory).glob("*.yaml"), *Path(directory).glob("*.yml")])
    seen: dict[str, Path] = {}
    models = []
    for file in files:
        item = load(file)
        item_id = item.id  # type: ignore[attr-defined]
        if item_id in seen:
            raise ConfigError(f"{file}: id: {item_id!r} is already used by {seen[item_id]}")
        seen[item_id] = file
        models.append(item)
    return sorted(models, key=lambda m: m.id)  # type: ignore[attr-defined]


def find_model(item_id: str, directory: str | Path, load: Callable[[Path], M],
               kind: str) -> M:
    """The item with this id in a directory, or a ConfigError listing the known ids."""
    items = list_models(directory, load, kind)
    for item in items:
        if item.id == item_id:  # type: ignore[attr-defined]
            return item
    known = ", ".join(i.id for i in items) or "none"  # type: ignore[attr-defined]
    raise ConfigError(f"unknown {kind} {item_id!r} in {directory} (known: {known})")


def is_path(name_or_path: str | Path) -> bool:
    """Whether a CLI/config value names a file rather than a shipped id."""
    text = str(name_or_path)
    return text.endswith((".yaml", ".yml")) or "/" in text or Path(text).is_file()
