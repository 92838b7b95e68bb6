"""Stage 1: read a model file into plain data, remembering where every value was written."""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
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

from nftfwd.errors import MAX_ECHO, MAX_REPORTED, Location, ModelError, NftfwdError, Problem, echo

KeyPath = tuple[str | int, ...]
# libyaml's parser where PyYAML was built with it (_Builder raises what its composer
# raised); PyYAML's own parser gives the same events, slower.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Bounds on what a model file may make nftfwd do, so that no file (a typo, a fuzzer, an
# attacker's pull request) costs more than seconds and a few hundred MB to refuse.
# The largest model file read, in bytes; $NFTFWD_MAX_MODEL_SIZE changes it (README).
DEFAULT_MAX_MODEL_BYTES = 8 * 1024 * 1024  # about 75,000 forwards
MAX_SIZE_VARIABLE = "NFTFWD_MAX_MODEL_SIZE"
# Values (YAML nodes) a file may have per byte of that limit. A model has one per 10
# bytes or so; each costs a few hundred bytes of memory (its value and its location),
# so a file of short values (`- 1` lines) could otherwise take gigabytes within the size.
BYTES_PER_NODE = 8
# How deep collections may nest. A model needs 10 levels (root, hosts, a host, bridges,
# a bridge, guests, a guest, forwards, a forward, sources); the builder recurses per level.
MAX_DEPTH = 64
# How many nodes aliases may add to a document, beyond its own size: a few hundred
# bytes of nested aliases ("billion laughs") would otherwise expand to billions.
ALIAS_NODES_FLOOR = 100_000
# The longest text read as a number: a port or a version needs 5 characters; base-60
# numbers (`1:2:3:...`) cost quadratic time in their length, and Python refuses to
# read an integer of more than 4300 digits.
MAX_NUMBER_TEXT = 100
# The name of the model read from stdin (`-`), in errors.
STDIN_NAME = "<stdin>"


def format_path(path: KeyPath) -> str:
    """`("hosts", "kvm1", "forwards", 1)` -> `hosts.kvm1.forwards[1]`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            if len(part) > MAX_ECHO or not part.isprintable():  # a key as the user typed it
                part = echo(part)
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
    # Numbers YAML 1.1 read from something other than their decimal digits (`0x50`,
    # `0777`, `1:20`, `8_080`, `+80`, `1e3`): the text as written, so that a port can be
    # refused with what was written and the decimal to write.
    written: Mapping[KeyPath, str] = field(default_factory=lambda: MappingProxyType({}))

    def location(self, path: KeyPath) -> Location | None:
        """The location of `path`, or of its nearest ancestor that has one."""
        while path:
            if path in self.locations:
                return self.locations[path]
            path = path[:-1]
        # Only an empty file has no root: its errors still name the file, at line 1.
        return self.locations.get((), Location(self.path, 1, 1))


def load_file(path: str | Path) -> Document:
    """Read the model file at `path` (`-`: stdin), within the size limit."""
    name, data = read_input(path, "model", max_model_bytes())
    return load_text(decode_utf8(data, name), name)


def max_model_bytes() -> int:
    """The size limit of a model file: $NFTFWD_MAX_MODEL_SIZE (bytes, or with K, M or G)."""
    text = os.environ.get(MAX_SIZE_VARIABLE, "").strip()
    if not text:
        return DEFAULT_MAX_MODEL_BYTES
    number = text.upper().removesuffix("B").removesuffix("I")
    scale = 1024 ** (" KMG".index(number[-1])) if number and number[-1] in "KMG" else 1
    number = number.rstrip("KMG")
    if not (number.isdigit() and number.isascii() and int(number) > 0):
        raise NftfwdError(
            f"${MAX_SIZE_VARIABLE}={echo(text)} is not a size; write a number of bytes, "
            "or one with K, M or G, for example 64M."
        )
    return int(number) * scale


def read_input(path: str | Path, what: str, limit: int, pipes: bool = False) -> tuple[str, bytes]:
    """The name to report and the bytes of the file at `path` (`-`: stdin), refused
    (NftfwdError) if it is larger than `limit` bytes or not a regular file (nor, with
    `pipes`, a pipe: `<(virsh net-dumpxml default)`).

    Opened without blocking, then judged by what was opened: a FIFO nobody writes to
    does not hang, and /dev/zero is never read into memory.
    """
    if str(path) == "-":
        name = STDIN_NAME
        stdin = getattr(sys.stdin, "buffer", None)
        if stdin is None:
            raise NftfwdError(f"{name}: there is no standard input to read the {what} from.")
        try:
            data = stdin.read(limit + 1)
        except OSError as err:
            raise NftfwdError(f"{name}: cannot read the {what} ({err.strerror}).") from None
    else:
        name = str(path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NftfwdError(f"{name}: no such {what} file.") from None
        except OSError as err:
            raise NftfwdError(f"{name}: cannot read the {what} file ({err.strerror}).") from None
        try:
            info = os.fstat(fd)
            if pipes and stat.S_ISFIFO(info.st_mode):
                os.set_blocking(fd, True)  # a pipe with no writer reads as empty, at once
            elif not stat.S_ISREG(info.st_mode):
                raise NftfwdError(
                    f"{name}: is {_file_kind(info.st_mode)}, not a regular file; give the "
                    f"{what} file itself (or - to read it from stdin)."
                )
            if info.st_size > limit:
                raise _too_large(name, what, limit)
            with open(fd, "rb", closefd=False) as file:
                data = file.read(limit + 1)
        except OSError as err:
            raise NftfwdError(f"{name}: cannot read the {what} file ({err.strerror}).") from None
        finally:
            os.close(fd)
    if len(data) > limit:
        raise _too_large(name, what, limit)
    return name, data


def _file_kind(mode: int) -> str:
    kinds = {
        stat.S_ISDIR: "a directory",
        stat.S_ISFIFO: "a FIFO (named pipe)",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
    }
    return next((kind for test, kind in kinds.items() if test(mode)), "a special file")


def _too_large(name: str, what: str, limit: int) -> NftfwdError:
    return NftfwdError(
        f"{name}: the {what} file is larger than {_size(limit)}, the limit; if it really is "
        f"one, raise the limit with ${MAX_SIZE_VARIABLE} (for example {MAX_SIZE_VARIABLE}=64M)."
    )


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= scale and count % scale == 0:
            return f"{count // scale} {unit}"
    return f"{count} bytes"


def decode_utf8(data: bytes, name: str) -> str:
    """`data` as text, or a ModelError at the line and column of the first byte that is
    not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ModelError(
            [
                Problem(
                    _byte_location(data, err.start, name),
                    "",
                    f"byte 0x{data[err.start]:02x} is not UTF-8 text; save the file as UTF-8",
                )
            ]
        ) from None


