"""libnftables JSON read into typed objects: the one reader of it.

The one reader of `nft -j list ...` (nft 1.0.6 and 1.1.x) and of nftfwd's own batches
(`{"add": {...}}` commands read as the objects they add): tables, chains, rules, and sets
and maps with their elements. A rule's statements and an element's values are read once,
into the IR's types (ir.py: Match, Meta, Payload, SetOf, Prefix, Range, Xt, Counter,
Nat, Vmap...), which nft_text prints and doctor judges; what has no type is kept as
`Unknown` (statements, expressions) or `Other` (objects: flowtables, named counters,
quotas...), never a crash. Beside it: a listing replayed as `add` commands (a rollback),
and tcp and udp named again in elements listed numerically. Nothing else indexes
libnftables JSON but this module and the libnftables adapter (kernel/libnft.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from nftfwd.ir import (
    AnyVerdict,
    Compared,
    Concat,
    Counter,
    Ct,
    Fib,
    Flags,
    Goto,
    Jump,
    Listed,
    Log,
    Lookup,
    MapOf,
    Match,
    Meta,
    Nat,
    Operand,
    Payload,
    Prefix,
    Range,
    Reject,
    SetOf,
    SetRef,
    Statement,
    Unknown,
    Verdict,
    Vmap,
    Xt,
)

Json = Any  # libnftables JSON, as read or written


@dataclass(frozen=True)
class Table:
    family: str
    name: str


@dataclass(frozen=True)
class Chain:
    family: str
    table: str
    name: str
    type: str  # "" for a regular chain (no hook)
    hook: str | None
    priority: int
    policy: str


@dataclass(frozen=True)
class Rule:
    family: str
    table: str
    chain: str
    handle: int | None
    statements: tuple[Statement, ...]  # typed as they are read (read_statement)
    comment: str | None = None

    def matches(self) -> list[Match]:
        """The rule's `match` statements, in order."""
        return [s for s in self.statements if isinstance(s, Match)]


Data = Listed | AnyVerdict | Unknown  # what a map's element holds


class Element(NamedTuple):
    """One element: a set's key, or a map's key and data, typed (read_value): a `str` or
    `int` as listed, a tuple (a concatenation), a Prefix, a Range; a verdict as data. A
    named tuple, not a dataclass: a table of 10,000 forwards lists 40,000 of them, and
    tuples are made (and hashed, and compared) in C."""

    key: Listed
    data: Data | None = None  # a map's; None in a set
    comment: str | None = None

    @property
    def parts(self) -> tuple[Listed, ...]:
        """The key's parts: those of a concatenation, else the key alone."""
        key = self.key
        return key if type(key) is tuple else (key,)


@dataclass(frozen=True)
class NamedSet:
    kind: Literal["set", "map"]
    family: str
    table: str
    name: str
    key_types: tuple[str, ...]  # more than one: a concatenation
    data_type: str | None  # a map's
    flags: tuple[str, ...]
    elements: tuple[Element, ...]


@dataclass(frozen=True)
class Other:
    """An object this reader does not type (flowtable, counter, quota, ...), kept whole."""

    kind: str
    body: Any


Object = Table | Chain | Rule | NamedSet | Other


@dataclass(frozen=True)
class Document:
    """What one listing or batch holds, in its order (nft 1.0.6 lists a table's sets
    before its chains, nft 1.1 after them)."""

    objects: tuple[Object, ...]

    @property
    def tables(self) -> list[Table]:
        return [o for o in self.objects if isinstance(o, Table)]

    @property
    def chains(self) -> list[Chain]:
        return [o for o in self.objects if isinstance(o, Chain)]

    @property
    def rules(self) -> list[Rule]:
        return [o for o in self.objects if isinstance(o, Rule)]

    @property
    def sets(self) -> list[NamedSet]:
        """Sets and maps."""
        return [o for o in self.objects if isinstance(o, NamedSet)]

    def of_table(self, table: str) -> Document:
        """The objects of the tables named `table` (any family)."""
        return Document(
            tuple(o for o in self.objects if not isinstance(o, Other) and _table(o) == table)
        )


