"""Stage 3: one host of the typed model becomes one table of the IR.

The per-packet work is a fixed handful of rules, each one hash lookup (model.md
behaviour 7): forwards only add elements to exact-match maps. Interval maps are
avoided on the packet path on purpose: the kernel stores concatenated intervals in
its pipapo backend, whose lookup and insertion grow with the number of elements.

A forward listens on a host address and a (protocol, port). Its key is
`protocol . port` when it listens on any host address, and `address . protocol .
port` when it names one (its `address`, or the host's listed `addresses`). A
forward with `sources` is guarded by a verdict map on the same key that jumps to a
chain accepting (= leaving nftfwd's nat chain without DNAT) any other client.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from itertools import chain
from typing import Literal

from nftfwd.claims import Claim, Reach, host_reaches
from nftfwd.ir import (
    Chain,
    Concat,
    Ct,
    Dnat,
    Element,
    Fib,
    Flags,
    Hook,
    IfName,
    Jump,
    MapLookup,
    Masquerade,
    Match,
    Meta,
    NamedSet,
    Payload,
    Rule,
    SetOf,
    SetRef,
    Statement,
    Symbol,
    Table,
    Value,
    Verdict,
    VerdictMapLookup,
)
from nftfwd.model import FAMILIES, Family, Host, IPAddress, IPNetwork

ADDR_TYPE = {"ip": "ipv4_addr", "ip6": "ipv6_addr"}
SUFFIX = {"ip": "4", "ip6": "6"}
# Never a host address a forward listens on (model.md, "Where a forward listens").
NOT_HOST_ADDRESSES: dict[Family, tuple[IPNetwork, ...]] = {
    "ip": (ip_network("127.0.0.0/8"),),
    "ip6": (ip_network("::1/128"), ip_network("fe80::/10")),
}
PRIO_DSTNAT, PRIO_FILTER, PRIO_SRCNAT = -100, 0, 100
L4 = Meta("l4proto")
DPORT = Payload("th", "dport")
PROTOCOL = {"tcp": Symbol("tcp"), "udp": Symbol("udp")}  # one object each, in every key
TCP_UDP = Match(L4, SetOf(tuple(PROTOCOL.values())))
DNATED = Match(Ct("status"), Flags(("dnat",)), "in")
NFPROTO = {"ip": Symbol("ipv4"), "ip6": Symbol("ipv6")}
ANY, AT = "any", "at"  # listening on any host address, or at one named address


def map_name(what: Holds, family: Family, where: str | None = None) -> str:
    return f"{what}_{where}{SUFFIX[family]}" if where else f"{what}{SUFFIX[family]}"


# What a map (or set) of nftfwd's table holds. The keys of the forward maps are
# `protocol . port` (where ANY) or `host address . protocol . port` (where AT);
# dnat_addr: key -> guest address; dnat_port: the same keys -> guest port; sources: the
# same keys -> a jump to the chain that lets only the forward's clients through; snat (a
# set): guest address . protocol . guest port reached from the bridge address.
Holds = Literal["dnat_addr", "dnat_port", "sources", "snat"]


@dataclass(frozen=True)
class MapOf:
    """One named map or set of nftfwd's table: its name, and what it holds."""

    name: str
    family: Family
    holds: Holds
    where: str | None  # AT or ANY for the forward maps, None for snat


_WHERES: tuple[tuple[Holds, tuple[str | None, ...]], ...] = (
    ("dnat_addr", (AT, ANY)),
    ("dnat_port", (AT, ANY)),
    ("sources", (AT, ANY)),
    ("snat", (None,)),
)
# Every map and set a table of nftfwd may hold: the names plan and diff read.
MAPS: tuple[MapOf, ...] = tuple(
    MapOf(map_name(holds, family, where), family, holds, where)
    for family in FAMILIES
    for holds, wheres in _WHERES
    for where in wheres
)


