"""The intermediate representation: one nftables table as data, rendered two ways.

Nodes say what a rule matches and does, nothing about syntax; render_nft and
render_json turn the same tree into nft text and libnftables JSON. The same nodes, with
a few kinds only other tools write (Xt, Counter, Log, Reject, Nat, Prefix, Range,
Unknown...), are what nftjson reads a listing's rules and elements into, so that one
printer (nft_text) writes both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, ClassVar, Literal

from nftfwd.model import Family, PortRange


@dataclass(frozen=True)
class Symbol:
    """A constant nft spells as a word: tcp, local, established, dnat."""

    name: str


@dataclass(frozen=True)
class IfName:
    """An interface name; always quoted, so it is never a keyword or a wildcard."""

    name: str


@dataclass(frozen=True)
class Jump:
    """A verdict (as a statement or a map's data): continue in another chain of the
    table, and come back."""

    target: str


@dataclass(frozen=True)
class Goto:
    """A verdict: continue in another chain of the table, and do not come back."""

    target: str


@dataclass(frozen=True)
class Prefix:
    """A network as a listing writes it: `10.0.0.0/8` (the address kept as listed)."""

    addr: str
    length: int


@dataclass(frozen=True)
class Range:
    """`first-last` as a listing writes it: of addresses, ports or other numbers."""

    first: Listed
    last: Listed


@dataclass(frozen=True)
class Unknown:
    """What the reader has no type for, kept as the libnftables JSON it was, so that
    nothing read is lost and nothing crashes; printed by its kind (the JSON object's one
    key), as nft names it."""

    raw: Any

    @property
    def kind(self) -> str:
        """The one key of a JSON object (`queue`, `&`, `quota`...); "" for anything else."""
        raw = self.raw
        return str(next(iter(raw))) if type(raw) is dict and len(raw) == 1 else ""

    def __hash__(self) -> int:  # JSON objects and lists are not hashable; their text is
        return hash(json.dumps(self.raw, sort_keys=True, default=repr))


Value = IPv4Address | IPv6Address | IPv4Network | IPv6Network | PortRange | int | Symbol | IfName

# A value read back from a listing (nftjson): a `str` or `int` as listed (an address, a
# word, a port), a Prefix, a Range, a tuple (a concatenation: `10.0.0.1 . tcp . 22`); or
# one of the IR's own.
Listed = Value | str | Prefix | Range | tuple["Listed", ...]


@lru_cache(maxsize=1024)
def ipv6_text(address: IPv6Address) -> str:
    """`str(address)`, which ipaddress works out anew each time, for IPv6 in some 10 µs; a
    host address that forwards name is in every key of their maps. (An IPv4 address is
    written faster than it is looked up.)"""
    return str(address)


@dataclass(frozen=True)
class SetOf:
    """An anonymous set literal: `{ a, b }`."""

    items: tuple[Listed, ...]


@dataclass(frozen=True)
class MapOf:
    """An anonymous map literal, as other tools write one: `{ a : accept, b : drop }`."""

    pairs: tuple[tuple[Listed, Listed | AnyVerdict | Unknown], ...]


@dataclass(frozen=True)
class Flags:
    """Bits of a bitmask that a packet may have any of: `established,related`."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class SetRef:
    name: str


@dataclass(frozen=True)
class Meta:
    key: str  # l4proto, iifname, oifname


@dataclass(frozen=True)
class Payload:
    protocol: str  # ip, ip6, th
    field: str  # saddr, daddr, dport


@dataclass(frozen=True)
class Fib:
    flags: tuple[str, ...]
    result: str


@dataclass(frozen=True)
class Ct:
    key: str  # state, status
    direction: str | None = None  # original, reply: read back from other tools' rules


@dataclass(frozen=True)
class Concat:
    parts: tuple[Operand, ...]


Operand = Meta | Payload | Fib | Ct | Concat | Unknown

# What a match compares with (an operand too, in other tools' rules: `ip saddr ip daddr`).
Compared = Listed | SetOf | MapOf | SetRef | Flags | Operand


@dataclass(frozen=True)
class Match:
    left: Operand
    right: Compared
    op: str = "=="  # the IR's: ==, !=, in; read back: also <, >, <=, >=


@dataclass(frozen=True)
class MapLookup:
    key: Concat
    map: str


@dataclass(frozen=True)
class VerdictMapLookup:
    """`key vmap @map`: the verdict stored for the key, if any (one hash lookup)."""

    key: Concat
    map: str


@dataclass(frozen=True)
class Verdict:
    kind: str  # the IR's: accept, drop; read back: also return, continue


# A verdict: the IR's own, or one read back (a verdict map's data, a rule's last word).
AnyVerdict = Verdict | Jump | Goto


@dataclass(frozen=True)
class Masquerade:
    pass


@dataclass(frozen=True)
class Dnat:
    family: Family
    addr: MapLookup
    port: MapLookup


# --- statements only other tools' rules hold, as read back from a listing -------------


@dataclass(frozen=True)
class Lookup:
    """`key map @name` or `key map { ... }` (a NAT statement's address or port), or with
    `vmap` a verdict map of any key and map."""

    key: Operand
    data: SetRef | MapOf | Unknown


@dataclass(frozen=True)
class Vmap:
    """`key vmap @name` or `key vmap { a : accept, ... }` of another tool."""

    lookup: Lookup


@dataclass(frozen=True)
class Nat:
    """dnat, snat, redirect or masquerade of another tool; addr and port may be maps."""

    kind: str
    family: str | None
    addr: Lookup | Compared | None
    port: Lookup | Compared | None


@dataclass(frozen=True)
class Xt:
    """An iptables-nft match or target (`xt match conntrack`); what it tests is not in
    the JSON, only in the text listing's translation."""

    type: str  # match, target, watcher
    name: str


@dataclass(frozen=True)
class Counter:
    """An anonymous counter: counts, matches and decides nothing (not printed)."""


@dataclass(frozen=True)
class Log:
    prefix: str | None = None


@dataclass(frozen=True)
class Reject:
    type: str | None = None  # icmp, icmpv6, icmpx, tcp reset; None: the family's default
    code: str | None = None  # admin-prohibited, port-unreachable, ...


Statement = (
    Match
    | Verdict
    | Jump
    | Goto
    | Masquerade
    | Dnat
    | VerdictMapLookup
    | Vmap
    | Nat
    | Xt
    | Counter
    | Log
    | Reject
    | Unknown
)


@dataclass(frozen=True)
class Rule:
    statements: tuple[Statement, ...]
    note: str  # why the rule exists; a comment in the nft text, not loaded


@dataclass(frozen=True)
class Hook:
    """What makes a chain a base chain: the netfilter hook it is called from."""

    type: Literal["filter", "nat"]
    hook: Literal["prerouting", "output", "forward", "postrouting"]
    priority: int
    policy: Literal["accept"] = "accept"


@dataclass(frozen=True)
class Chain:
    name: str
    rules: tuple[Rule, ...]
    base: Hook | None = None  # None: a regular chain, reached only by a jump

    kind: ClassVar[Literal["chain"]] = "chain"


@dataclass(frozen=True)
class Element:
    key: tuple[Value, ...]
    data: Value | AnyVerdict | None = None


@dataclass(frozen=True)
class NamedSet:
    """A named set (data_type None) or map, looked up once per packet."""

    name: str
    key_types: tuple[str, ...]
    data_type: str | None
    elements: tuple[Element, ...]
    note: str

    @property
    def kind(self) -> Literal["set", "map"]:
        return "set" if self.data_type is None else "map"


@dataclass(frozen=True)
class Table:
    family: Literal["inet"]
    name: str
    host: str
    sets: tuple[NamedSet, ...]
    chains: tuple[Chain, ...]


# How one transaction replaces the table whether or not it exists (nft 1.0.6 has no
# `destroy`): add it (nothing happens if it exists), delete it, add it anew; then its
# objects, in `load_order`. Both renderers follow these two definitions.
REPLACE_TABLE: tuple[Literal["add", "delete"], ...] = ("add", "delete", "add")


def load_order(table: Table) -> tuple[Chain | NamedSet, ...]:
    """The table's chains (each with its rules) and sets, in the order they are added.

    An object may only name one added before it: verdict maps jump to the regular
    chains, and the base chains' rules look the sets and maps up. So the regular
    chains come first, then the sets and maps, then the base chains.
    """
    return (
        *(chain for chain in table.chains if chain.base is None),
        *table.sets,
        *(chain for chain in table.chains if chain.base is not None),
    )
