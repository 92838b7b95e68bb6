"""Stage 1: read a model file into plain data, remembering where every value was written."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml
from yaml import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    ScalarNode,
    SequenceEndEvent,
    SequenceStartEvent,
)
from yaml.composer import ComposerError

from nftfwd.errors import Location, ModelError, NftfwdError, Problem

KeyPath = tuple[str | int, ...]
# libyaml's parser where PyYAML was built with it (_read_events raises what its composer
# raised); PyYAML's own parser gives the same events, slower.
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
        events, anchors = _read_events(text)
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
    builder = _Builder(file, events, anchors)
    data = builder.root()
    if builder.problems:
        raise ModelError(builder.problems)
    return Document(file, data, builder.locations, frozenset(builder.unquoted))


# The data is built straight from libyaml's event stream. Composing a node tree first
# (yaml.compose) and constructing every scalar through PyYAML's resolver and constructor
# cost several times what parsing does. The result is the same, value for value and
# error for error: tests/test_source_speed_equivalence.py holds the old code as oracle.

_NODE_STARTS = (ScalarEvent, MappingStartEvent, SequenceStartEvent)
_STR_TAG = "tag:yaml.org,2002:str"
ImplicitResolvers = dict[str, list[tuple[str, re.Pattern[str]]]]


def implicit_resolvers() -> ImplicitResolvers | None:
    """PyYAML's YAML 1.1 implicit resolvers, by the first character of a plain scalar,
    where _Builder._scalar may type plain scalars with them itself; None where it may not.

    That table, and the other two looked at here, are PyYAML's internals, not its API.
    Typing a plain scalar by looking it up there, as Resolver.resolve does, and returning
    a string's text without its constructor, is only the same thing while the table has
    PyYAML 6's shape, no wildcard or path resolvers are registered and the string
    constructor is PyYAML's own. Where any of that changed, every scalar goes through
    PyYAML's own resolver and constructor: slower, and the same data.
    """
    try:
        table = _LOADER.yaml_implicit_resolvers
        if (
            not isinstance(table, dict)
            or None in table
            or _LOADER.yaml_path_resolvers
            or yaml.SafeLoader.yaml_constructors[_STR_TAG] is not yaml.SafeLoader.construct_yaml_str
        ):
            return None
        for resolvers in table.values():
            for tag, pattern in resolvers:
                if not isinstance(tag, str) or not isinstance(pattern, re.Pattern):
                    return None
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    return table


_IMPLICIT = implicit_resolvers()


def _read_events(text: str) -> tuple[list[yaml.Event], dict[str, int]]:
    """All the events of the single document in `text`, and the index of each anchor.

    Raises what `yaml.compose` (libyaml's composer) raises, at the same point of the
    stream: an undefined alias or a reused anchor before any later syntax error, and a
    second document before anything in it is parsed.
    """
    loader = _LOADER(text)
    try:
        events: list[yaml.Event] = []
        anchors: dict[str, int] = {}
        documents = 0
        for event in iter(loader.get_event, None):
            kind = type(event)
            if kind in _NODE_STARTS:
                anchor = event.anchor
                if anchor is not None:
                    if anchor in anchors:
                        raise ComposerError(
                            "found duplicate anchor; first occurrence",
                            _mark(events[anchors[anchor]]),
                            "second occurrence",
                            _mark(event),
                        )
                    anchors[anchor] = len(events)
            elif kind is AliasEvent:
                if event.anchor not in anchors:
                    raise ComposerError(None, None, "found undefined alias", _mark(event))
            elif kind is DocumentStartEvent:
                documents += 1
                if documents > 1:
                    # events: StreamStart, DocumentStart, the first document's root, ...
                    raise ComposerError(
                        "expected a single document in the stream",
                        _mark(events[2]),
                        "but found another document",
                        _mark(event),
                    )
            events.append(event)
        return events, anchors
    finally:
        loader.dispose()


def _mark(event: yaml.Event) -> Any:
    """Where `event` starts. libyaml marks every event; its marks are yaml._yaml.Mark,
    which the type stubs do not accept where PyYAML's nodes and errors take a mark."""
    return event.start_mark


class _Builder:
    """Turns the events of one document into plain data plus a location table.

    `self._at` is the index of the next event to read. An alias is built by reading its
    anchor's events again: the same data and locations as the anchored node, as when
    the composer shared one node between both places.
    """

    def __init__(self, file: str, events: list[yaml.Event], anchors: dict[str, int]) -> None:
        self.file = file
        self.locations: dict[KeyPath, Location] = {}
        self.unquoted: set[KeyPath] = set()
        self.problems: list[Problem] = []
        self._events = events
        self._anchors = anchors
        self._at = 0
        self._resolver = _LOADER("")
        self._constructor: yaml.SafeLoader | None = None

    def _loc(self, event: yaml.Event) -> Location:
        mark: Any = event.start_mark  # as _mark(event), without the call
        return Location(self.file, mark.line + 1, mark.column + 1)

    def _anchored(self, alias: AliasEvent) -> int:
        """The index of the node `alias` refers to (_read_events checked that it exists)."""
        anchor = alias.anchor
        assert anchor is not None  # libyaml: an alias always names its anchor
        return self._anchors[anchor]

    def root(self) -> Any:
        # An empty stream is just StreamStart, StreamEnd; else DocumentStart, the root, ...
        if len(self._events) <= 2:
            return None
        self._at = 2
        return self._node((), True)

    def _node(self, path: KeyPath, locate: bool) -> Any:
        """Build the node at `self._at`; record its location under `path` if `locate`.

        A mapping records its values under their keys' locations, so passes False.
        """
        event = self._events[self._at]
        if type(event) is AliasEvent:
            after = self._at + 1
            # An alias inside its own anchor recurses until RecursionError, as building
            # the composer's cyclic node graph did.
            self._at = self._anchored(event)
            value = self._node(path, locate)
            self._at = after
            return value
        self._at += 1
        if locate:
            self.locations[path] = self._loc(event)
        if type(event) is ScalarEvent:
            return self._scalar(event, path)
        # Tags on collections (`!!set`, `!!omap`, ...) were never looked at: nor are they here.
        if type(event) is MappingStartEvent:
            return self._mapping(path)
        return self._sequence(path)

    def _scalar(self, event: ScalarEvent, path: KeyPath) -> Any:
        text = event.value
        tag = event.tag
        implicit = _IMPLICIT
        if tag is None and event.implicit[0] and text and implicit is not None:
            # A plain scalar: YAML 1.1 implicit typing, done as Resolver.resolve does it
            # but without its overhead. Decimal digits first (most numbers in a model):
            # what the int resolver and constructor make of them.
            if text.isdigit() and text.isascii() and (text[0] != "0" or len(text) == 1):
                return int(text)
            for implicit_tag, pattern in implicit.get(text[0], ()):
                if pattern.match(text):
                    tag = implicit_tag
                    break
            else:
                return text
        elif tag is None or tag == "!":
            # As the composer does: resolve only where no tag, or the bare `!`, was written.
            tag = self._resolver.resolve(ScalarNode, text, event.implicit)
        if tag == _STR_TAG and implicit is not None:
            return text
        # Anything else is constructed by PyYAML itself, errors included.
        if self._constructor is None:
            self._constructor = yaml.SafeLoader("")
        node = ScalarNode(tag, text, _mark(event), cast(Any, event.end_mark), event.style)
        # Called as Any: older stubs (Debian 13's typeshed) leave construct_object untyped.
        construct: Any = self._constructor.construct_object
        value = construct(node, deep=True)
        if not isinstance(value, str) and not event.style and ":" in text:
            self.unquoted.add(path)
        return value

    def _mapping(self, path: KeyPath) -> dict[str, Any]:
        events = self._events
        result: dict[str, Any] = {}
        while type(key_event := events[self._at]) is not MappingEndEvent:
            if type(key_event) is AliasEvent:
                key_event = events[self._anchored(key_event)]
            if type(key_event) is not ScalarEvent:
                self.problems.append(
                    Problem(self._loc(key_event), format_path(path), "a key must be a plain name")
                )
                self._skip()  # the key
                self._skip()  # its value
                continue
            self._at += 1
            # A key is a name the user wrote: keep its text even where YAML 1.1
            # would read it as a number or a boolean (a guest called `1`, a host `yes`).
            key = key_event.value
            key_path = (*path, key)
            where = self._loc(key_event)
            if key in result:
                self.problems.append(
                    Problem(
                        where,
                        format_path(key_path),
                        f"duplicate key '{key}' (first written at line "
                        f"{self.locations[key_path].line}); "
                        "each name may appear only once, so remove or rename one of them",
                    )
                )
                self._skip()
                continue
            # A value is located at its key; recorded before the value's own contents,
            # so the table keeps document order.
            self.locations[key_path] = where
            value_event = events[self._at]
            if type(value_event) is ScalarEvent:
                self._at += 1
                result[key] = self._scalar(value_event, key_path)
            else:
                result[key] = self._node(key_path, False)
        self._at += 1
        return result

    def _sequence(self, path: KeyPath) -> list[Any]:
        items: list[Any] = []
        while type(self._events[self._at]) is not SequenceEndEvent:
            items.append(self._node((*path, len(items)), True))
        self._at += 1
        return items

    def _skip(self) -> None:
        """Step over the node at `self._at` without building it, nor failing on it."""
        depth = 0
        while True:
            kind = type(self._events[self._at])
            self._at += 1
            if kind is MappingStartEvent or kind is SequenceStartEvent:
                depth += 1
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                depth -= 1
            if depth == 0:
                return