def _table(obj: Table | Chain | Rule | NamedSet) -> str:
    return obj.name if isinstance(obj, Table) else obj.table


class NotNftJson(ValueError):
    """The document is not libnftables JSON (`{"nftables": [...]}`)."""


def read_document(document: Any) -> Document:
    """A whole `nft -j list ...` output or batch, `{"nftables": [...]}`."""
    items = document.get("nftables") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise NotNftJson("not libnftables JSON: no list under `nftables`")
    return read_objects(items)


def read_objects(items: Iterable[Any]) -> Document:
    """The list under `nftables`: listed objects, or `add` commands of a batch (other
    commands are skipped: they add nothing to read)."""
    objects: list[Object] = []
    for item in items:
        if not isinstance(item, dict) or len(item) != 1:
            continue
        ((kind, body),) = item.items()
        if kind == "add" and isinstance(body, dict) and len(body) == 1:
            ((kind, body),) = body.items()
        elif kind in ("metainfo", "delete", "flush", "create", "insert", "replace"):
            continue
        if isinstance(body, dict):
            objects.append(read_object(kind, body))
    return Document(tuple(objects))


def read_object(kind: str, body: dict[str, Any]) -> Object:
    family = str(body.get("family", ""))
    if kind == "table":
        return Table(family, str(body.get("name", "")))
    if kind == "chain":
        return Chain(
            family,
            str(body.get("table", "")),
            str(body.get("name", "")),
            str(body.get("type", "")),
            _str_or_none(body.get("hook")),
            _int(body.get("prio"), 0),
            str(body.get("policy", "accept")),
        )
    if kind == "rule":
        raw = body.get("expr")
        return Rule(
            family,
            str(body.get("table", "")),
            str(body.get("chain", "")),
            _int(body.get("handle"), None),
            tuple(map(read_statement, raw)) if isinstance(raw, list) else (),
            _str_or_none(body.get("comment")),
        )
    if kind in ("set", "map"):
        raw = body.get("elem")
        return NamedSet(
            "map" if kind == "map" else "set",
            family,
            str(body.get("table", "")),
            str(body.get("name", "")),
            _strings(body.get("type")),
            _str_or_none(body.get("map")),
            _strings(body.get("flags")),
            tuple(map(read_element, raw)) if isinstance(raw, list) else (),
        )
    return Other(kind, body)


def read_element(raw: Json) -> Element:
    """`key`, `[key, data]`, with the key possibly `{"elem": {"val": key, ...}}` (an
    element with a comment, counter or timeout). Read 40,000 times for a table of 10,000
    forwards: plain type tests, a call only for what is not a string or number."""
    key, data = (raw[0], raw[1]) if type(raw) is list and len(raw) == 2 else (raw, None)
    comment = None
    if type(key) is dict:
        if type(wrapped := key.get("elem")) is dict:
            key, comment = wrapped.get("val"), _str_or_none(wrapped.get("comment"))
        if type(key) is dict and type(parts := key.get("concat")) is list:
            key = tuple([p if type(p) in _ATOMS else read_value(p) for p in parts])
    if type(key) not in _ATOMS and type(key) is not tuple:
        key = read_value(key)
    if data is not None and type(data) not in _ATOMS:
        data = read_value(data)
    return Element(key, data, comment)


_ATOMS = (str, int)  # values kept as listed (bool is not one: type() is tested)
_VERDICTS = ("accept", "drop", "return", "continue")