def _byte_location(data: bytes, offset: int, name: str) -> Location:
    """The line and column (in characters) of byte `offset` of `data`."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    column = len(data[line_start:offset].decode("utf-8", "replace")) + 1
    return Location(name, data.count(b"\n", 0, offset) + 1, column)


def load_text(text: str, file: str, max_nodes: int | None = None) -> Document:
    """The document in `text`, named `file` in errors; at most `max_nodes` values (by
    default as many as the size limit allows)."""
    limit = max_nodes if max_nodes is not None else max_model_bytes() // BYTES_PER_NODE
    builder = _Builder(file, limit)
    try:
        data = builder.read(text)
    except yaml.reader.ReaderError as err:
        # libyaml's position is a byte offset into the UTF-8 encoding of `text`.
        character = chr(err.character) if isinstance(err.character, int) else err.character
        raise ModelError(
            [
                Problem(
                    _reader_location(text, err.position, file),
                    "",
                    f"this is not valid YAML: the character '{echo(character)}' "
                    f"({err.reason}); remove it, or write it as an escape in double quotes",
                )
            ]
        ) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = Location(file, mark.line + 1, mark.column + 1) if mark else None
        what = err.problem or err.context or "invalid YAML"
        if "maximum nesting depth" in what:
            # libyaml's own limit (newer PyYAML wheels), which its scanner may reach
            # before the reader sees the event that passes MAX_DEPTH: the same problem.
            raise ModelError([_nested_too_deep(where)]) from None
        raise ModelError(
            [Problem(where, "", f"this is not valid YAML: {what}; fix the syntax here")]
        ) from None
    except yaml.YAMLError as err:
        raise ModelError(
            [Problem(Location(file, 1, 1), "", f"this is not valid YAML: {err}")]
        ) from None
    if builder.problems:
        raise ModelError(builder.problems, builder.more)
    return Document(
        file,
        data,
        builder.locations,
        frozenset(builder.unquoted),
        MappingProxyType(builder.written),
    )


def _reader_location(text: str, position: int, file: str) -> Location:
    """Where a ReaderError's `position` is: a byte offset into the UTF-8 text for
    libyaml, a character index for PyYAML's own reader."""
    if _LOADER is yaml.SafeLoader:
        before = text[:position]
        return Location(file, before.count("\n") + 1, position - before.rfind("\n"))
    return _byte_location(text.encode("utf-8", "surrogatepass"), position, file)


