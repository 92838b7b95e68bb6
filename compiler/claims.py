"""Where each forward of a host exists and listens, and what it claims there (model.md)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from nftfwd.model import (
    FAMILIES,
    Bridge,
    Family,
    Forward,
    Guest,
    Host,
    IPAddress,
    IPNetwork,
    PortRange,
    Proto,
    family_of,
)

# The one reading of model.md's "Where a forward listens": semantic's conflict checks, the
# lowering and doctor's flows all take it from here, so that they cannot drift apart.


@dataclass(frozen=True, slots=True)
class Reach:
    """One forward in one family where it exists: where it listens, whom it reaches."""

    family: Family
    bridge: Bridge
    guest: Guest
    forward: Forward
    target: IPAddress  # the guest's address in this family
    sources: tuple[IPNetwork, ...]  # the clients in this family; empty: any client
    listen: tuple[IPAddress, ...]  # the host addresses it listens on; empty: any

    @property
    def comment(self) -> str | None:
        """What its elements say in the ruleset: the forward's comment, else the guest's."""
        return self.guest.comment_of(self.forward)

    def claims(self) -> Iterator[Claim]:
        """What it takes: per protocol, per host address (None: any host address)."""
        for proto in self.forward.protos:
            for address in self.listen or (None,):
                yield Claim(proto, self.forward.port, address, self)


@dataclass(frozen=True, slots=True)
class Claim:
    """Host ports of one protocol at one host address (None: any host address of the
    family): packets no other forward of the host may take as well."""

    proto: Proto
    ports: PortRange
    address: IPAddress | None
    reach: Reach

    @property
    def family(self) -> Family:
        return self.reach.family

    @property
    def forward(self) -> Forward:
        return self.reach.forward


def reaches(host: Host, bridge: Bridge, guest: Guest, forward: Forward) -> tuple[Reach, ...]:
    """The families a forward exists in (model.md, "Where a forward listens"): where the
    guest has an address, its `address` is of the family, and `sources`, when set, names
    a prefix of it. Empty: the forward exists in no family."""
    found = []
    for family in FAMILIES:
        target = guest.address_in(family)
        if target is None:
            continue
        if forward.address is not None:
            if family_of(forward.address) != family:
                continue
            listen: tuple[IPAddress, ...] = (forward.address,)
        else:
            listen = host.addresses_in(family)
        sources = forward.sources
        if sources:
            sources = tuple(s for s in sources if family_of(s) == family)
            if not sources:
                continue  # a family that `sources` does not name is closed
        found.append(Reach(family, bridge, guest, forward, target, sources, listen))
    return tuple(found)


def host_reaches(host: Host) -> list[Reach]:
    """Every forward of the host in every family it exists in, in model order."""
    return [r for b, g, f in host.forwards() for r in reaches(host, b, g, f)]
