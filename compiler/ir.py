"""The intermediate representation: one nftables table as data, rendered two ways.

Nodes say what a rule matches and does, nothing about syntax; render_nft and
render_json turn the same tree into nft text and libnftables JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import ClassVar, Literal

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
    """A verdict as a map's data: continue in another chain of the table."""

    target: str


Value = IPv4Address | IPv6Address | IPv4Network | IPv6Network | PortRange | int | Symbol | IfName


@lru_cache(maxsize=1024)
def ipv6_text(address: IPv6Address) -> str:
    """`str(address)`, which ipaddress works out anew each time, for IPv6 in some 10 µs; a
    host address that forwards name is in every key of their maps. (An IPv4 address is
    written faster than it is looked up.)"""
    return str(address)


@dataclass(frozen=True)
class SetOf:
    """An anonymous set literal: `{ a, b }`."""

    items: tuple[Value, ...]


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


@dataclass(frozen=True)
class Concat:
    parts: tuple[Meta | Payload, ...]


Operand = Meta | Payload | Fib | Ct | Concat


@dataclass(frozen=True)
class Match:
    left: Operand
    right: Value | SetOf | SetRef | Flags
    op: Literal["==", "!=", "in"] = "=="


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
    kind: Literal["accept", "drop"]


@dataclass(frozen=True)
class Masquerade:
    pass


@dataclass(frozen=True)
class Dnat:
    family: Family
    addr: MapLookup
    port: MapLookup


Statement = Match | Verdict | Masquerade | Dnat | VerdictMapLookup


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
    data: Value | Jump | None = None
    # What the forward is for (model.md's `comment`), carried into the kernel and listed
    # with the element; validated: printable, no double quote, at most 128 bytes.
    comment: str | None = None


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