def map_of(holds: Holds, family: Family, where: str | None = None) -> MapOf:
    (found,) = (m for m in MAPS if (m.holds, m.family, m.where) == (holds, family, where))
    return found


def lower_host(table: str, host: Host) -> Table:
    families = tuple(f for f in FAMILIES if host.subnets_in(f))
    found = host_reaches(host)
    sets: list[NamedSet] = []
    guards: list[Chain] = []
    for family in families:
        here = [r for r in found if r.family == family]
        claims = [c for r in here for c in r.claims()]
        guard_chains, guard_maps = _guards(claims, family)
        guards += guard_chains
        sets += guard_maps + _dnat_maps(claims, family) + [_snat_set(here, family)]
    sets = [s for s in sets if s.elements]
    present = {s.name for s in sets}
    chains = (
        *guards,
        _prerouting(host, families, present),
        *((_output(host, families, present),) if host.hairpin else ()),
        _forward(host, families),
        _postrouting(host, families, present),
    )
    return Table("inet", table, host.name, tuple(sets), chains)


# -- map keys -----------------------------------------------------------------------------


def _where(claim: Claim) -> str:
    return ANY if claim.address is None else AT


def _claim_key(claim: Claim, port: int) -> tuple[Value, ...]:
    """The key of one host port of a claim: `address . protocol . port`, or `protocol .
    port` when it listens on any host address."""
    if claim.address is None:
        return (PROTOCOL[claim.proto], port)
    return (claim.address, PROTOCOL[claim.proto], port)


def _key_types(family: Family, where: str) -> tuple[str, ...]:
    head = (ADDR_TYPE[family],) if where == AT else ()
    return (*head, "inet_proto", "inet_service")


# -- maps ---------------------------------------------------------------------------------


def _dnat_maps(claims: list[Claim], family: Family) -> list[NamedSet]:
    maps = []
    for where in (AT, ANY):
        # Both maps have the same keys, so each key is made, deduplicated and ordered once.
        guest_of: dict[tuple[Value, ...], tuple[IPAddress, int]] = {}  # address, port
        for claim in claims:
            if _where(claim) != where:
                continue
            forward, target = claim.forward, claim.reach.target
            # nft cannot keep an offset inside a range, so a range maps port by port.
            for host_port in range(forward.port.first, forward.port.last + 1):
                guest_of[_claim_key(claim, host_port)] = (target, forward.guest_port(host_port))
        keys = sorted(guest_of, key=_key_order)
        key_types = _key_types(family, where)
        listen = "any host address" if where == ANY else "host address"
        maps += [
            NamedSet(
                map_name("dnat_addr", family, where),
                key_types,
                ADDR_TYPE[family],
                tuple(Element(key, guest_of[key][0]) for key in keys),
                f"{listen} . protocol . host port: guest address",
            ),
            NamedSet(
                map_name("dnat_port", family, where),
                key_types,
                "inet_service",
                tuple(Element(key, guest_of[key][1]) for key in keys),
                "the same keys: guest port",
            ),
        ]
    return maps


def _guards(claims: list[Claim], family: Family) -> tuple[list[Chain], list[NamedSet]]:
    """One chain per distinct `sources` list, and the verdict maps that jump to them."""
    lists = sorted({c.reach.sources for c in claims if c.reach.sources}, key=_order_prefixes)
    chain_of = {sources: f"allow{SUFFIX[family]}_{i}" for i, sources in enumerate(lists)}
    chains = [
        Chain(
            name,
            (
                Rule(
                    (Match(Payload(family, "saddr"), _nets(sources), "!="), Verdict("accept")),
                    "any other client: leave this chain without DNAT",
                ),
            ),
        )
        for sources, name in chain_of.items()
    ]
    maps = []
    for where in (AT, ANY):
        elements = [
            Element(_claim_key(claim, port), Jump(chain_of[claim.reach.sources]))
            for claim in claims
            if claim.reach.sources and _where(claim) == where
            for port in range(claim.ports.first, claim.ports.last + 1)
        ]
        maps.append(
            NamedSet(
                map_name("sources", family, where),
                _key_types(family, where),
                "verdict",
                _sorted(elements),
                "forwards restricted to some clients: check the client first",
            )
        )
    return chains, maps