def read_value(raw: Json) -> Any:
    """A value (what a match compares with, an element's key or data, a NAT address) as
    the IR's types: a `str` or `int` as listed, `@name` a SetRef, a list of flags, an
    anonymous set or map, a prefix, a range, a concatenation (a tuple), a verdict; an
    expression (`meta mark`) as an operand; anything else Unknown. (Typed Any: JSON may
    put any of these anywhere, a verdict in a range; the printer and the judge take what
    comes, the judge's tests answer "maybe" or "no" to what they do not know.)"""
    kind = type(raw)
    if kind is int:
        return raw
    if kind is str:
        return SetRef(raw[1:]) if raw.startswith("@") else raw
    if kind is list:
        return Flags(tuple(raw)) if all(type(v) is str for v in raw) else Unknown(raw)
    if kind is not dict or len(raw) != 1:
        return Unknown(raw)
    ((name, body),) = raw.items()
    if name == "concat" and type(body) is list:
        return tuple(map(read_value, body))
    if name == "set":
        items = [read_element(v) for v in (body if type(body) is list else [body])]
        if any(e.data is not None for e in items):
            return MapOf(tuple((e.key, Unknown(None) if e.data is None else e.data) for e in items))
        return SetOf(tuple(e.key for e in items))
    if name == "prefix" and type(body) is dict and _int(body.get("len"), None) is not None:
        return Prefix(str(body.get("addr")), body["len"])
    if name == "range" and type(body) is list and len(body) == 2:
        return Range(read_value(body[0]), read_value(body[1]))
    if name == "elem" and type(body) is dict:
        return read_value(body.get("val"))
    if name in _VERDICTS and body is None:
        return Verdict(name)
    if name in ("jump", "goto") and type(body) is dict and "target" in body:
        return (Jump if name == "jump" else Goto)(str(body["target"]))
    operand = read_operand(raw)
    return Unknown(raw) if isinstance(operand, Unknown) else operand


def read_operand(raw: Json) -> Operand:
    """What a match tests (its left side), a map's key: meta, payload, ct, fib, or a
    concatenation of them; anything else Unknown."""
    if type(raw) is not dict or len(raw) != 1:
        return Unknown(raw)
    ((name, body),) = raw.items()
    if name == "concat" and type(body) is list:
        return Concat(tuple(map(read_operand, body)))
    if type(body) is not dict:
        return Unknown(raw)
    if name == "meta":
        return Meta(str(body.get("key")))
    if name == "payload" and "protocol" in body:
        return Payload(str(body["protocol"]), str(body.get("field")))
    if name == "ct" and set(body) <= {"key", "dir"}:
        return Ct(str(body.get("key")), _str_or_none(body.get("dir")))
    if name == "fib":
        return Fib(_strings(body.get("flags")), str(body.get("result")))
    return Unknown(raw)


def read_statement(raw: Json) -> Statement:
    """One statement of a rule's `expr`, typed; what has no type here is Unknown."""
    if type(raw) is not dict or len(raw) != 1:
        return Unknown(raw)
    ((name, body),) = raw.items()
    if name == "match" and type(body) is dict:
        op = body.get("op", "==")
        return Match(read_operand(body.get("left")), read_value(body.get("right")), str(op))
    if name in _VERDICTS and body is None:
        return Verdict(name)
    if name in ("jump", "goto") and type(body) is dict and "target" in body:
        return (Jump if name == "jump" else Goto)(str(body["target"]))
    if name == "counter":
        return Counter()
    if name == "xt" and type(body) is dict:
        return Xt(str(body.get("type")), str(body.get("name")))
    if name == "vmap" and type(body) is dict:
        return Vmap(_lookup(body))
    if name in ("dnat", "snat", "redirect", "masquerade"):
        nat = body if type(body) is dict else {}
        family = _str_or_none(nat.get("family"))
        return Nat(name, family, _nat_part(nat.get("addr")), _nat_part(nat.get("port")))
    if name == "log":
        return Log(_str_or_none(body.get("prefix")) if type(body) is dict else None)
    if name == "reject":
        reject = body if type(body) is dict else {}
        return Reject(_str_or_none(reject.get("type")), _str_or_none(reject.get("expr")))
    return Unknown(raw)


