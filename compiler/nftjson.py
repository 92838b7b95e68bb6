"""libnftables JSON read into typed objects, and its expressions printed as nft writes them.

The one reader of `nft -j list ...` (nft 1.0.6 and 1.1.x) and of nftfwd's own batches
(`{"add": {...}}` commands read as the objects they add): tables, chains, rules, and sets
and maps with their elements. Rules keep their expressions as libnftables JSON (doctor
walks them as such); elements are split into key and data, with their comment. Objects
this reader has no type for (flowtables, named counters, quotas...) are kept as `Other`,
never a crash. Beside it: a listing replayed as `add` commands (a rollback), tcp and udp
named again in elements listed numerically, and the printer of expressions and rules.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

Expr = Any  # a libnftables JSON expression, as read


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
    expr: tuple[Expr, ...]

    def matches(self) -> list[Match]:
        """The rule's `match` statements, in order."""
        return [
            Match(str(body.get("op", "==")), body.get("left"), body.get("right"))
            for item in self.expr
            if isinstance(item, dict) and isinstance(body := item.get("match"), dict)
        ]


@dataclass(frozen=True)
class Match:
    op: str
    left: Expr
    right: Expr


class Element(NamedTuple):
    """One element: a set's key, or a map's key and data; each a JSON expression (an
    atom, a `concat`, a `prefix`, a `range`, or for data a verdict). A named tuple, not a
    dataclass: a table of 10,000 forwards lists 40,000 of them, and tuples are made in C."""

    key: Expr
    data: Expr = None  # a map's; None in a set
    comment: str | None = None

    @property
    def parts(self) -> tuple[Expr, ...]:
        """The key's parts: those of a concatenation, else the key alone."""
        key = self.key
        parts = key.get("concat") if type(key) is dict else None
        return tuple(parts) if type(parts) is list else (key,)


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
            tuple(raw) if isinstance(raw, list) else (),
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


def read_element(raw: Expr) -> Element:
    """`key`, `[key, data]`, with the key possibly `{"elem": {"val": key, ...}}` (an
    element with a comment, counter or timeout). Read 40,000 times for a table of 10,000
    forwards: plain type tests, no helper calls."""
    key, data = (raw[0], raw[1]) if type(raw) is list and len(raw) == 2 else (raw, None)
    if type(key) is dict and type(wrapped := key.get("elem")) is dict:
        return Element(wrapped.get("val"), data, _str_or_none(wrapped.get("comment")))
    return Element(key, data)


def element_json(element: Element) -> Expr:
    """The element as libnftables JSON again (read_element's inverse, comments kept)."""
    key = (
        element.key
        if element.comment is None
        else {"elem": {"val": element.key, "comment": element.comment}}
    )
    return key if element.data is None else [key, element.data]


def tagged(value: Expr) -> tuple[str, Expr] | None:
    """(kind, body) of a statement or expression, each an object of one key
    (`{"match": {...}}`, `{"meta": {"key": "l4proto"}}`, `{"accept": null}`); None for
    anything else."""
    if type(value) is dict and len(value) == 1:
        ((kind, body),) = value.items()
        return str(kind), body
    return None


def concat_parts(value: Expr) -> list[Expr]:
    parts = value.get("concat") if isinstance(value, dict) else None
    return parts if isinstance(parts, list) else [value]


def set_items(value: Expr) -> list[Expr]:
    """The items of an anonymous set (`{"set": [...]}`), else the value alone."""
    items = value.get("set") if isinstance(value, dict) else None
    return items if isinstance(items, list) else [value]


def verdict(value: Expr) -> tuple[str, str | None] | None:
    """(kind, chain) of a verdict: `{"accept": null}`, `{"jump": {"target": "x"}}`."""
    if isinstance(value, dict) and len(value) == 1:
        ((kind, target),) = value.items()
        if target is None:
            return str(kind), None
        if isinstance(target, dict) and "target" in target:
            return str(kind), str(target["target"])
    return None


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


# --- the printer ----------------------------------------------------------------------

IFNAME_KEYS = ("iifname", "oifname", "iif", "oif")


def expr_text(value: Expr, quote: bool = False) -> str:
    """An expression or value of libnftables JSON as nft writes it; `quote`: strings in
    double quotes (interface names)."""
    if isinstance(value, dict) and len(value) == 1:
        ((key, val),) = value.items()
        if key in ("meta", "ct") and isinstance(val, dict):
            name = str(val.get("key"))
            return name if name in IFNAME_KEYS else f"{key} {name}"
        if key == "payload" and isinstance(val, dict):
            return f"{val.get('protocol')} {val.get('field')}"
        if key == "prefix" and isinstance(val, dict):
            return f"{val.get('addr')}/{val.get('len')}"
        if key == "range" and isinstance(val, list):
            return "-".join(expr_text(v) for v in val)
        if key in ("set", "concat") and isinstance(val, list):
            parts = [expr_text(v, quote) for v in val]
            return "{ " + ", ".join(parts) + " }" if key == "set" else " . ".join(parts)
        if key == "fib" and isinstance(val, dict):
            return f"fib {' . '.join(map(str, val.get('flags', [])))} {val.get('result')}"
        if key == "elem" and isinstance(val, dict):
            return expr_text(val.get("val"), quote)
        found = verdict(value)
        if found is not None:
            return found[0] if found[1] is None else f"{found[0]} {found[1]}"
        return str(key)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, list):
        return ",".join(expr_text(v, quote) for v in value)
    return f'"{value}"' if quote and isinstance(value, str) else str(value)


def element_text(element: Element) -> str:
    """A set's element, or a map's `key : data`, as nft writes it."""
    key = expr_text(element.key)
    return key if element.data is None else f"{key} : {expr_text(element.data)}"


def rule_text(expr: Iterable[Expr]) -> str:
    """A short nft-like rendering of a rule's expressions (doctor's, when no text listing
    with iptables-nft's translations is given)."""
    words: list[str] = []
    for item in expr:
        if (found := tagged(item)) is None:
            continue
        key, val = found
        if key == "counter":
            continue
        if key == "match" and isinstance(val, dict):
            op = "" if val.get("op") in ("==", "in", None) else f"{val.get('op')} "
            left = expr_text(val.get("left"))
            quote = left in IFNAME_KEYS
            words.append(f"{left} {op}{expr_text(val.get('right'), quote)}")
        elif key == "xt" and isinstance(val, dict):
            words.append(f"xt {val.get('type')} {val.get('name')}")
        elif key in ("jump", "goto") and isinstance(val, dict):
            words.append(f"{key} {val.get('target')}")
        else:
            words.append(key)
    return " ".join(words)