# The data is built straight from libyaml's event stream. Composing a node tree first
# (yaml.compose) and constructing every scalar through PyYAML's resolver and constructor
# cost several times what parsing does. The result is the same, value for value and
# error for error: tests/source/test_source_speed_equivalence.py holds the old code as
# oracle.

_NODE_STARTS = (ScalarEvent, MappingStartEvent, SequenceStartEvent)
_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
# What each scalar tag SafeLoader constructs makes; any other tag is refused, located
# (`!custom`, `!!python/name:...`, and `<<` or `=`, which YAML 1.1 resolves to tags).
_TAG_KINDS = {
    "tag:yaml.org,2002:null": "null",
    "tag:yaml.org,2002:bool": "a boolean",
    "tag:yaml.org,2002:int": "a whole number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:timestamp": "a date",
    "tag:yaml.org,2002:binary": "base64 binary data",
}
_SCALAR_TAGS = frozenset(_TAG_KINDS)
_NUMBER_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})
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


def _too_deep(event: yaml.Event, file: str) -> Problem:
    mark = _mark(event)
    return _nested_too_deep(Location(file, mark.line + 1, mark.column + 1))


def _nested_too_deep(where: Location | None) -> Problem:
    return Problem(
        where,
        "",
        f"collections nest deeper than {MAX_DEPTH} levels here; a model needs 10 at most, "
        "so close the brackets or indent less",
    )


def _short_tag(tag: str) -> str:
    """A tag as it is written: `tag:yaml.org,2002:int` is `!!int`."""
    return (
        "!!" + tag.removeprefix("tag:yaml.org,2002:")
        if tag.startswith("tag:yaml.org,2002:")
        else tag
    )


def _mark(event: yaml.Event) -> Any:
    """Where `event` starts. libyaml marks every event; its marks are yaml._yaml.Mark,
    which the type stubs do not accept where PyYAML's nodes and errors take a mark."""
    return event.start_mark


