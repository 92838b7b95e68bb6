"""Stage 1: read a model file into plain data, remembering where every value was written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nftfwd.errors import Location, ModelError, NftfwdError, Problem

KeyPath = tuple[str | int, ...]
# libyaml's parser where PyYAML was built with it: the same nodes and marks, twice as fast.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def format_path(path: KeyPath) -> str:
    """`("hosts", "kvm1", "forwards", 1)` -> `hosts.kvm1.forwards[1]`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


@dataclass(frozen=True)
class Document:
    """A parsed model file: its data and the location of every key and value in it."""

    path: str
    data: Any
    locations: dict[KeyPath, Location]
    # Scalars YAML 1.1 turned into something other than the text the user wrote
    # (`1:2:3:4:5:6:7:8` becomes a number), so errors can say "quote it".
    unquoted: frozenset[KeyPath]

    def location(self, path: KeyPath) -> Location | None:
        """The location of `path`, or of its nearest ancestor that has one."""
        while path:
            if path in self.locations:
                return self.locations[path]
            path = path[:-1]
        return self.locations.get((), None)


def load_file(path: str | Path) -> Document:
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NftfwdError(f"{file}: no such model file.") from None
    except (OSError, UnicodeDecodeError) as err:
        raise NftfwdError(f"{file}: cannot read the model file ({err}).") from None
    return load_text(text, file)


def load_text(text: str, file: str) -> Document:
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = Location(file, mark.line + 1, mark.column + 1) if mark else None
        what = err.problem or err.context or "invalid YAML"
        raise ModelError(
            [Problem(where, "", f"this is not valid YAML: {what}; fix the syntax here")]
        ) from None
    except yaml.YAMLError as err:
        raise ModelError(
            [Problem(Location(file, 1, 1), "", f"this is not valid YAML: {err}")]
        ) from None
    builder = _Builder(file)
    data = builder.build(root, ()) if root is not None else None
    if builder.problems:
        raise ModelError(builder.problems)
    return Document(file, data, builder.locations, frozenset(builder.unquoted))


class _Builder:
    """Turns a composed YAML node tree into plain data plus a location table."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.locations: dict[KeyPath, Location] = {}
        self.unquoted: set[KeyPath] = set()
        self.problems: list[Problem] = []
        self._constructor = yaml.SafeLoader("")

    def _loc(self, node: yaml.Node) -> Location:
        return Location(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self.locations[path] = self._loc(node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.ScalarNode):
            value = self._constructor.construct_object(node, deep=True)
            if not isinstance(value, str) and not node.style and ":" in node.value:
                self.unquoted.add(path)
            return value
        return None

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_seen: dict[str, Location] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(
                    Problem(self._loc(key_node), format_path(path), "a key must be a plain name")
                )
                continue
            # A key is a name the user wrote: keep its text even where YAML 1.1
            # would read it as a number or a boolean (a guest called `1`, a host `yes`).
            key = key_node.value
            if key in first_seen:
                self.problems.append(
                    Problem(
                        self._loc(key_node),
                        format_path((*path, key)),
                        f"duplicate key '{key}' (first written at line {first_seen[key].line}); "
                        "each name may appear only once, so remove or rename one of them",
                    )
                )
                continue
            first_seen[key] = self._loc(key_node)
            result[key] = self.build(value_node, (*path, key))
            self.locations[(*path, key)] = self._loc(key_node)
        return result