def _lookup(body: dict[str, Json]) -> Lookup:
    """`{"key": ..., "data": "@name" or {"set": [...]}}` of a map or vmap."""
    data = read_value(body.get("data"))
    if not isinstance(data, SetRef | MapOf):
        data = Unknown(body.get("data"))
    return Lookup(read_operand(body.get("key")), data)


def _nat_part(raw: Json) -> Lookup | Compared | None:
    if raw is None:
        return None
    if type(raw) is dict and type(body := raw.get("map")) is dict and len(raw) == 1:
        return _lookup(body)
    value: Compared = read_value(raw)
    return value


def value_json(value: Any) -> Json:
    """A value read by read_value as libnftables JSON again (its inverse)."""
    kind = type(value)
    if kind is str or kind is int:
        return value
    if kind is tuple:
        return {"concat": [value_json(v) for v in value]}
    match value:
        case Prefix(addr, length):
            return {"prefix": {"addr": addr, "len": length}}
        case Range(first, last):
            return {"range": [value_json(first), value_json(last)]}
        case Verdict(name):
            return {name: None}
        case Jump(target):
            return {"jump": {"target": target}}
        case Goto(target):
            return {"goto": {"target": target}}
        case SetRef(name):
            return f"@{name}"
        case Flags(names):
            return list(names)
        case SetOf(items):
            return {"set": [value_json(v) for v in items]}
        case MapOf(pairs):
            return {"set": [[value_json(k), value_json(d)] for k, d in pairs]}
        case Unknown(raw):
            return raw
    return str(value)


def element_json(element: Element) -> Json:
    """The element as libnftables JSON again (read_element's inverse, comments kept)."""
    key = value_json(element.key)
    if element.comment is not None:
        key = {"elem": {"val": key, "comment": element.comment}}
    return key if element.data is None else [key, value_json(element.data)]


def _int(value: Any, default: int | None) -> Any:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _strings(value: Any) -> tuple[str, ...]:
    """A type or flags: one string, or a list of them (nft prints both)."""
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def add_commands(items: Iterable[Any]) -> list[Any]:
    """Listed objects as `add` commands that make them again, in the order a transaction
    needs: chains before the maps that jump to them, sets and maps before the rules that
    use them (anything else between). Handles go: in an `add rule` one names a position."""
    rank = {"table": 0, "chain": 1, "set": 3, "map": 3, "rule": 4}  # anything else: 2
    objects = [o for o in items if isinstance(o, dict) and len(o) == 1 and "metainfo" not in o]
    commands: list[Any] = []
    for obj in sorted(objects, key=lambda o: rank.get(next(iter(o)), 2)):
        ((kind, body),) = obj.items()
        commands.append({"add": {kind: {k: v for k, v in body.items() if k != "handle"}}})
    return commands


PROTOCOL_NAMES = {6: "tcp", 17: "udp"}  # the protocols nftfwd writes, by number


def name_protocols(obj: dict[str, Any]) -> None:
    """tcp and udp by name again in the elements of a set or map listed numerically, in
    the parts of their keys whose type is inet_proto."""
    kind = "map" if "map" in obj else "set"
    body = obj.get(kind)
    if not isinstance(body, dict) or not body.get("elem"):
        return
    types = body["type"] if isinstance(body["type"], list) else [body["type"]]
    where = [i for i, key_type in enumerate(types) if key_type == "inet_proto"]
    if not where:
        return
    named: list[Any] = []
    for element in body["elem"]:
        key = element[0] if kind == "map" else element
        parts = key["concat"] if isinstance(key, dict) and "concat" in key else None
        if parts is not None and len(parts) == len(types):
            for i in where:
                parts[i] = PROTOCOL_NAMES.get(parts[i], parts[i])
        elif parts is None and len(types) == 1:
            key = PROTOCOL_NAMES.get(key, key) if isinstance(key, int) else key
            element = [key, element[1]] if kind == "map" else key
        named.append(element)
    body["elem"] = named
