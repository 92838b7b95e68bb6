"""Every shared scenario, every host in it, loaded with `nftfwd load` and probed.

Two layers of checks per (scenario, host):

- what the scenario's comment states, written out by hand below (``COMMENTS``): a
  scenario or host without such an entry fails, so a new scenario needs its
  expectations written down;
- what the model implies for every forward, derived from the model: each forward
  reaches its guest at ``to`` (first, middle and last port of a range, each protocol,
  each family where it exists, from every uplink's client), ``sources`` keep other
  clients out, guests are not routable from outside, and guests of a masquerading
  bridge reach the outside through each uplink as that uplink's address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import SCENARIOS
from harness import Topology
from harness.topology import Family
from wire import (
    BLOCKED,
    DROPPED,
    Probe,
    expect_failures,
    expect_reached,
    load,
    read_model,
    tcp,
    udp,
)

OUTSIDE_PORT = 7100  # a server in each client that guests reach through masquerade
QUIET_PORT = 22  # what a guest without forwards serves, to prove it stays unreachable
FAMILIES: tuple[Family, ...] = (4, 6)
Want = tuple[str, str, int]  # the server's name, the peer it saw, its port


@dataclass
class Checks:
    reached: list[tuple[Probe, Want]] = field(default_factory=list)
    failing: list[tuple[Probe, tuple[str, ...]]] = field(default_factory=list)

    def reach(self, probe: Probe, want: Want) -> None:
        self.reached.append((probe, want))

    def block(self, probe: Probe, errors: tuple[str, ...] = BLOCKED) -> None:
        self.failing.append((probe, errors))


@dataclass(frozen=True)
class Comment:
    """The behaviour a scenario's comment states, for one host."""

    check: Callable[[Topology, Checks], None]
    router: bool = False
    extra_client_addresses: dict[int, list[str]] = field(default_factory=dict)


# ----------------------------------------------------------------------- the comments


def seed000(topo: Topology, checks: Checks) -> None:
    # Port 3000 on the host reaches port 3000 on the guest 192.168.122.106; guests
    # reach the outside masqueraded as the host; other guests stay unreachable.
    host4, client4 = topo.host_address(4), topo.client_address(4)
    checks.reach(tcp("client0", host4, 3000), ("app", client4, 3000))
    for guest in ("app", "quiet"):
        checks.reach(tcp(f"guest:{guest}", client4, OUTSIDE_PORT), ("client0", host4, 7100))
    for port in (3000, QUIET_PORT):
        checks.block(tcp("client0", "192.168.122.131", port), DROPPED)
    checks.block(udp("client0", host4, 3000))


def seed001(topo: Topology, checks: Checks) -> None:
    # host port HP reaches guest port GP: two guests, two mappings each, one TCP and UDP.
    host4, client4 = topo.host_address(4), topo.client_address(4)
    for probe, guest, port in [
        (tcp("client0", host4, 2201), "vm1", 22),
        (tcp("client0", host4, 8001), "vm1", 80),
        (tcp("client0", host4, 2202), "vm2", 22),
        (tcp("client0", host4, 5301), "vm2", 53),
        (udp("client0", host4, 5301), "vm2", 53),
    ]:
        checks.reach(probe, (guest, client4, port))
    for probe in (udp("client0", host4, 2201), udp("client0", host4, 8001)):
        checks.block(probe)


def seed002(topo: Topology, checks: Checks) -> None:
    # Outside address 10.187.40.123 on enp0s25; the inside server 10.188.50.202 does not
    # route back through the gateway: source-NATed to the gateway's inside address.
    uplink = topo.run("host", ["ip", "-4", "-o", "addr", "show", "dev", "enp0s25"]).stdout
    assert " 10.187.40.123/" in uplink
    assert topo.gateway("enp3s0", 4) == "10.188.50.1"
    checks.reach(tcp("client0", "10.187.40.123", 8080), ("flask", "10.188.50.1", 8080))
    checks.reach(tcp("host", "10.187.40.123", 8080), ("flask", "10.188.50.1", 8080))
    checks.block(tcp("client0", "10.188.50.202", 8080), DROPPED)


def seed003(topo: Topology, checks: Checks) -> None:
    # 2080 -> 80 and 20443 -> 443, only for connections to the public address.
    client4 = topo.client_address(4)
    topo.run("host", ["ip", "addr", "add", "213.73.97.134/24", "dev", "enp2s0"])
    checks.reach(tcp("client0", "213.73.97.133", 2080), ("webserver", client4, 80))
    checks.reach(tcp("client0", "213.73.97.133", 20443), ("webserver", client4, 443))
    for port in (2080, 20443):
        checks.block(tcp("client0", "213.73.97.134", port))


