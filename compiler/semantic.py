"""Stage 2b: the rules of model.md that a schema cannot express; builds the typed model."""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from socket import AF_INET, inet_pton
from typing import Any, cast

from nftfwd.errors import ModelError, Problem
from nftfwd.keywords import is_reserved
from nftfwd.model import (
    FAMILIES,
    Bridge,
    Family,
    Forward,
    Guest,
    Host,
    IPAddress,
    IPNetwork,
    Model,
    PortRange,
    Proto,
    family_of,
)
from nftfwd.source import Document, KeyPath, format_path

DEFAULT_TABLE = "nftfwd"
FAMILY_NAMES = {"ip": "IPv4", "ip6": "IPv6"}


def build_model(doc: Document) -> Model:
    """Turn shape-checked data into the typed model, or raise every problem found."""
    checker = _Checker(doc)
    model = checker.model()
    if checker.problems:
        raise ModelError(checker.problems)
    return model


def forward_families(host: Host, guest: Guest, forward: Forward) -> tuple[Family, ...]:
    """The families in which a forward exists (model.md, "Where a forward listens")."""
    families = []
    for family in FAMILIES:
        if guest.address_in(family) is None:
            continue
        if forward.address is not None and family_of(forward.address) != family:
            continue
        if forward.sources and not any(family_of(s) == family for s in forward.sources):
            continue
        families.append(family)
    return tuple(families)


def listen_addresses(host: Host, forward: Forward, family: Family) -> tuple[IPAddress, ...]:
    """The host addresses a forward listens on in `family`; empty means any host address."""
    if forward.address is not None:
        return (forward.address,)
    return host.addresses_in(family)


def _parse_address(text: str) -> IPAddress:
    """`ip_address(text)`, four times as fast for the dotted-quad IPv4 most addresses are.

    inet_pton takes exactly the dotted quads ipaddress takes (four decimal octets of at
    most 255, no leading zeros); everything else goes to ipaddress.
    """
    try:
        return IPv4Address(inet_pton(AF_INET, text))
    except (OSError, TypeError, ValueError):
        return ip_address(text)


@dataclass(frozen=True)
class _Claim:
    family: Family
    proto: Proto
    ports: PortRange
    address: IPAddress | None  # None: any host address of the family
    forward: Forward