class _Builder:
    """Turns the events of one document into plain data plus a location table.

    The events are pulled from the parser one at a time (`self._event` is the next one
    to read) and dropped once read, except those of anchored nodes: an alias is built by
    reading its anchor's events again, which gives the same data and locations as the
    anchored node, as when the composer shared one node between both places. Aliases
    may re-read at most ALIAS_NODES_FLOOR events more than the document has so far, and
    never the node that contains them (a recursive alias).
    """

    def __init__(self, file: str, max_nodes: int) -> None:
        self.file = file
        self.max_nodes = max_nodes
        self.locations: dict[KeyPath, Location] = {}
        self.unquoted: set[KeyPath] = set()
        self.written: dict[KeyPath, str] = {}
        self.problems: list[Problem] = []
        self.more = 0  # problems found beyond the MAX_REPORTED kept
        self._event: Any = None
        self._pull: Callable[[], Any] = lambda: None
        # The events of anchored nodes, and where each anchor's are in it: (start, end),
        # end None while the node is still being read.
        self._recorded: list[yaml.Event] = []
        self._anchors: dict[str, tuple[int, int | None]] = {}
        self._replayed = 0
        self._resolver = _LOADER("")
        self._constructor: yaml.SafeLoader | None = None

    def read(self, text: str) -> Any:
        """The data of the one document in `text`; raises what the composer raised."""
        loader = _LOADER(text)
        try:
            self._pull = self._checked(loader).__next__
            self._event = self._pull()  # StreamStart
            self._event = self._pull()
            # An empty stream is just StreamStart, StreamEnd; else DocumentStart, root, ...
            if self._event is None or type(self._event) is not DocumentStartEvent:
                data = None
            else:
                self._event = self._pull()
                data = self._node((), True)
            while self._event is not None:  # the rest: syntax errors, another document
                self._event = self._pull()
            return data
        finally:
            loader.dispose()

    def _checked(self, loader: Any) -> Iterator[Any]:
        """The parser's events, then None; checked as `yaml.compose` (libyaml's composer)
        checks them, raising the same at the same point of the stream: an undefined
        alias, a reused anchor, a second document. The events of anchored nodes are
        recorded. Collections nested deeper than MAX_DEPTH are refused (ModelError)."""
        recorded = self._recorded
        anchors = self._anchors
        open_anchors: list[tuple[int, str]] = []  # (depth, anchor) of anchored collections
        depth = 0
        root: Any = None
        nodes_left = self.max_nodes
        for event in iter(loader.get_event, None):
            kind = type(event)
            if kind in _NODE_STARTS:
                nodes_left -= 1
                if nodes_left < 0:
                    raise ModelError([*self.problems, self._too_many(event)], self.more)
                if root is None:
                    root = event
                if kind is not ScalarEvent:
                    depth += 1
                    if depth > MAX_DEPTH:
                        raise ModelError([*self.problems, _too_deep(event, self.file)], self.more)
                anchor = event.anchor
                if anchor is not None:
                    if anchor in anchors:
                        raise ComposerError(
                            "found duplicate anchor; first occurrence",
                            _mark(recorded[anchors[anchor][0]]),
                            "second occurrence",
                            _mark(event),
                        )
                    start = len(recorded)
                    if kind is ScalarEvent:
                        anchors[anchor] = (start, start + 1)
                        recorded.append(event)
                        yield event
                        continue
                    else:
                        anchors[anchor] = (start, None)
                        open_anchors.append((depth, anchor))
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                if open_anchors and open_anchors[-1][0] == depth:
                    recorded.append(event)
                    anchor = open_anchors.pop()[1]
                    anchors[anchor] = (anchors[anchor][0], len(recorded))
                    depth -= 1
                    yield event
                    continue
                depth -= 1
            elif kind is AliasEvent:
                if event.anchor not in anchors:
                    raise ComposerError(None, None, "found undefined alias", _mark(event))
            elif kind is DocumentStartEvent and root is not None:
                raise ComposerError(
                    "expected a single document in the stream",
                    _mark(root),
                    "but found another document",
                    _mark(event),
                )
            if open_anchors:
                recorded.append(event)
            yield event
        yield None

    def _too_many(self, event: yaml.Event) -> Problem:
        return Problem(
            self._loc(event),
            "",
            f"this file has more than {self.max_nodes} values, more than a model of its "
            f"size limit has; if it really is one, raise the limit with ${MAX_SIZE_VARIABLE} "
            f"(for example {MAX_SIZE_VARIABLE}=64M)",
        )

    def _loc(self, event: yaml.Event) -> Location:
        mark: Any = event.start_mark  # as _mark(event), without the call
        return Location(self.file, mark.line + 1, mark.column + 1)

    def _problem(self, event: yaml.Event, path: KeyPath, message: str) -> None:
        # Found in document order: the first MAX_REPORTED are the ones reported.
        if len(self.problems) < MAX_REPORTED:
            self.problems.append(Problem(self._loc(event), format_path(path), message))
        else:
            self.more += 1

    def _anchored(self, alias: AliasEvent) -> tuple[int, int | None]:
        """Where the events of the node `alias` refers to are in self._recorded (_checked
        made sure it exists)."""
        anchor = alias.anchor
        assert anchor is not None  # libyaml: an alias always names its anchor
        return self._anchors[anchor]

    def _follow(self, alias: AliasEvent, path: KeyPath) -> list[Any]:
        """The events of the node `alias` refers to; ModelError if following it would
        never end or would exceed the alias budget."""
        start, end = self._anchored(alias)
        if end is None:
            self._problem(
                alias,
                path,
                f"alias *{echo(str(alias.anchor))} refers to a node that contains it, so it "
                "never ends; write the data out instead",
            )
            raise ModelError(self.problems, self.more)
        self._replayed += end - start
        budget = ALIAS_NODES_FLOOR + _mark(alias).index  # the document's size so far
        if self._replayed > budget:
            self._problem(
                alias,
                path,
                "aliases expand this file to far more than it is written with (more than "
                f"{budget} nodes, an alias bomb?); write the data out, or use fewer aliases",
            )
            raise ModelError(self.problems, self.more)
        return self._recorded[start:end]

    def _node(self, path: KeyPath, locate: bool) -> Any:
        """Build the node at `self._event`; record its location under `path` if `locate`.

        A mapping records its values under their keys' locations, so passes False.
        """
        event = self._event
        if type(event) is AliasEvent:
            pull = self._pull
            replay = self._follow(event, path)
            replay.append(None)  # read past the node's end, as past any node
            self._pull = iter(replay).__next__
            self._event = self._pull()
            value = self._node(path, locate)
            self._pull = pull
            self._event = pull()
            return value
        self._event = self._pull()
        if locate:
            self.locations[path] = self._loc(event)
        if type(event) is ScalarEvent:
            return self._scalar(event, path)
        tag = event.tag
        if type(event) is MappingStartEvent:
            if tag is not None and tag != _MAP_TAG and tag != "!":
                self._unknown_tag(event, tag, "", path)
            return self._mapping(path)
        if tag is not None and tag != _SEQ_TAG and tag != "!":
            self._unknown_tag(event, tag, "", path)
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
                if len(text) <= MAX_NUMBER_TEXT:
                    return int(text)
                return self._too_long(event, path)
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
        if tag != _STR_TAG and tag not in _SCALAR_TAGS:
            return self._unknown_tag(event, event.tag, text, path)
        if tag in _NUMBER_TAGS and len(text) > MAX_NUMBER_TEXT:
            return self._too_long(event, path)
        # Anything else is constructed by PyYAML itself; what it cannot make sense of is
        # a problem located here.
        if self._constructor is None:
            self._constructor = yaml.SafeLoader("")
        node = ScalarNode(tag, text, _mark(event), cast(Any, event.end_mark), event.style)
        try:
            # Called as Any: older stubs (Debian 13's typeshed) leave construct_object untyped.
            construct: Any = self._constructor.construct_object
            value = construct(node, deep=True)
        except (
            yaml.YAMLError,
            ArithmeticError,
            LookupError,
            ValueError,
            TypeError,
            AttributeError,
        ):
            self._constructor = None  # it keeps the node it failed on as under construction
            return self._unreadable(event, tag, path)
        if not isinstance(value, str) and not event.style and ":" in text:
            self.unquoted.add(path)
        if (type(value) is int or type(value) is float) and text != str(value):
            self.written[path] = text
        return value

    def _unknown_tag(self, event: yaml.Event, tag: str | None, text: str, path: KeyPath) -> None:
        """`tag` as written (None or `!`: the tag YAML 1.1 gives plain `text`)."""
        if tag is None or tag == "!":  # a plain `<<` or `=`
            message = (
                f"YAML 1.1 gives {echo(text)} a special meaning that nftfwd does not "
                "use; write it in quotes"
            )
        else:
            message = (
                f"unknown tag {echo(_short_tag(tag))}; a model is plain YAML without "
                "tags, so remove it"
            )
        self._problem(event, path, message)

    def _unreadable(self, event: ScalarEvent, tag: str, path: KeyPath) -> None:
        kind = _TAG_KINDS.get(tag, _short_tag(tag))
        if event.tag is None or event.tag == "!":
            message = (
                f"YAML 1.1 reads {echo(event.value)} as {kind}, but it is not a valid one; "
                "write the value in quotes, or correct it"
            )
        else:
            message = (
                f"{echo(event.value)!r} is not {kind}, as its tag "
                f"{echo(_short_tag(event.tag))} says; correct the value or remove the tag"
            )
        self._problem(event, path, message)

    def _too_long(self, event: ScalarEvent, path: KeyPath) -> None:
        self._problem(
            event,
            path,
            f"a number of {len(event.value)} characters is far too long for a model (ports "
            "are 1-65535); write the number it should be",
        )

    def _mapping(self, path: KeyPath) -> dict[str, Any]:
        pull = self._pull  # restored by _node after every alias it follows
        result: dict[str, Any] = {}
        while type(key_event := self._event) is not MappingEndEvent:
            if type(key_event) is AliasEvent:
                key_event = self._recorded[self._anchored(key_event)[0]]
            if type(key_event) is not ScalarEvent:
                self._problem(key_event, path, "a key must be a plain name")
                self._skip()  # the key
                self._skip()  # its value
                continue
            self._event = pull()
            # A key is a name the user wrote: keep its text even where YAML 1.1
            # would read it as a number or a boolean (a guest called `1`, a host `yes`).
            # (Its tag, if any, is not looked at either.)
            key = key_event.value
            key_path = (*path, key)
            if key in result:
                self._problem(
                    key_event,
                    key_path,
                    f"duplicate key '{echo(key)}' (first written at line "
                    f"{self.locations[key_path].line}); "
                    "each name may appear only once, so remove or rename one of them",
                )
                self._skip()
                continue
            # A value is located at its key; recorded before the value's own contents,
            # so the table keeps document order.
            self.locations[key_path] = self._loc(key_event)
            value_event = self._event
            if type(value_event) is ScalarEvent:
                self._event = pull()
                result[key] = self._scalar(value_event, key_path)
            else:
                result[key] = self._node(key_path, False)
        self._event = pull()
        return result

    def _sequence(self, path: KeyPath) -> list[Any]:
        items: list[Any] = []
        while type(self._event) is not SequenceEndEvent:
            items.append(self._node((*path, len(items)), True))
        self._event = self._pull()
        return items

    def _skip(self) -> None:
        """Step over the node at `self._event` without building it, nor failing on it."""
        depth = 0
        pull = self._pull
        while True:
            kind = type(self._event)
            self._event = pull()
            if kind is MappingStartEvent or kind is SequenceStartEvent:
                depth += 1
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                depth -= 1
            if depth == 0:
                return
