"""model.md's rules that relate values, one function each, named as its case in
tests/data/bad/ (`guest_outside_subnet`: guest-outside-subnet.yaml), listed in RULES.

A rule reads one host of the tree (tree.py) and yields every problem it finds, each
located; the values themselves were parsed (values.py). Rules across entities run only
on a host whose values and single-entity rules all passed, so that one typo is reported
once and not again as the conflicts it seems to make. To add a rule: write its function,
add it to RULES, and add its case to tests/data/bad/ (tests/semantic/ checks both).
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property

from nftfwd.claims import Claim, Reach, reaches
from nftfwd.errors import Problem
from nftfwd.model import (
    FAMILIES,
    Bridge,
    Family,
    Forward,
    Guest,
    Host,
    IPAddress,
    IPNetwork,
    Proto,
    family_of,
)
from nftfwd.source import Document, KeyPath, format_path

FAMILY_NAMES = {"ip": "IPv4", "ip6": "IPv6"}
# A guest's address key and its bridge's subnet key, per family.
_KEYS: dict[Family, tuple[str, str]] = {"ip": ("address", "subnet"), "ip6": ("address6", "subnet6")}


@dataclass(frozen=True)
class HostView:
    """One host of the tree, as the rules read it: where each of its keys is."""

    doc: Document
    host: Host
    path: KeyPath
    forward_keys: Mapping[int, KeyPath]  # by id(forward)

    def at(self, path: KeyPath, message: str) -> Problem:
        return Problem(self.doc.location(path), format_path(path), message)

    def on(self, forward: Forward, message: str) -> Problem:
        return Problem(forward.location, forward.path, message)

    def bridge_path(self, bridge: Bridge) -> KeyPath:
        return (*self.path, "bridges", bridge.name)

    def guest_path(self, bridge: Bridge, guest: Guest) -> KeyPath:
        return (*self.bridge_path(bridge), "guests", guest.name)

    def written(self, path: KeyPath) -> bool:
        """Whether the model file has the key `path`."""
        return path in self.doc.locations

    @cached_property
    def forwards(self) -> tuple[tuple[Bridge, Guest, Forward], ...]:
        """Every forward of the host with its bridge and guest, in model order."""
        return tuple(self.host.forwards())

    @cached_property
    def reaches(self) -> tuple[tuple[Guest, Forward, tuple[Reach, ...]], ...]:
        """Every forward with the families it exists in (claims.py), in model order."""
        return tuple((g, f, reaches(self.host, b, g, f)) for b, g, f in self.forwards)

    @cached_property
    def guest_addresses(self) -> tuple[tuple[Bridge, Guest, Family], ...]:
        """Each address a guest has, as its bridge, the guest and the family."""
        return tuple(
            (bridge, guest, family)
            for bridge in self.host.bridges
            for guest in bridge.guests
            for family in FAMILIES
            if guest.address_in(family) is not None
        )

    @cached_property
    def unlisted(self) -> frozenset[int]:
        """The forwards (by id) whose `address` is not one of the host's `addresses`."""
        found = set()
        for _, _, forward in self.forwards:
            if forward.address is not None:
                listed = self.host.addresses_in(family_of(forward.address))
                if listed and forward.address not in listed:
                    found.add(id(forward))
        return frozenset(found)


def _line(forward: Forward) -> int:
    return forward.location.line if forward.location else 0


# -- the rules, as tests/data/bad/ names their cases ----------------------------------


def forward_address_not_listed(view: HostView) -> Iterator[Problem]:
    """A forward's `address`, where the host lists `addresses`, is one of them."""
    host = view.host
    for _, _, forward in view.forwards:
        if id(forward) in view.unlisted:
            assert forward.address is not None
            listed = host.addresses_in(family_of(forward.address))
            yield view.at(
                (*view.forward_keys[id(forward)], "address"),
                f"address {forward.address} is not one of the host's "
                f"addresses ({', '.join(map(str, listed))}); name one of them",
            )