class _Checker:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Problem] = []
        # Each text parsed once: forwards repeat host addresses and sources.
        self.parsed_addresses: dict[str, IPAddress] = {}
        self.parsed_networks: dict[str, IPNetwork] = {}
        # Equal values are one object: thousands of forwards may send tcp to port 80, and
        # every object of the model is one more for the garbage collector to walk.
        self.port_ranges: dict[tuple[int, int], PortRange] = {}
        self.protos: dict[tuple[str, ...], tuple[str, ...]] = {}

    def fail(self, path: KeyPath, message: str) -> None:
        self.problems.append(Problem(self.doc.location(path), format_path(path), message))

    def fail_forward(self, forward: Forward, message: str) -> None:
        self.problems.append(Problem(forward.location, forward.path, message))

    def model(self) -> Model:
        data = self.doc.data
        table = data.get("table", DEFAULT_TABLE)
        if is_reserved(table):
            self.fail(
                ("table",),
                f"'{table}' is a word nft reserves and cannot name a table; "
                "choose another name, for example 'nftfwd'",
            )
        hosts = tuple(
            self.host(name, spec, ("hosts", name)) for name, spec in data["hosts"].items()
        )
        return Model(version=data["version"], table=table, hosts=hosts, source=self.doc.path)

    # -- addresses ---------------------------------------------------------------

    def address(self, text: str, path: KeyPath, version: int | None = None) -> IPAddress | None:
        value = self.parsed_addresses.get(text)
        if value is None:
            try:
                value = self.parsed_addresses[text] = _parse_address(text)
            except ValueError:
                self.fail(
                    path,
                    f"'{text}' is not an IP address; "
                    'write one such as 192.0.2.10 or "2001:db8::10"',
                )
                return None
        if version is not None and value.version != version:
            self.fail(
                path, f"'{text}' is not an IPv{version} address; write an IPv{version} address here"
            )
            return None
        return value

    def network(self, text: str, path: KeyPath, version: int | None = None) -> IPNetwork | None:
        value = self.parsed_networks.get(text)
        if value is None:
            try:
                value = self.parsed_networks[text] = ip_network(text)
            except ValueError:
                try:
                    loose = ip_network(text, strict=False)
                except ValueError:
                    self.fail(path, f"'{text}' is not an IP prefix; write one such as 192.0.2.0/24")
                else:
                    self.fail(path, f"'{text}' has host bits set; write the prefix as '{loose}'")
                return None
        if version is not None and value.version != version:
            self.fail(
                path, f"'{text}' is not an IPv{version} prefix; write an IPv{version} prefix here"
            )
            return None
        return value

    def host_address(self, text: str, path: KeyPath) -> IPAddress | None:
        value = self.address(text, path)
        if value is not None and (
            value.is_loopback or value.is_link_local or value.is_multicast or value.is_unspecified
        ):
            self.fail(
                path,
                f"'{text}' cannot be a host address for forwards (loopback, "
                "link-local, multicast or unspecified); use an address clients reach",
            )
            return None
        return value

    # -- hosts -------------------------------------------------------------------

    def host(self, name: str, spec: dict[str, Any], path: KeyPath) -> Host:
        problems_before = len(self.problems)
        uplinks = tuple(spec["uplinks"])
        addresses = tuple(
            a
            for i, text in enumerate(spec.get("addresses", []))
            if (a := self.host_address(text, (*path, "addresses", i)))
        )
        bridges = tuple(
            self.bridge(bname, bspec, (*path, "bridges", bname))
            for bname, bspec in spec.get("bridges", {}).items()
        )
        host = Host(
            name=name,
            uplinks=uplinks,
            addresses=addresses,
            hairpin=spec.get("hairpin", True),
            bridges=bridges,
        )
        for bridge in bridges:
            if bridge.name in uplinks:
                self.fail(
                    (*path, "bridges", bridge.name),
                    f"'{bridge.name}' is also an uplink; "
                    "an interface is either an uplink or faces guests, not both",
                )
        if len(self.problems) == problems_before:
            # Cross-checks only on values that parsed, so one typo is reported once.
            self.check_subnets(host, path)
            self.check_guest_addresses(host, path)
            self.check_forwards(host, path)
        return host

    def check_subnets(self, host: Host, path: KeyPath) -> None:
        seen: list[tuple[IPNetwork, str]] = []
        for bridge in host.bridges:
            for key, subnet in (("subnet", bridge.subnet), ("subnet6", bridge.subnet6)):
                if subnet is None:
                    continue
                for other, other_bridge in seen:
                    if subnet.version == other.version and subnet.overlaps(other):
                        self.fail(
                            (*path, "bridges", bridge.name, key),
                            f"{subnet} overlaps {other} of bridge '{other_bridge}'; "
                            "give each bridge its own subnet",
                        )
                seen.append((subnet, bridge.name))

    def check_guest_addresses(self, host: Host, path: KeyPath) -> None:
        owner: dict[IPAddress, str] = {}
        for bridge in host.bridges:
            for guest in bridge.guests:
                for key in ("address", "address6"):
                    value = getattr(guest, key)
                    if value is None:
                        continue
                    if value in owner:
                        self.fail(
                            (*path, "bridges", bridge.name, "guests", guest.name, key),
                            f"{value} is already the address of guest '{owner[value]}'; "
                            "give each guest its own address",
                        )
                    owner[value] = guest.name

    # -- bridges and guests --------------------------------------------------------

    def bridge(self, name: str, spec: dict[str, Any], path: KeyPath) -> Bridge:
        subnet = self.network(spec["subnet"], (*path, "subnet"), 4) if "subnet" in spec else None
        subnet6 = (
            self.network(spec["subnet6"], (*path, "subnet6"), 6) if "subnet6" in spec else None
        )
        guests = tuple(
            self.guest(
                gname,
                gspec,
                cast(IPv4Network | None, subnet),
                cast(IPv6Network | None, subnet6),
                spec,
                (*path, "guests", gname),
            )
            for gname, gspec in spec.get("guests", {}).items()
        )
        return Bridge(
            name=name,
            subnet=cast(IPv4Network | None, subnet),
            subnet6=cast(IPv6Network | None, subnet6),
            masquerade=spec.get("masquerade", True),
            guests=guests,
        )

    def guest_address(
        self,
        spec: dict[str, Any],
        key: str,
        subnet: IPNetwork | None,
        bridge_spec: dict[str, Any],
        path: KeyPath,
    ) -> IPAddress | None:
        if key not in spec:
            return None
        version = 4 if key == "address" else 6
        value = self.address(spec[key], (*path, key), version)
        subnet_key = "subnet" if version == 4 else "subnet6"
        if value is None:
            return None
        if subnet is None:
            if subnet_key not in bridge_spec:
                self.fail(
                    (*path, key),
                    f"the bridge has no {subnet_key}; add `{subnet_key}` "
                    f"to the bridge or remove `{key}`",
                )
            return None
        if value not in subnet:
            self.fail(
                (*path, key),
                f"{value} is outside the bridge's {subnet_key} {subnet}; use an address inside it",
            )
            return None
        if value == subnet.network_address or (
            version == 4 and subnet.prefixlen < 31 and value == subnet.broadcast_address
        ):
            self.fail(
                (*path, key),
                f"{value} is the network or broadcast address of {subnet}; "
                "use a host address inside it",
            )
            return None
        return value

    def guest(
        self,
        name: str,
        spec: dict[str, Any],
        subnet: IPv4Network | None,
        subnet6: IPv6Network | None,
        bridge_spec: dict[str, Any],
        path: KeyPath,
    ) -> Guest:
        address = self.guest_address(spec, "address", subnet, bridge_spec, path)
        address6 = self.guest_address(spec, "address6", subnet6, bridge_spec, path)
        forwards = tuple(
            f
            for i, fspec in enumerate(spec.get("forwards", []))
            if (f := self.forward(fspec, (*path, "forwards", i))) is not None
        )
        return Guest(
            name=name,
            address=cast(IPv4Address | None, address),
            address6=cast(IPv6Address | None, address6),
            forwards=forwards,
        )

    # -- forwards --------------------------------------------------------------------

    def ports(self, value: int | float | str, path: KeyPath) -> PortRange | None:
        if isinstance(value, float):  # JSON Schema's "integer" takes 8080.0 too
            self.fail(path, f"port {value} is not a whole number; write it as {int(value)}")
            return None
        if isinstance(value, int):
            first = last = value
        else:
            first_text, _, last_text = value.partition("-")
            first, last = int(first_text), int(last_text or first_text)
        if not (1 <= first <= 65535 and 1 <= last <= 65535):
            self.fail(path, f"port {value} is out of range; ports are 1 to 65535")
            return None
        if first > last:
            self.fail(path, f"range '{value}' runs backwards; write it as '{last}-{first}'")
            return None
        ports = self.port_ranges.get((first, last))
        if ports is None:
            ports = self.port_ranges[(first, last)] = PortRange(first, last)
        return ports

    def forward(self, spec: dict[str, Any], path: KeyPath) -> Forward | None:
        port = self.ports(spec["port"], (*path, "port"))
        to = self.ports(spec["to"], (*path, "to")) if "to" in spec else port
        if port is not None and to is not None and to.size not in (1, port.size):
            self.fail(
                (*path, "to"),
                f"'to' covers {to.size} ports but 'port' covers {port.size}; give one port "
                f"(every port of the range goes to it) or a range of {port.size} ports",
            )
            return None
        proto_spec = spec.get("proto", "tcp")
        protos = tuple(sorted({proto_spec} if isinstance(proto_spec, str) else set(proto_spec)))
        protos = self.protos.setdefault(protos, protos)
        source_texts = spec.get("sources", ())
        sources = tuple(
            s
            for i, text in enumerate(source_texts)
            if (s := self.network(text, (*path, "sources", i))) is not None
        )
        if len(sources) > 1:
            sources = tuple(sorted(sources, key=lambda n: (n.version, n)))
        address = (
            self.host_address(spec["address"], (*path, "address")) if "address" in spec else None
        )
        if port is None or to is None or len(sources) != len(source_texts):
            return None
        if "address" in spec and address is None:
            return None
        return Forward(
            port=port,
            to=to,
            protos=cast(tuple[Proto, ...], protos),
            sources=sources,
            address=address,
            snat=spec.get("snat", False),
            path=format_path(path),
            location=self.doc.location(path),
        )

    def check_forwards(self, host: Host, path: KeyPath) -> None:
        claims: dict[tuple[Family, Proto], list[_Claim]] = defaultdict(list)
        for bridge, guest, forward in host.forwards():
            if forward.address is not None:
                listed = host.addresses_in(family_of(forward.address))
                if listed and forward.address not in listed:
                    index = guest.forwards.index(forward)  # all parsed: the spec's index
                    at = (*path, "bridges", bridge.name, "guests", guest.name, "forwards", index)
                    self.fail(
                        (*at, "address"),
                        f"address {forward.address} is not one of the host's "
                        f"addresses ({', '.join(map(str, listed))}); name one of them",
                    )
                    continue
            families = forward_families(host, guest, forward)
            if not families:
                self.fail_forward(
                    forward,
                    f"this forward exists in no address family: guest "
                    f"'{guest.name}' has no address in the family of its "
                    "`address`/`sources`; fix the guest's addresses or the forward",
                )
                continue
            for family in families:
                for proto in forward.protos:
                    for address in listen_addresses(host, forward, family) or (None,):
                        claims[(family, proto)].append(
                            _Claim(family, proto, forward.port, address, forward)
                        )
        reported: set[tuple[int, int]] = set()
        for group in claims.values():
            for first, second in _overlaps(group):
                pair = (id(first.forward), id(second.forward))
                if pair not in reported:
                    reported.add(pair)
                    self.fail_forward(second.forward, _conflict_message(first, second))
        self.check_snat_agreement(host)

    def check_snat_agreement(self, host: Host) -> None:
        """snat is decided on the guest's side of the DNAT, so forwards that meet there agree."""
        by_target: dict[tuple[IPAddress, Proto, int], Forward] = {}
        for _bridge, guest, forward in host.forwards():
            to = forward.to
            ends = (to.first,) if to.first == to.last else (to.first, to.last)
            for family in FAMILIES:
                target = guest.address_in(family)
                if target is None:
                    continue
                for proto in forward.protos:
                    for port in ends:
                        other = by_target.setdefault((target, proto, port), forward)
                        if other is not forward and other.snat != forward.snat:
                            self.fail_forward(
                                forward,
                                f"reaches {target} {proto}/{port} like "
                                f"{other.path} (line {_line(other)}), but only one of "
                                "them sets snat; set snat the same on both",
                            )
                            return