def _snat_set(found: list[Reach], family: Family) -> NamedSet:
    elements = [
        Element((reach.target, PROTOCOL[proto], port))
        for reach in found
        if reach.forward.snat
        for proto in reach.forward.protos
        for port in range(reach.forward.to.first, reach.forward.to.last + 1)
    ]
    key_types = (ADDR_TYPE[family], "inet_proto", "inet_service")
    return NamedSet(
        map_name("snat", family),
        key_types,
        None,
        _sorted(elements),
        "guest address . protocol . guest port reached from the bridge address",
    )


def _sorted(elements: list[Element]) -> tuple[Element, ...]:
    unique = {e.key: e for e in elements}
    return tuple(sorted(unique.values(), key=lambda e: _key_order(e.key)))


def _key_order(key: tuple[Value, ...]) -> tuple[int | str, ...]:
    # The orders of the values one after the other, all of a length: sorting a big map
    # holds one tuple per key rather than one per value.
    return tuple(chain.from_iterable(map(_order, key)))


def _order(value: Value) -> tuple[int, int, int, str]:
    # Ports and protocols first: they are in every key.
    if isinstance(value, int):
        return (0, value, value, "")
    if isinstance(value, Symbol | IfName):
        return (0, 0, 0, value.name)
    if isinstance(value, IPv4Address | IPv6Address):
        return (value.version, int(value), value.max_prefixlen, "")
    if isinstance(value, IPv4Network | IPv6Network):
        return (value.version, int(value.network_address), value.prefixlen, "")
    return (0, value.first, value.last, "")


def _order_prefixes(prefixes: tuple[IPNetwork, ...]) -> list[tuple[int, int, int, str]]:
    return [_order(p) for p in prefixes]


# -- chains -------------------------------------------------------------------------------


def _ifnames(names: tuple[str, ...] | list[str]) -> Value | SetOf:
    items = tuple(IfName(n) for n in sorted(names))
    return items[0] if len(items) == 1 else SetOf(items)


def _nets(nets: tuple[IPNetwork, ...] | list[IPNetwork]) -> Value | SetOf:
    items = tuple(sorted(nets, key=lambda n: (int(n.network_address), n.prefixlen)))
    return items[0] if len(items) == 1 else SetOf(items)


def _key(family: Family, where: str) -> Concat:
    head = (Payload(family, "daddr"),) if where == AT else ()
    return Concat((*head, L4, DPORT))


def _listening(host: Host, family: Family, iifnames: tuple[str, ...] | None) -> list[Statement]:
    """The packets a forward may take: this family, arriving where forwards are
    reached, to a host address, TCP or UDP (which map keys with ports need first)."""
    statements: list[Statement] = [Match(Meta("nfproto"), NFPROTO[family])]
    if iifnames is not None:
        statements.append(Match(Meta("iifname"), _ifnames(iifnames)))
    if not host.addresses_in(family):
        excluded = (*NOT_HOST_ADDRESSES[family], *host.subnets_in(family))
        statements += [
            Match(Payload(family, "daddr"), _nets(excluded), "!="),
            Match(Fib(("daddr",), "type"), Symbol("local")),
        ]
    return [*statements, TCP_UDP]


