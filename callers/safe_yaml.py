"""Reading a YAML file that a person wrote: UTF-8 text of a sane size, no duplicate keys, and no
alias bomb. Every problem is one ConfigError line naming the file; values are never echoed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from callers.errors import ConfigError
from callers.inputs import excerpt

MAX_FILE_BYTES = 2 * 1024 * 1024  # a persona, scenario or run config is a few kilobytes
# Values in the document once every alias is expanded: a "billion laughs" file of a few hundred
# bytes expands to billions, and whatever walks it (validation, a repr) never finishes.
MAX_VALUES = 100_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _TooBig(Exception):
    pass


class _Recursive(Exception):
    pass


class DuplicateKey(yaml.YAMLError):
    """A key given twice in one mapping (YAML keeps the last silently)."""

    def __init__(self, key: Any, line: int, first: int) -> None:
        super().__init__(f"duplicate key {excerpt(key)} at line {line} (first at line {first})")
        self.key, self.line, self.first = key, line, first


class StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses duplicate mapping keys and documents whose aliases expand
    beyond MAX_VALUES values (or refer to themselves)."""

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        if node is not None:
            _expanded_size(node, {}, set())
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                    continue  # `<<: *defaults` merges; its keys may be overridden on purpose
                key = self.construct_object(key_node)
                line = key_node.start_mark.line + 1
                try:
                    first = seen.get(key)
                except TypeError:  # unhashable: SafeLoader says so below
                    continue
                if first is not None:
                    raise DuplicateKey(key, line, first)
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int]) -> int:
    """How many values the node stands for once aliases are expanded (shared nodes counted each
    time they are used); raises _TooBig past MAX_VALUES and _Recursive for a cycle."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise _Recursive
    open_.add(key)
    size = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            size += _expanded_size(child, sizes, open_)
            if size > MAX_VALUES:
                raise _TooBig
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            size += _expanded_size(k, sizes, open_) + _expanded_size(v, sizes, open_)
            if size > MAX_VALUES:
                raise _TooBig
    open_.discard(key)
    sizes[key] = size
    return size


def read_text(path: str | Path, kind: str) -> str:
    """The file as UTF-8 text; unreadable, too large, binary or otherwise encoded is one line."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read {kind} file: {e.strerror or type(e).__name__}") \
            from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: {kind} file is larger than {MAX_FILE_BYTES // 1024} KiB; "
                          "expected a small YAML text file")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or raw[:64].count(b"\x00") > 8:
        raise ConfigError(f"{path}: {kind} file is UTF-16 or binary, not UTF-8 text "
                          "(save it as UTF-8)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}: {kind} file is not UTF-8 text (byte 0x{raw[e.start]:02x} "
                          f"at line {line}; save it as UTF-8)") from None
    if "\x00" in text:
        raise ConfigError(f"{path}: {kind} file is binary (it has NUL bytes), not YAML text")
    return text


def load_yaml(path: str | Path, kind: str) -> Any:
    """Read and parse one YAML file with StrictLoader; any problem is a one-line ConfigError."""
    text = read_text(path, kind)
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except DuplicateKey as e:
        raise ConfigError(f"{path}: {e}: each key may appear once in a mapping") from None
    except _TooBig:
        raise ConfigError(f"{path}: YAML aliases expand to more than {MAX_VALUES:,} values "
                          "(an alias bomb?); refused") from None
    except _Recursive:
        raise ConfigError(f"{path}: a YAML alias refers to the value that contains it; "
                          "refused") from None
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = excerpt(e.problem or e.context or "not valid YAML", 80).strip("'\"")
        raise ConfigError(f"{path}: invalid YAML{at}: {problem}") from None
    except yaml.reader.ReaderError as e:
        raise ConfigError(f"{path}: invalid YAML: character #x{e.character:04x} at position "
                          f"{e.position} is not allowed") from None
    except yaml.YAMLError:
        raise ConfigError(f"{path}: invalid YAML") from None