def forward_conflict(view: HostView) -> Iterator[Problem]:
    """No two forwards of a host claim the same (host address, protocol, port); each
    forward that collides with one before it is reported, naming both."""
    claims: dict[tuple[Family, Proto], list[Claim]] = defaultdict(list)
    for _, forward, found in view.reaches:
        if id(forward) in view.unlisted:
            continue
        for reach in found:
            for claim in reach.claims():
                claims[(reach.family, claim.proto)].append(claim)
    reported: set[tuple[int, int]] = set()
    for group in claims.values():
        for first, second in _overlaps(group):
            pair = (id(first.forward), id(second.forward))
            if pair not in reported:
                reported.add(pair)
                yield view.on(second.forward, _conflict_message(first, second))


def forward_no_family(view: HostView) -> Iterator[Problem]:
    """A forward exists in at least one family (model.md, "Where a forward listens")."""
    for guest, forward, found in view.reaches:
        if not found and id(forward) not in view.unlisted:
            yield view.on(
                forward,
                f"this forward exists in no address family: guest "
                f"'{guest.name}' has no address in the family of its "
                "`address`/`sources`; fix the guest's addresses or the forward",
            )


def guest_address_without_subnet(view: HostView) -> Iterator[Problem]:
    """A guest's `address` needs its bridge's `subnet`, `address6` its `subnet6`."""
    for bridge, guest, family in view.guest_addresses:
        key, subnet_key = _KEYS[family]
        if bridge.subnet_in(family) is None and not view.written(
            (*view.bridge_path(bridge), subnet_key)
        ):
            yield view.at(
                (*view.guest_path(bridge, guest), key),
                f"the bridge has no {subnet_key}; add `{subnet_key}` "
                f"to the bridge or remove `{key}`",
            )


def guest_broadcast_address(view: HostView) -> Iterator[Problem]:
    """A guest's IPv4 address is not its subnet's broadcast address."""
    for bridge, guest, family in view.guest_addresses:
        address, subnet = guest.address_in(family), bridge.subnet_in(family)
        if (
            family == "ip"
            and subnet is not None
            and subnet.prefixlen < 31
            and address == subnet.broadcast_address
        ):
            yield _network_or_broadcast(view, bridge, guest, family)


def guest_network_address(view: HostView) -> Iterator[Problem]:
    """A guest's address is not its subnet's network address."""
    for bridge, guest, family in view.guest_addresses:
        subnet = bridge.subnet_in(family)
        if subnet is not None and guest.address_in(family) == subnet.network_address:
            yield _network_or_broadcast(view, bridge, guest, family)


def guest_outside_subnet(view: HostView) -> Iterator[Problem]:
    """A guest's `address` lies inside its bridge's `subnet`, `address6` in `subnet6`."""
    for bridge, guest, family in view.guest_addresses:
        address, subnet = guest.address_in(family), bridge.subnet_in(family)
        key, subnet_key = _KEYS[family]
        if subnet is not None and address not in subnet:
            yield view.at(
                (*view.guest_path(bridge, guest), key),
                f"{address} is outside the bridge's {subnet_key} {subnet}; "
                "use an address inside it",
            )


def guests_share_address(view: HostView) -> Iterator[Problem]:
    """No two guests of a host share an address, across its bridges."""
    owner: dict[IPAddress, str] = {}
    for bridge, guest, family in view.guest_addresses:
        address = guest.address_in(family)
        assert address is not None
        if address in owner:
            yield view.at(
                (*view.guest_path(bridge, guest), _KEYS[family][0]),
                f"{address} is already the address of guest '{owner[address]}'; "
                "give each guest its own address",
            )
        owner[address] = guest.name


def range_length(view: HostView) -> Iterator[Problem]:
    """A forward's `to` is one port or a range as long as its `port`."""
    for _, _, forward in view.forwards:
        port, to = forward.port, forward.to
        if to.size not in (1, port.size):
            yield view.at(
                (*view.forward_keys[id(forward)], "to"),
                f"'to' covers {to.size} ports but 'port' covers {port.size}; give one port "
                f"(every port of the range goes to it) or a range of {port.size} ports",
            )


