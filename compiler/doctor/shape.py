"""Packets as one table's rules can tell them apart, so that alike packets are walked once.

The judge (judge.py) weighs a packet's addresses and ports against the table's constants
by order alone: an address range lies within a network the table names, overlaps it or
misses it; a port range lies within a port range of the table, overlaps it or misses it.
Cut the line of IPv4 addresses, of IPv6 addresses and of ports at the start and just past
the end of every constant the table holds: two values whose first and whose last point
fall between the same cuts are judged alike by every match of the table. A packet's
addresses and ports are replaced by the first alike value seen (its shape), and walks of
packets of the same shape reach the same drops: with many forwards to one subnet, those
differ in guest address and port, and a table that names none of them is walked once for
all of them instead of once for each.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from nftfwd.doctor.flows import Addr, Packet
from nftfwd.doctor.judge import networks, port_bounds
from nftfwd.doctor.listing import Ruleset, xt_conditions
from nftfwd.ir import Unknown, Xt
from nftfwd.model import PortRange


@dataclass
class Cuts:
    """Where one table's constants begin and end, and the values seen so far by shape."""

    addr: dict[int, list[int]]  # IP version -> sorted cut points
    port: list[int]
    seen: dict[tuple[Any, ...], Any] = field(default_factory=dict)

    def address(self, atom: Addr) -> Addr:
        if isinstance(atom, str):  # ANYWHERE, HOST_ADDRESS: no constant is alike
            return atom
        cuts = self.addr[atom.version]
        lo = bisect_right(cuts, int(atom.network_address))
        hi = bisect_right(cuts, int(atom.broadcast_address))
        found: Addr = self.seen.setdefault((atom.version, lo, hi), atom)
        return found

    def ports(self, atom: PortRange) -> PortRange:
        key = ("port", bisect_right(self.port, atom.first), bisect_right(self.port, atom.last))
        found: PortRange = self.seen.setdefault(key, atom)
        return found


def _nodes(value: Any) -> Iterator[Any]:
    """Every value nested in what nftjson read (statements, values, elements: frozen
    dataclasses and tuples; the JSON kept in Unknown), itself included."""
    stack = [value]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, tuple | list):
            stack.extend(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, Unknown):
            stack.append(node.raw)
        elif hasattr(node, "__dataclass_fields__"):
            stack.extend(vars(node).values())


def _constants(rs: Ruleset, family: str, table: str) -> Iterator[Any]:
    """Everything in a table that a judge may weigh a packet against (and more)."""
    for (fam, tab, _), chain in rs.chains.items():
        if (fam, tab) != (family, table):
            continue
        for rule in chain.rules:
            for node in _nodes(rule.statements):
                yield node
                if isinstance(node, Xt):
                    yield from _nodes(xt_conditions(node.name, rule.text))
    for (fam, tab, _), named in rs.sets.items():
        if (fam, tab) == (family, table):
            for element in named.elements:
                yield from _nodes(element.key)
                yield from _nodes(element.data)


def cuts(rs: Ruleset, family: str, table: str) -> Cuts:
    """The cuts of one table (computed once per ruleset)."""
    key = ("cuts", family, table)
    found: Cuts | None = rs.memo.get(key)
    if found is not None:
        return found
    addr: dict[int, set[int]] = {4: set(), 6: set()}
    port: set[int] = set()
    for node in _constants(rs, family, table):
        for version, points in addr.items():
            for net in networks(node, version) or ():
                points.update((int(net.network_address), int(net.broadcast_address) + 1))
        bounds = port_bounds(node)
        if bounds is not None:
            port.update((bounds[0], bounds[1] + 1))
    made = Cuts({v: sorted(p) for v, p in addr.items()}, sorted(port))
    rs.memo[key] = made
    return made


def shape(rs: Ruleset, family: str, table: str, pkt: Packet) -> Packet:
    """The packet with each address and port replaced by the first alike one seen: what
    every match of this table's rules judges the same as the packet itself."""
    c = cuts(rs, family, table)

    def ports(values: tuple[PortRange, ...] | None) -> tuple[PortRange, ...] | None:
        return None if values is None else tuple(c.ports(p) for p in values)

    return replace(
        pkt,
        saddr=tuple(c.address(a) for a in pkt.saddr),
        daddr=tuple(c.address(a) for a in pkt.daddr),
        sport=ports(pkt.sport),
        dport=ports(pkt.dport),
    )
