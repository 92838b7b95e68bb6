"""The typed model: what a valid model file means, with nothing left as raw text."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Literal

from nftfwd.errors import Location

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
Proto = Literal["tcp", "udp"]
Family = Literal["ip", "ip6"]
FAMILIES: tuple[Family, ...] = ("ip", "ip6")


def family_of(value: IPAddress | IPNetwork) -> Family:
    return "ip" if value.version == 4 else "ip6"


@dataclass(frozen=True, order=True)
class PortRange:
    first: int
    last: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def overlaps(self, other: PortRange) -> bool:
        return self.first <= other.last and other.first <= self.last

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


@dataclass(frozen=True)
class Forward:
    """Host port(s) on a host address, sent to a guest's port(s)."""

    port: PortRange
    to: PortRange
    protos: tuple[Proto, ...]
    sources: tuple[IPNetwork, ...]
    address: IPAddress | None
    snat: bool
    path: str
    location: Location | None
    comment: str | None = None  # validated text for nft's element comments

    def guest_port(self, host_port: int) -> int:
        """The guest port that `host_port` (one of `port`) goes to: the same offset into
        `to` (8000-8010 to 9000-9010 sends 8005 to 9005), or `to` itself when it is one
        port (every port of the range goes to it, as iptables' DNAT does)."""
        if self.to.size == 1:
            return self.to.first
        return self.to.first + host_port - self.port.first


@dataclass(frozen=True)
class Guest:
    name: str
    address: IPv4Address | None
    address6: IPv6Address | None
    forwards: tuple[Forward, ...]
    comment: str | None = None  # what its forwards' elements say when they say nothing

    def comment_of(self, forward: Forward) -> str | None:
        """What the elements of `forward` (one of this guest's) say: its own comment,
        else the guest's."""
        return forward.comment if forward.comment is not None else self.comment

    def address_in(self, family: Family) -> IPAddress | None:
        return self.address if family == "ip" else self.address6


@dataclass(frozen=True)
class Bridge:
    """The interface facing the guests (a bridge, or any interface)."""

    name: str
    subnet: IPv4Network | None
    subnet6: IPv6Network | None
    masquerade: bool
    guests: tuple[Guest, ...]

    def subnet_in(self, family: Family) -> IPNetwork | None:
        return self.subnet if family == "ip" else self.subnet6


@dataclass(frozen=True)
class Host:
    name: str
    uplinks: tuple[str, ...]
    addresses: tuple[IPAddress, ...]
    hairpin: bool
    bridges: tuple[Bridge, ...]

    def addresses_in(self, family: Family) -> tuple[IPAddress, ...]:
        return self._addresses_by_family[family]

    @cached_property
    def _addresses_by_family(self) -> dict[Family, tuple[IPAddress, ...]]:
        # Asked for once per forward and family by the checks and by lowering.
        return {f: tuple(a for a in self.addresses if family_of(a) == f) for f in FAMILIES}

    def subnets_in(self, family: Family) -> tuple[IPNetwork, ...]:
        return tuple(s for b in self.bridges if (s := b.subnet_in(family)) is not None)

    def forwards(self) -> Iterator[tuple[Bridge, Guest, Forward]]:
        """Every forward of the host with its bridge and guest, in model order."""
        for bridge in self.bridges:
            for guest in bridge.guests:
                for forward in guest.forwards:
                    yield bridge, guest, forward


@dataclass(frozen=True)
class Model:
    version: int
    table: str
    hosts: tuple[Host, ...]
    source: str

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)