def snat_disagrees(view: HostView) -> Iterator[Problem]:
    """Forwards that reach the same guest port set snat alike: snat is decided on the
    guest's side of the DNAT. Each forward that disagrees with one before it at a guest
    port is reported, naming the first such one; each pair once."""
    # Per guest address, protocol and port: the first forward there with snat off, on.
    first: dict[tuple[IPAddress, Proto, int], list[Forward | None]] = {}
    reported: set[tuple[int, int]] = set()
    for _, forward, found in view.reaches:
        to = forward.to
        ends = (to.first,) if to.first == to.last else (to.first, to.last)
        for reach in found:
            for proto in forward.protos:
                for port in ends:
                    at = first.setdefault((reach.target, proto, port), [None, None])
                    other = at[not forward.snat]
                    if other is not None and (id(other), id(forward)) not in reported:
                        reported.add((id(other), id(forward)))
                        yield view.on(
                            forward,
                            f"reaches {reach.target} {proto}/{port} like "
                            f"{other.path} (line {_line(other)}), but only one of "
                            "them sets snat; set snat the same on both",
                        )
                    if at[forward.snat] is None:
                        at[forward.snat] = forward


def subnets_overlap(view: HostView) -> Iterator[Problem]:
    """The bridges of a host have subnets of their own: no two overlap."""
    seen: list[tuple[IPNetwork, str]] = []
    for bridge in view.host.bridges:
        for family in FAMILIES:
            subnet = bridge.subnet_in(family)
            if subnet is None:
                continue
            for other, other_bridge in seen:
                if subnet.version == other.version and subnet.overlaps(other):
                    yield view.at(
                        (*view.bridge_path(bridge), _KEYS[family][1]),
                        f"{subnet} overlaps {other} of bridge '{other_bridge}'; "
                        "give each bridge its own subnet",
                    )
            seen.append((subnet, bridge.name))


def uplink_is_bridge(view: HostView) -> Iterator[Problem]:
    """An interface is either an uplink or faces guests, not both."""
    for bridge in view.host.bridges:
        if bridge.name in view.host.uplinks:
            yield view.at(
                view.bridge_path(bridge),
                f"'{bridge.name}' is also an uplink; "
                "an interface is either an uplink or faces guests, not both",
            )


@dataclass(frozen=True)
class Rule:
    check: Callable[[HostView], Iterator[Problem]]
    # Compares entities with each other: runs only on a host whose values and
    # single-entity rules all passed.
    across: bool

    @property
    def name(self) -> str:
        return self.check.__name__


# In the order of their cases in tests/data/bad/.
RULES: tuple[Rule, ...] = (
    Rule(forward_address_not_listed, across=True),
    Rule(forward_conflict, across=True),
    Rule(forward_no_family, across=True),
    Rule(guest_address_without_subnet, across=False),
    Rule(guest_broadcast_address, across=False),
    Rule(guest_network_address, across=False),
    Rule(guest_outside_subnet, across=False),
    Rule(guests_share_address, across=True),
    Rule(range_length, across=False),
    Rule(snat_disagrees, across=True),
    Rule(subnets_overlap, across=True),
    Rule(uplink_is_bridge, across=False),
)


# -- the messages, and the sweep behind forward_conflict ---------------------------------


def _network_or_broadcast(view: HostView, bridge: Bridge, guest: Guest, family: Family) -> Problem:
    return view.at(
        (*view.guest_path(bridge, guest), _KEYS[family][0]),
        f"{guest.address_in(family)} is the network or broadcast address of "
        f"{bridge.subnet_in(family)}; use a host address inside it",
    )


def _overlaps(claims: list[Claim]) -> Iterator[tuple[Claim, Claim]]:
    """Pairs of claims on overlapping ports whose addresses collide, in one sweep."""
    active: list[tuple[int, int, Claim]] = []  # heap of (last port, order, claim)
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


def _collide(earlier: Claim, claim: Claim) -> bool:
    """Whether two claims on overlapping ports would take the same packets."""
    if earlier.forward is claim.forward:
        return False
    return earlier.address is None or claim.address is None or earlier.address == claim.address


def _conflict_message(first: Claim, second: Claim) -> str:
    def where(claim: Claim) -> str:
        if claim.address is None:
            return f"any {FAMILY_NAMES[claim.family]} host address"
        return str(claim.address)

    return (
        f"{second.proto} port {second.ports} on {where(second)} is also claimed by "
        f"{first.forward.path} (line {_line(first.forward)}, port {first.ports} on "
        f"{where(first)}); give one of them another port or host address"
    )
