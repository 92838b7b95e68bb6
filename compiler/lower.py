"""Stage 3: one host of the typed model becomes one table of the IR.

The per-packet work is a fixed handful of rules; what grows with the model is the
content of the maps and sets they look up (model.md behaviour 7).
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

from nftfwd.ir import (
    Chain,
    Concat,
    Ct,
    Dnat,
    Element,
    Fib,
    Flags,
    IfName,
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
)
from nftfwd.model import FAMILIES, Family, Host, IPNetwork, PortRange, family_of
from nftfwd.semantic import forward_families, listen_addresses

ADDR_TYPE = {"ip": "ipv4_addr", "ip6": "ipv6_addr"}
ANY: dict[Family, IPNetwork] = {"ip": IPv4Network("0.0.0.0/0"), "ip6": IPv6Network("::/0")}
# Never a host address a forward listens on (model.md, "Where a forward listens").
NOT_HOST_ADDRESSES: dict[Family, tuple[IPNetwork, ...]] = {
    "ip": (ip_network("127.0.0.0/8"),),
    "ip6": (ip_network("::1/128"), ip_network("fe80::/10")),
}
PRIO_DSTNAT, PRIO_FILTER, PRIO_SRCNAT = -100, 0, 100
L4 = Meta("l4proto")
DPORT = Payload("th", "dport")
TCP_UDP = Match(L4, SetOf((Symbol("tcp"), Symbol("udp"))))
DNATED = Match(Ct("status"), Flags(("dnat",)), "in")
NFPROTO = {"ip": Symbol("ipv4"), "ip6": Symbol("ipv6")}


def _is(family: Family) -> Match:
    """Keeps packets of the other family away from this family's map keys."""
    return Match(Meta("nfproto"), NFPROTO[family])


def map_name(family: Family, what: str) -> str:
    return f"{what}{'4' if family == 'ip' else '6'}"


def lower_host(table: str, host: Host) -> Table:
    families = tuple(f for f in FAMILIES if host.subnets_in(f))
    sets: list[NamedSet] = []
    for family in families:
        addr, port = _dnat_maps(host, family)
        snat = _snat_set(host, family)
        sets.extend(s for s in (addr, port, snat) if s.elements)
    present = {s.name for s in sets}
    chains = (
        _prerouting(host, families, present),
        *((_output(host, families, present),) if host.hairpin else ()),
        _forward(host, families),
        _postrouting(host, families, present),
    )
    return Table("inet", table, host.name, tuple(sets), chains)


# -- maps ----------------------------------------------------------------------------


def _dnat_keys(host: Host, family: Family) -> Iterator[tuple[tuple[Value, ...], Value, PortRange]]:
    """(source . host address . proto . host ports, guest address, guest ports) per forward."""
    for _bridge, guest, forward in host.forwards():
        target = guest.address_in(family)
        if target is None or family not in forward_families(host, guest, forward):
            continue
        sources = [s for s in forward.sources if family_of(s) == family] or [ANY[family]]
        listen: list[Value] = [*listen_addresses(host, forward, family)] or [ANY[family]]
        for source in sources:
            for daddr in listen:
                for proto in forward.protos:
                    yield (source, daddr, Symbol(proto), forward.port), target, forward.to


def _dnat_maps(host: Host, family: Family) -> tuple[NamedSet, NamedSet]:
    addr_elements: list[Element] = []
    port_elements: list[Element] = []
    for key, target, to in _dnat_keys(host, family):
        port = key[3]
        assert isinstance(port, PortRange)
        addr_elements.append(Element(_key_with_port(key, port), target))
        # nft cannot keep an offset inside a range, so a range maps port by port.
        for offset in range(port.size):
            single = port.first + offset
            port_elements.append(Element(_key_with_port(key, single), to.first + offset))
    key_types = (ADDR_TYPE[family], ADDR_TYPE[family], "inet_proto", "inet_service")
    return (
        NamedSet(
            map_name(family, "dnat_addr"),
            key_types,
            ADDR_TYPE[family],
            True,
            _sorted(addr_elements),
            "client . host address . protocol . host port: guest",
        ),
        NamedSet(
            map_name(family, "dnat_port"),
            key_types,
            "inet_service",
            True,
            _sorted(port_elements),
            "the same keys: guest port",
        ),
    )


def _key_with_port(key: tuple[Value, ...], port: PortRange | int) -> tuple[Value, ...]:
    if isinstance(port, PortRange) and port.first == port.last:
        port = port.first
    return (*key[:3], port)


def _snat_set(host: Host, family: Family) -> NamedSet:
    elements: list[Element] = []
    for _bridge, guest, forward in host.forwards():
        target = guest.address_in(family)
        if not forward.snat or target is None:
            continue
        if family not in forward_families(host, guest, forward):
            continue
        to = forward.to.first if forward.to.size == 1 else forward.to
        elements.extend(Element((target, Symbol(p), to)) for p in forward.protos)
    key_types = (ADDR_TYPE[family], "inet_proto", "inet_service")
    return NamedSet(
        map_name(family, "snat"),
        key_types,
        None,
        True,
        _sorted(elements),
        "guest address . protocol . guest port reached from the bridge address",
    )


