"""Judging one table's matches against one packet view (a flow as a base chain sees it):
each match holds for all of the flow's packets, none, or maybe."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from ipaddress import ip_address, ip_network, summarize_address_range
from itertools import product
from typing import Any

from nftfwd.doctor.flows import HOST_ADDRESS, Addr, Packet
from nftfwd.doctor.listing import L4, Ruleset
from nftfwd.doctor.tri import Tri, t_and, t_any, t_every, t_not
from nftfwd.ir import (
    Compared,
    Concat,
    Ct,
    Fib,
    Flags,
    MapOf,
    Match,
    Meta,
    Operand,
    Payload,
    Prefix,
    Range,
    SetOf,
    SetRef,
)
from nftfwd.model import IPNetwork, PortRange

Elem = Compared  # one value of what a match compares with, as nftjson reads it

MAX_ATOMS = 4096  # a concatenation with more combinations of values is judged "maybe"
PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 33: "dccp", 58: "ipv6-icmp", 132: "sctp"}


Test = Callable[[Any, Elem], Tri]
Dep = Callable[[Any], Tri]


def _always(_: Any) -> Tri:
    return Tri.YES


def _unknown(_: Any, __: Elem) -> Tri:
    return Tri.MAYBE


def _equal(atom: Any, elem: Elem) -> Tri:
    return Tri.YES if atom == elem else Tri.NO


def _ifname(atom: str, elem: Elem) -> Tri:
    if not isinstance(elem, str):
        return Tri.MAYBE  # iif/oif of an interface that no longer exists: an index
    if elem.endswith("*") and not elem.endswith("\\*"):
        return Tri.YES if atom.startswith(elem[:-1]) else Tri.NO
    return Tri.YES if atom == elem.replace("\\*", "*") else Tri.NO


@cache
def _parsed(first: str, last: str | None, version: int) -> tuple[IPNetwork, ...] | None:
    """The networks of this IP version in one address, prefix or (with last) range of a
    listing; None if it does not parse. Cached: a judge asks for the same elements for
    every flow."""
    try:
        if last is None:
            nets: tuple[IPNetwork, ...] = (ip_network(first, strict=False),)
        else:
            nets = tuple(summarize_address_range(ip_address(first), ip_address(last)))
    except (ValueError, TypeError):
        return None
    return tuple(n for n in nets if n.version == version)


def networks(elem: Elem, version: int) -> tuple[IPNetwork, ...] | None:
    """The networks of this IP version that an element of a set or match stands for;
    None: not an address, prefix or range of addresses."""
    try:
        if isinstance(elem, str):
            return _parsed(elem, None, version)
        if isinstance(elem, Prefix):
            return _parsed(f"{elem.addr}/{elem.length}", None, version)
        if isinstance(elem, Range):
            if isinstance(elem.first, str) and isinstance(elem.last, str):
                return _parsed(elem.first, elem.last, version)
            first, last = ip_address(elem.first), ip_address(elem.last)  # type: ignore[arg-type]
            found = summarize_address_range(first, last)  # not what nft lists: not cached
            return tuple(n for n in found if n.version == version)
    except (ValueError, TypeError):
        return None
    return None


def _address(version: int) -> Test:
    def test(atom: Addr, elem: Elem) -> Tri:
        nets = networks(elem, version)
        if nets is None:
            return Tri.MAYBE
        if isinstance(atom, str):  # ANYWHERE or HOST_ADDRESS
            if any(n.prefixlen == 0 for n in nets):
                return Tri.YES
            usable = [n for n in nets if not (n.is_loopback or n.is_link_local)]
            return Tri.MAYBE if atom == HOST_ADDRESS and usable else Tri.NO
        if atom.version != version:
            return Tri.NO
        return t_any(
            Tri.YES if atom.subnet_of(n) else Tri.MAYBE if atom.overlaps(n) else Tri.NO  # type: ignore[arg-type]
            for n in nets
        )

    return test


def port_bounds(elem: Elem) -> tuple[int, int] | None:
    """The first and last port that an element stands for; None: not a port or range."""
    if isinstance(elem, int) and not isinstance(elem, bool):
        return elem, elem
    if isinstance(elem, str) and elem.isdigit():
        return int(elem), int(elem)
    if isinstance(elem, Range):
        bounds = [port_bounds(elem.first), port_bounds(elem.last)]
        if bounds[0] is not None and bounds[1] is not None:
            return bounds[0][0], bounds[1][1]
    return None


def _port(atom: tuple[str | None, PortRange | None], elem: Elem) -> Tri:
    bounds, rng = port_bounds(elem), atom[1]
    if bounds is None:
        return Tri.MAYBE
    if rng is None:  # an arbitrary port: only a match on every port covers it
        return Tri.YES if bounds == (0, 65535) else Tri.NO
    if bounds[0] <= rng.first and rng.last <= bounds[1]:
        return Tri.YES
    return Tri.NO if rng.last < bounds[0] or bounds[1] < rng.first else Tri.MAYBE


def _proto(atom: str | None, elem: Elem) -> Tri:
    if atom is None:
        return Tri.NO  # arbitrary traffic is not one particular protocol
    name = PROTO_NAMES.get(elem, str(elem)) if isinstance(elem, int) else str(elem)
    return Tri.YES if {"icmpv6": "ipv6-icmp"}.get(name, name) == atom else Tri.NO


def _fib_type(atom: Tri, elem: Elem) -> Tri:
    if elem == "local":
        return atom
    return Tri.NO if atom is Tri.YES else Tri.MAYBE


def _ct_status(atom: Tri, elem: Elem) -> Tri:
    return atom if elem == "dnat" else Tri.MAYBE


class Judge:
    """Judges the matches of one table's rules against one packet view.

    A packet's addresses and ports are only ever weighed against the table's constants
    with networks() and port_bounds(), by order (shape.py relies on that).
    """

    def __init__(self, rs: Ruleset, family: str, table: str, pkt: Packet) -> None:
        self.rs, self.family, self.table, self.pkt = rs, family, table, pkt

    def elements(self, right: Compared) -> list[Elem] | None:
        """The values a match's right side stands for; None: a named set not listed."""
        if isinstance(right, SetRef):
            named = self.rs.sets.get((self.family, self.table, right.name))
            return None if named is None else [element.key for element in named.elements]
        if isinstance(right, SetOf):
            return list(right.items)
        if isinstance(right, MapOf):  # an anonymous map's: its keys
            return [key for key, _ in right.pairs]
        if isinstance(right, Flags):
            return list(right.names)
        return [right]

    def attribute(self, left: Operand) -> tuple[list[Any], Test, Dep] | None:
        """The packet's possible values for an expression, how to test one against an
        element, and whether the expression exists for it (tcp dport needs tcp)."""
        pkt = self.pkt
        protos: list[str | None] = list(pkt.protos) if pkt.protos is not None else [None]
        if isinstance(left, Meta):
            key = left.key
            if key in ("iifname", "iif", "oifname", "oif"):
                return list(pkt.iif if key in ("iifname", "iif") else pkt.oif), _ifname, _always
            if key == "l4proto":
                return protos, _proto, _always
            if key in ("nfproto", "protocol"):
                names = {"nfproto": {"ip": "ipv4", "ip6": "ipv6"}, "protocol": {}}[key]
                return [names.get(pkt.family, pkt.family)], _equal, _always
            return None
        if isinstance(left, Payload):
            proto, fld = left.protocol, left.field
            if proto in ("ip", "ip6"):
                same = Tri.YES if proto == pkt.family else Tri.NO

                def fam_dep(_: Any) -> Tri:
                    return same

                if fld in ("saddr", "daddr"):
                    addrs = pkt.saddr if fld == "saddr" else pkt.daddr
                    return list(addrs), _address(4 if proto == "ip" else 6), fam_dep
                if fld in ("protocol", "nexthdr"):
                    return protos, _proto, fam_dep
                return [None], _unknown, fam_dep
            allowed = L4 if proto == "th" else {proto} if proto in L4 else None
            if allowed is None:
                allowed = (
                    {"icmp"} if proto == "icmp" else {"ipv6-icmp"} if proto == "icmpv6" else None
                )
                if allowed is None:
                    return None

            def l4_dep(atom: Any) -> Tri:
                return Tri.YES if atom[0] in allowed else Tri.NO

            ports = (
                (pkt.sport if fld == "sport" else pkt.dport) if fld in ("sport", "dport") else None
            )
            atoms = list(product(protos, ports if ports is not None else [None]))
            return atoms, (_port if fld in ("sport", "dport") else _unknown), l4_dep
        if isinstance(left, Ct) and left.direction is None:
            key = left.key
            if key in ("state", "direction"):
                return [pkt.state if key == "state" else pkt.direction], _equal, _always
            if key == "status":
                return [pkt.dnat], _ct_status, _always
            return None
        if isinstance(left, Fib):
            if left.result == "type" and left.flags == ("daddr",):
                return [pkt.local], _fib_type, _always
            return None
        if isinstance(left, Concat):
            return self._concat(left.parts)
        return None

    def _concat(self, parts: tuple[Operand, ...]) -> tuple[list[Any], Test, Dep] | None:
        subs = [self.attribute(p) for p in parts]
        if any(s is None for s in subs):
            return None
        known = [s for s in subs if s is not None]
        size = 1
        for atoms, _, _ in known:
            size *= len(atoms)
        if size > MAX_ATOMS:
            return None

        def test(atom: tuple[Any, ...], elem: Elem) -> Tri:
            if type(elem) is not tuple or len(elem) != len(known):
                return Tri.MAYBE
            return t_and(*(s[1](a, v) for s, a, v in zip(known, atom, elem, strict=True)))

        def dep(atom: tuple[Any, ...]) -> Tri:
            return t_and(*(s[2](a) for s, a in zip(known, atom, strict=True)))

        return list(product(*(s[0] for s in known))), test, dep

    def match(self, m: Match) -> Tri:
        op, attr = m.op, self.attribute(m.left)
        if attr is None or op not in ("==", "in", "!="):
            return Tri.MAYBE
        # The result depends on the match, the sets of this table, the packet's family
        # and its values for the match's expression (the atoms): most flows share them
        # for most rules. The match is kept in the memo, so that its id stays its own.
        key = ("match", id(m), self.family, self.table, self.pkt.family, tuple(attr[0]))
        found = self.rs.memo.get(key)
        if found is None:
            found = self.rs.memo[key] = (self._match(m, op, attr), m)
        result: Tri = found[0]
        return result

    def _match(self, m: Match, op: str, attr: tuple[list[Any], Test, Dep]) -> Tri:
        elems = self.elements(m.right)
        atoms, test, dep = attr
        results = []
        for atom in atoms:
            exists = dep(atom)
            if exists is Tri.NO:  # tcp dport on a udp packet: neither == nor != matches
                results.append(Tri.NO)
                continue
            found = Tri.MAYBE if elems is None else t_any(test(atom, e) for e in elems)
            results.append(t_and(exists, t_not(found) if op == "!=" else found))
        return t_every(results)