def _dnat_rules(
    host: Host, families: tuple[Family, ...], present: set[str], iifnames: tuple[str, ...] | None
) -> tuple[Rule, ...]:
    rules = []
    for family in families:
        head = _listening(host, family, iifnames)
        for where in (AT, ANY):
            guard = map_name("sources", family, where)
            if guard in present:
                rules.append(
                    Rule(
                        (*head, VerdictMapLookup(_key(family, where), guard)),
                        f"{family}: forwards with sources check the client",
                    )
                )
        for where in (AT, ANY):
            addr, port = map_name("dnat_addr", family, where), map_name("dnat_port", family, where)
            if addr in present:
                key = _key(family, where)
                dnat = Dnat(family, MapLookup(key, addr), MapLookup(key, port))
                listen = "at a named host address" if where == AT else "on any host address"
                rules.append(Rule((*head, dnat), f"{family}: forwards {listen}"))
    return tuple(rules)


def _prerouting(host: Host, families: tuple[Family, ...], present: set[str]) -> Chain:
    arriving = host.uplinks + (tuple(b.name for b in host.bridges) if host.hairpin else ())
    return Chain(
        "prerouting",
        _dnat_rules(host, families, present, arriving),
        Hook("nat", "prerouting", PRIO_DSTNAT),
    )


def _output(host: Host, families: tuple[Family, ...], present: set[str]) -> Chain:
    return Chain(
        "output", _dnat_rules(host, families, present, None), Hook("nat", "output", PRIO_DSTNAT)
    )


def _forward(host: Host, families: tuple[Family, ...]) -> Chain:
    rules = [
        Rule(
            (Match(Ct("state"), Flags(("established", "related")), "in"), Verdict("accept")),
            "replies and related traffic of accepted connections",
        ),
        Rule((DNATED, Verdict("accept")), "connections a forward sent to a guest"),
    ]
    for bridge in sorted(host.bridges, key=lambda b: b.name):
        leaving = Match(Meta("iifname"), IfName(bridge.name))
        for towards, what in ((IfName(bridge.name), "each other"),
                              (_ifnames(host.uplinks), "the outside")):  # fmt: skip
            rules.append(Rule((leaving, Match(Meta("oifname"), towards), Verdict("accept")),
                              f"guests of {bridge.name} reach {what}"))  # fmt: skip
    for family in families:
        rules.append(
            Rule(
                (Match(Payload(family, "daddr"), _nets(host.subnets_in(family))), Verdict("drop")),
                f"any other new {family} connection into a bridge subnet",
            )
        )
    return Chain("forward", tuple(rules), Hook("filter", "forward", PRIO_FILTER))


def _postrouting(host: Host, families: tuple[Family, ...], present: set[str]) -> Chain:
    rules: list[Rule] = []
    for family in families:
        snat = map_name("snat", family)
        if snat in present:
            key = Concat((Payload(family, "daddr"), L4, DPORT))
            rules.append(
                Rule(
                    (
                        Match(Meta("nfproto"), NFPROTO[family]),
                        DNATED,
                        TCP_UDP,
                        Match(key, SetRef(snat)),
                        Masquerade(),
                    ),
                    "snat forwards reach the guest from the host's bridge address",
                )
            )
        if host.hairpin:
            for bridge in sorted(host.bridges, key=lambda b: b.name):
                subnet = bridge.subnet_in(family)
                if subnet is not None:
                    rules.append(
                        Rule(
                            (
                                DNATED,
                                Match(Payload(family, "saddr"), subnet),
                                Match(Payload(family, "daddr"), subnet),
                                Masquerade(),
                            ),
                            f"hairpin within {bridge.name}: replies come back through the host",
                        )
                    )
        masqueraded = [
            s for b in host.bridges if b.masquerade if (s := b.subnet_in(family)) is not None
        ]
        if masqueraded:
            rules.append(
                Rule(
                    (
                        Match(Meta("oifname"), _ifnames(host.uplinks)),
                        Match(Payload(family, "saddr"), _nets(masqueraded)),
                        Masquerade(),
                    ),
                    "guests reach the outside as the host",
                )
            )
    return Chain("postrouting", tuple(rules), Hook("nat", "postrouting", PRIO_SRCNAT))