def _sorted(elements: list[Element]) -> tuple[Element, ...]:
    unique = {e.key: e for e in elements}
    return tuple(sorted(unique.values(), key=lambda e: tuple(_order(v) for v in e.key)))


def _order(value: Value) -> tuple[int, int, int, str]:
    if isinstance(value, IPv4Network | IPv6Network):
        return (value.version, int(value.network_address), value.prefixlen, "")
    if isinstance(value, IPv4Address | IPv6Address):
        return (value.version, int(value), value.max_prefixlen, "")
    if isinstance(value, PortRange):
        return (0, value.first, value.last, "")
    if isinstance(value, int):
        return (0, value, value, "")
    return (0, 0, 0, value.name)


# -- chains --------------------------------------------------------------------------


def _addr(family: Family, field: str) -> Payload:
    return Payload(family, field)


def _ifnames(names: tuple[str, ...] | list[str]) -> Value | SetOf:
    items = tuple(IfName(n) for n in sorted(names))
    return items[0] if len(items) == 1 else SetOf(items)


def _nets(nets: tuple[IPNetwork, ...] | list[IPNetwork]) -> Value | SetOf:
    items = tuple(sorted(nets, key=lambda n: (int(n.network_address), n.prefixlen)))
    return items[0] if len(items) == 1 else SetOf(items)


def _dnat_rule(host: Host, family: Family, iifnames: tuple[str, ...] | None) -> Rule:
    key = Concat((_addr(family, "saddr"), _addr(family, "daddr"), L4, DPORT))
    statements: list[Statement] = [_is(family)]
    if iifnames is not None:
        statements.append(Match(Meta("iifname"), _ifnames(iifnames)))
    if host.addresses_in(family):
        note = f"{family} forwards on the host's listed addresses"
    else:
        excluded = (*NOT_HOST_ADDRESSES[family], *host.subnets_in(family))
        statements += [
            Match(_addr(family, "daddr"), _nets(excluded), "!="),
            Match(Fib(("daddr",), "type"), Symbol("local")),
        ]
        note = f"{family} forwards on any local address but loopback, link-local and bridges'"
    statements += [
        TCP_UDP,
        Dnat(
            family,
            MapLookup(key, map_name(family, "dnat_addr")),
            MapLookup(key, map_name(family, "dnat_port")),
        ),
    ]
    return Rule(tuple(statements), note)


def _prerouting(host: Host, families: tuple[Family, ...], present: set[str]) -> Chain:
    arriving = host.uplinks + (tuple(b.name for b in host.bridges) if host.hairpin else ())
    rules = tuple(
        _dnat_rule(host, f, arriving) for f in families if map_name(f, "dnat_addr") in present
    )
    return Chain("prerouting", "nat", "prerouting", PRIO_DSTNAT, rules)


def _output(host: Host, families: tuple[Family, ...], present: set[str]) -> Chain:
    rules = tuple(
        _dnat_rule(host, f, None) for f in families if map_name(f, "dnat_addr") in present
    )
    return Chain("output", "nat", "output", PRIO_DSTNAT, rules)


def _forward(host: Host, families: tuple[Family, ...]) -> Chain:
    rules = [
        Rule(
            (Match(Ct("state"), Flags(("established", "related")), "in"), Verdict("accept")),
            "replies and related traffic of accepted connections",
        ),
        Rule((DNATED, Verdict("accept")), "connections a forward sent to a guest"),
    ]
    for bridge in sorted(host.bridges, key=lambda b: b.name):
        rules.append(
            Rule(
                (
                    Match(Meta("iifname"), IfName(bridge.name)),
                    Match(Meta("oifname"), IfName(bridge.name)),
                    Verdict("accept"),
                ),
                f"guests of {bridge.name} reach each other",
            )
        )
        rules.append(
            Rule(
                (
                    Match(Meta("iifname"), IfName(bridge.name)),
                    Match(Meta("oifname"), _ifnames(host.uplinks)),
                    Verdict("accept"),
                ),
                f"guests of {bridge.name} reach the outside",
            )
        )
    for family in families:
        rules.append(
            Rule(
                (Match(_addr(family, "daddr"), _nets(host.subnets_in(family))), Verdict("drop")),
                f"any other new {family} connection into a bridge subnet",
            )
        )
    return Chain("forward", "filter", "forward", PRIO_FILTER, tuple(rules))


def _postrouting(host: Host, families: tuple[Family, ...], present: set[str]) -> Chain:
    rules: list[Rule] = []
    for family in families:
        snat = map_name(family, "snat")
        if snat in present:
            key = Concat((_addr(family, "daddr"), L4, DPORT))
            rules.append(
                Rule(
                    (_is(family), DNATED, TCP_UDP, Match(key, SetRef(snat)), Masquerade()),
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
                                Match(_addr(family, "saddr"), subnet),
                                Match(_addr(family, "daddr"), subnet),
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
                        Match(_addr(family, "saddr"), _nets(masqueraded)),
                        Masquerade(),
                    ),
                    "guests reach the outside as the host",
                )
            )
    return Chain("postrouting", "nat", "postrouting", PRIO_SRCNAT, tuple(rules))