def seed004(topo: Topology, checks: Checks) -> None:
    # host port 2222 reaches 192.168.122.133:22.
    host4, client4 = topo.host_address(4), topo.client_address(4)
    checks.reach(tcp("client0", host4, 2222), ("centos", client4, 22))
    checks.block(tcp("client0", "192.168.122.133", 22), DROPPED)


EDGE1_SOURCE = "198.51.100.20"


def edge1(topo: Topology, checks: Checks) -> None:
    # A source restriction: 15432 -> db:5432 only from 198.51.100.0/24.
    host4 = topo.host_address(4)
    checks.reach(tcp("client0", host4, 15432, source=EDGE1_SOURCE), ("db", EDGE1_SOURCE, 5432))
    checks.block(tcp("client0", host4, 15432))


def edge2(topo: Topology, checks: Checks) -> None:
    # Dual-stack, two uplinks, 27015-27020 TCP and UDP, 8443 -> 443, on 203.0.113.7
    # and 2001:db8::7 only.
    for uplink in (0, 1):
        src = f"client{uplink}"
        for family, address in zip(FAMILIES, ("203.0.113.7", "2001:db8::7"), strict=True):
            client = topo.client_address(family, uplink)
            checks.reach(tcp(src, address, 8443), ("games", client, 443))
            for port in (27015, 27017, 27020):
                for make in (tcp, udp):
                    checks.reach(make(src, address, port), ("games", client, port))
            checks.block(tcp(src, address, 27021))
            checks.block(udp(src, address, 8443))
    # eth1's own addresses are not listed: not forwarded.
    checks.block(tcp("client1", "198.18.1.1", 8443))
    checks.block(tcp("client1", "2001:db8:2::1", 8443))


COMMENTS: dict[tuple[str, str], Comment] = {
    ("seed000-libvirt-port3000.yaml", "kvm-host"): Comment(seed000),
    ("seed001-libvirt-hook.yaml", "hypervisor"): Comment(seed001),
    ("seed002-gateway-snat.yaml", "gateway"): Comment(seed002, router=True),
    ("seed003-public-ip.yaml", "hypervisor"): Comment(seed003),
    ("seed004-ssh-2222.yaml", "localhost"): Comment(seed004),
    ("fleet-dualstack.yaml", "edge1"): Comment(edge1, extra_client_addresses={0: [EDGE1_SOURCE]}),
    ("fleet-dualstack.yaml", "edge2"): Comment(edge2),
}


# ----------------------------------------------------------------------- from the model


@dataclass(frozen=True)
class Forward:
    guest: str
    bridge: str
    ports: list[int]
    to: list[int]
    protos: list[str]
    sources: list[str] | None
    address: str | None
    snat: bool


def _ports(value: Any) -> list[int]:
    first, _, last = str(value).partition("-")
    return list(range(int(first), int(last or first) + 1))


def forwards_of(spec: dict[str, Any]) -> Iterator[Forward]:
    for bridge_name, bridge in (spec.get("bridges") or {}).items():
        for guest_name, guest in (bridge.get("guests") or {}).items():
            for forward in guest.get("forwards") or []:
                proto = forward.get("proto", "tcp")
                ports = _ports(forward["port"])
                yield Forward(
                    guest=guest_name,
                    bridge=bridge_name,
                    ports=ports,
                    to=_ports(forward["to"]) if "to" in forward else ports,
                    protos=[proto] if isinstance(proto, str) else list(proto),
                    sources=forward.get("sources"),
                    address=forward.get("address"),
                    snat=bool(forward.get("snat")),
                )


def _family(address: str) -> Family:
    return 4 if ipaddress.ip_network(address, strict=False).version == 4 else 6


def _guest_families(topo: Topology, guest: str) -> list[Family]:
    plan = next(p for p in topo.plan.guests if p.name == guest)
    return [family for family in FAMILIES if any(a.version == family for a in plan.addresses)]


def allowed_source(sources: list[str], family: Family) -> str | None:
    """A client address inside the first ``family`` prefix of ``sources``."""
    for prefix in sources:
        network = ipaddress.ip_network(prefix)
        if network.version == family:
            return str(network[min(20, network.num_addresses - 1)])
    return None