def _line(forward: Forward) -> int:
    return forward.location.line if forward.location else 0


def _overlaps(claims: list[_Claim]) -> Iterator[tuple[_Claim, _Claim]]:
    """Pairs of claims on overlapping ports whose addresses collide, in one sweep."""
    active: list[tuple[int, int, _Claim]] = []  # heap of (last port, order, claim)
    # How many active claims there are at each address (None: any host address): a claim
    # no active one can collide with is passed without a look at them, so thousands of
    # forwards on one port, each at its own host address, cost no more than one each.
    active_at: Counter[IPAddress | None] = Counter()
    # By first port, then as listed (the sort is stable); the index breaks ties in the heap.
    for order in sorted(range(len(claims)), key=lambda i: claims[i].ports.first):
        claim = claims[order]
        while active and active[0][0] < claim.ports.first:
            active_at[heapq.heappop(active)[2].address] -= 1
        if claim.address is None or active_at[None] or active_at[claim.address]:
            for _, _, earlier in active:
                if _collide(earlier, claim):
                    first, second = sorted((earlier, claim), key=lambda c: _line(c.forward))
                    yield first, second
                    break
        heapq.heappush(active, (claim.ports.last, order, claim))
        active_at[claim.address] += 1


def _collide(earlier: _Claim, claim: _Claim) -> bool:
    """Whether two claims on overlapping ports would take the same packets."""
    if earlier.forward is claim.forward:
        return False
    return earlier.address is None or claim.address is None or earlier.address == claim.address


def _conflict_message(first: _Claim, second: _Claim) -> str:
    def where(claim: _Claim) -> str:
        if claim.address is None:
            return f"any {FAMILY_NAMES[claim.family]} host address"
        return str(claim.address)

    return (
        f"{second.proto} port {second.ports} on {where(second)} is also claimed by "
        f"{first.forward.path} (line {_line(first.forward)}, port {first.ports} on "
        f"{where(first)}); give one of them another port or host address"
    )