def extra_sources(spec: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for forward in forwards_of(spec):
        for family in FAMILIES:
            source = allowed_source(forward.sources or [], family)
            if source and source not in found:
                found.append(source)
    return found


def forward_checks(topo: Topology, spec: dict[str, Any], checks: Checks) -> None:
    """Each forward reaches its guest where it exists, and `sources` keeps others out."""
    for forward in forwards_of(spec):
        samples = sorted({0, len(forward.ports) // 2, len(forward.ports) - 1})
        for family in _guest_families(topo, forward.guest):
            if forward.address is not None:
                listening = [forward.address] if _family(forward.address) == family else []
            else:
                listening = topo.host_addresses(family)
            if forward.sources is None:
                # every uplink's client, from its own address
                clients = [(k, topo.client_address(family, k)) for k in range(len(spec["uplinks"]))]
                source = None
            else:
                source = allowed_source(forward.sources, family)
                clients = [(0, source)] if source else []  # extra addresses are on uplink 0
            for address in listening:
                for uplink, client in clients:
                    peer = topo.gateway(forward.bridge, family) if forward.snat else client
                    for index in samples:
                        port, to = forward.ports[index], forward.to[index]
                        for proto in forward.protos:
                            probe = Probe(f"client{uplink}", proto, address, port, source)
                            checks.reach(probe, (forward.guest, peer, to))
                own = ipaddress.ip_address(topo.client_address(family))
                if forward.sources is not None and not any(
                    own in ipaddress.ip_network(prefix) for prefix in forward.sources
                ):
                    # a client outside `sources` (where `sources` names no prefix of this
                    # family, the family is closed to every client)
                    checks.block(Probe("client0", forward.protos[0], address, forward.ports[0]))


def guest_checks(topo: Topology, spec: dict[str, Any], checks: Checks) -> None:
    """No guest is routable from outside; guests of a masquerading bridge reach the
    outside through every uplink as that uplink's address (a guest routed via the
    dead-end router reaches nothing)."""
    served = {name: port for _, (name, _, port) in checks.reached}
    for bridge in (spec.get("bridges") or {}).values():
        for name, guest in (bridge.get("guests") or {}).items():
            via_router = topo.plan.router and any(
                forward.get("snat") for forward in guest.get("forwards") or []
            )
            for family in _guest_families(topo, name):
                address = topo.guest_address(name, family)
                checks.block(tcp("client0", address, served.get(name, QUIET_PORT)), DROPPED)
                if not bridge.get("masquerade", True) or via_router:
                    continue
                for uplink in range(len(spec["uplinks"])):  # each uplink as its own address
                    outside = topo.client_address(family, uplink)
                    host = topo.host_address(family, uplink)
                    checks.reach(
                        tcp(f"guest:{name}", outside, OUTSIDE_PORT),
                        (f"client{uplink}", host, OUTSIDE_PORT),
                    )


# ----------------------------------------------------------------------- the test


def scenario_cases() -> list[tuple[Path, str]]:
    cases = []
    for path in sorted(SCENARIOS.glob("*.yaml")):
        cases += [(path, host) for host in read_model(path)["hosts"]]
    return cases


CASES = scenario_cases()


def test_every_scenario_host_has_its_comment_written_down() -> None:
    assert CASES, f"no scenarios in {SCENARIOS}"
    assert {(path.name, host) for path, host in CASES} == set(COMMENTS)


@pytest.mark.kernel
@pytest.mark.parametrize("case", CASES, ids=[f"{p.stem}-{h}" for p, h in CASES])
def test_scenario_forwards_as_its_comment_states(case: tuple[Path, str]) -> None:
    path, host = case
    comment = COMMENTS.get((path.name, host))
    if comment is None:
        pytest.fail(f"write down what {path.name} promises for host {host} in COMMENTS")
    model = read_model(path)
    spec = model["hosts"][host]
    extra = {k: list(v) for k, v in comment.extra_client_addresses.items()}
    extra[0] = sorted({*extra.get(0, []), *extra_sources(spec)})
    with Topology(model, host, router=comment.router, extra_client_addresses=extra) as topo:
        checks = Checks()
        comment.check(topo, checks)
        forward_checks(topo, spec, checks)
        guest_checks(topo, spec, checks)
        # A server wherever a probe expects an answer, and wherever a wrong rule would
        # deliver a probe that must fail (so that it would be answered).
        guests = {plan.name for plan in topo.plan.guests}
        needed = {(name, port) for _, (name, _, port) in checks.reached if name in guests}
        by_address = {str(a.ip): plan.name for plan in topo.plan.guests for a in plan.addresses}
        needed |= {
            (by_address[probe.dst], probe.port)
            for probe, _ in checks.failing
            if probe.dst in by_address
        }
        for guest in {g for g, _ in needed}:
            topo.serve(guest, sorted(port for g, port in needed if g == guest))
        for uplink in range(len(spec["uplinks"])):
            topo.serve_in(f"client{uplink}", f"client{uplink}", [OUTSIDE_PORT])
        load(topo, path, host)
        expect_reached(topo, checks.reached)
        expect_failures(topo, checks.failing)
