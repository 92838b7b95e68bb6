"""The behaviours of model.md ("What the loaded rules must do"), proven on the wire.

Each test builds the standard topology (tests/harness) for a purpose-made model of
tests/data/e2e, loads the rules with `nftfwd load` inside the host namespace, and
asserts what the answering server saw: its name, the peer address and its port.
Probes that must fail are answered by nobody although a server listens where a wrong
rule would send them, so a missing or too broad rule makes the test fail.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator

import pytest
from harness import Topology
from wire import (
    DROPPED,
    NFTFWD,
    expect_blocked,
    expect_reached,
    load,
    model_path,
    nftfwd,
    read_model,
    ruleset,
    state_dir,
    tcp,
    udp,
)

HOST = "e2e"
BASIC = model_path("basic")
WEB, APP, QUIET = "192.168.50.10", "192.168.50.20", "192.168.50.30"


def basic_topology(bridge_nf_call: bool | None = None) -> Topology:
    return Topology(read_model(BASIC), HOST, bridge_nf_call=bridge_nf_call)


# ----------------------------------------------------------------------- behaviour 1


@pytest.mark.kernel
def test_tcp_and_udp_forwards_reach_the_guest_with_the_client_address() -> None:
    with basic_topology() as topo:
        load(topo, BASIC, HOST)
        topo.serve("web", [80, 53, 7000])
        topo.serve("app", [22])
        host4, client4 = topo.host_address(4), topo.client_address(4)
        expect_reached(
            topo,
            [
                (tcp("client0", host4, 8080), ("web", client4, 80)),
                (udp("client0", host4, 5353), ("web", client4, 53)),
                (tcp("client0", host4, 7000), ("web", client4, 7000)),
                (udp("client0", host4, 7000), ("web", client4, 7000)),
                (tcp("client0", host4, 2222), ("app", client4, 22)),
            ],
        )
        # Replies keep flowing on an established connection.
        with topo.open_session("client0", host4, 8080) as session:
            texts = [session.exchange("one").text, session.exchange("two").text]
        assert texts == [f"web {client4} 80 one", f"web {client4} 80 two"]


# ----------------------------------------------------------------------- behaviour 2


@pytest.mark.kernel
def test_only_forwarded_ports_are_dnated_and_guests_are_not_routable() -> None:
    with basic_topology() as topo:
        # Servers wherever a too broad DNAT or a missing drop would deliver a probe.
        topo.serve("web", [80, 53, 8081, 5354])
        topo.serve("app", [22, 2222])
        topo.serve("quiet", [80, 22])
        host4, client4 = topo.host_address(4), topo.client_address(4)
        topo.run("client0", ["ip", "route", "add", "192.168.50.0/24", "via", host4])
        direct = [
            (tcp("client0", WEB, 80), ("web", client4, 80)),  # a forwarded guest port
            (udp("client0", WEB, 53), ("web", client4, 53)),  # a forwarded guest port
            (tcp("client0", APP, 22), ("app", client4, 22)),  # a forwarded guest port
            (tcp("client0", WEB, 8081), ("web", client4, 8081)),  # not forwarded
            (tcp("client0", QUIET, 80), ("quiet", client4, 80)),  # a guest without forwards
            (udp("client0", QUIET, 22), ("quiet", client4, 22)),
        ]
        # Without rules the host routes the client straight to the guests ...
        expect_reached(topo, direct)
        load(topo, BASIC, HOST)
        # ... with them, every new connection routed into the bridge subnet is dropped.
        expect_blocked(topo, [probe for probe, _ in direct], DROPPED)
        gateway = topo.gateway("br0", 4)
        expect_blocked(
            topo,
            [
                tcp("client0", host4, 8081),  # no forward on this port
                udp("client0", host4, 5354),
                tcp("client0", host4, 80),  # a guest port is not a host port
                tcp("client0", host4, 5353),  # the forward of 5353 is UDP only
                udp("client0", host4, 8080),  # the forward of 8080 is TCP only
                udp("client0", host4, 2222),
                tcp("client0", gateway, 8080),  # the bridge's address is no host address
            ],
        )
        expect_reached(topo, [(tcp("client0", host4, 8080), ("web", client4, 80))])


# ----------------------------------------------------------------------- behaviour 3


@pytest.mark.kernel
def test_guests_reach_the_outside_masqueraded_unless_masquerade_is_false() -> None:
    with basic_topology() as topo:
        topo.serve_in("client0", "outside", [7100])
        host4, client4 = topo.host_address(4), topo.client_address(4)
        load(topo, BASIC, HOST)
        expect_reached(
            topo,
            [
                (tcp("guest:web", client4, 7100), ("outside", host4, 7100)),
                (udp("guest:web", client4, 7100), ("outside", host4, 7100)),
                (tcp("guest:quiet", client4, 7100), ("outside", host4, 7100)),
            ],
        )
        load(topo, model_path("no-masquerade"), HOST)
        topo.serve("web", [80])
        expect_reached(
            topo,
            [
                (tcp("guest:web", client4, 7100), ("outside", WEB, 7100)),
                (udp("guest:web", client4, 7100), ("outside", WEB, 7100)),
                (tcp("guest:quiet", client4, 7100), ("outside", QUIET, 7100)),
                # a hairpin from the target's own subnet is masqueraded all the same
                (tcp("guest:app", host4, 8080), ("web", topo.gateway("br0", 4), 80)),
            ],
        )


# ----------------------------------------------------------------------- behaviour 3/2


@pytest.mark.kernel
def test_bridges_are_open_inside_and_closed_to_each_other_but_for_forwards() -> None:
    path = model_path("two-bridges")
    a1, a2, b1 = "192.168.50.10", "192.168.50.20", "192.168.60.10"
    with Topology(read_model(path), HOST, bridge_nf_call=True) as topo:
        # br_netfilter hands bridged frames to the inet forward hook in this namespace.
        sysctl = ["sysctl", "-n", "net.bridge.bridge-nf-call-iptables"]
        assert topo.run("host", sysctl).stdout.strip() == "1"
        topo.serve("a1", [80])
        topo.serve("a2", [80])
        topo.serve("b1", [90])
        host4 = topo.host_address(4)
        across = [
            (tcp("guest:a1", b1, 90), ("b1", a1, 90)),
            (udp("guest:a1", b1, 90), ("b1", a1, 90)),
            (tcp("guest:b1", a1, 80), ("a1", b1, 80)),
        ]
        expect_reached(topo, across)  # without rules the host routes between bridges
        load(topo, path, HOST)
        # The same bridge: bridged, through the forward hook, never blocked.
        expect_reached(
            topo,
            [
                (tcp("guest:a1", a2, 80), ("a2", a1, 80)),
                (udp("guest:a1", a2, 80), ("a2", a1, 80)),
                (tcp("guest:a2", a1, 80), ("a1", a2, 80)),
            ],
        )
        # Another bridge, straight to the guest: dropped.
        expect_blocked(topo, [probe for probe, _ in across], DROPPED)
        # Another bridge through a forward: hairpin from another bridge, as an outside
        # client would (the target's reply already goes through the host).
        expect_reached(
            topo,
            [
                (tcp("guest:a1", host4, 9090), ("b1", a1, 90)),
                (udp("guest:a2", host4, 9090), ("b1", a2, 90)),
                (tcp("guest:b1", host4, 8080), ("a1", b1, 80)),
            ],
        )


# ----------------------------------------------------------------------- behaviour 4


@pytest.mark.kernel
def test_hairpin_from_guests_and_the_host_and_hairpin_false() -> None:
    with basic_topology() as topo:
        load(topo, BASIC, HOST)
        topo.serve("web", [80, 53])
        topo.serve("app", [22])
        host4, client4 = topo.host_address(4), topo.client_address(4)
        gateway = topo.gateway("br0", 4)
        # From the target's own bridge: masqueraded to the host's bridge address.
        expect_reached(
            topo,
            [
                (tcp("guest:app", host4, 8080), ("web", gateway, 80)),
                (udp("guest:app", host4, 5353), ("web", gateway, 53)),
                (tcp("guest:quiet", host4, 8080), ("web", gateway, 80)),
                (tcp("guest:web", host4, 2222), ("app", gateway, 22)),
            ],
        )
        # The host itself, to its own uplink address.
        for probe in (tcp("host", host4, 8080), udp("host", host4, 5353)):
            reply = topo.request(probe.src, probe.proto, probe.dst, probe.port, timeout=3)
            assert (reply.guest, reply.port) == ("web", 80 if probe.proto == "tcp" else 53), (
                f"{probe}: {reply}"
            )
            assert reply.peer in (host4, gateway), f"{probe}: {reply}"
        # Loopback and the bridge's own address are no host addresses.
        expect_blocked(
            topo,
            [
                tcp("host", "127.0.0.1", 8080),
                tcp("guest:app", gateway, 8080),
                tcp("host", gateway, 8080),
            ],
        )

        load(topo, model_path("hairpin-off"), HOST)
        expect_blocked(
            topo,
            [
                tcp("guest:app", host4, 8080),
                udp("guest:app", host4, 5353),
                tcp("guest:web", host4, 2222),
                tcp("host", host4, 8080),
                udp("host", host4, 5353),
            ],
        )
        expect_reached(
            topo,
            [
                (tcp("client0", host4, 8080), ("web", client4, 80)),
                (udp("client0", host4, 5353), ("web", client4, 53)),
            ],
        )


@pytest.mark.kernel
def test_hairpin_and_bridges_without_br_netfilter() -> None:
    # bridge-nf-call-iptables=0: bridged frames skip the IP hooks, so a hairpin reply
    # that went straight from guest to guest would never be un-NATed: only the hairpin
    # masquerade brings it back through the host.
    with basic_topology(bridge_nf_call=False) as topo:
        sysctl = ["sysctl", "-n", "net.bridge.bridge-nf-call-iptables"]
        assert topo.run("host", sysctl).stdout.strip() == "0"
        load(topo, BASIC, HOST)
        topo.serve("web", [80, 53])
        topo.serve("app", [22])
        host4, client4 = topo.host_address(4), topo.client_address(4)
        gateway = topo.gateway("br0", 4)
        expect_reached(
            topo,
            [
                (tcp("guest:app", host4, 8080), ("web", gateway, 80)),
                (udp("guest:app", host4, 5353), ("web", gateway, 53)),
                (tcp("guest:web", APP, 22), ("app", WEB, 22)),
                (tcp("client0", host4, 8080), ("web", client4, 80)),
            ],
        )
        expect_blocked(topo, [tcp("client0", WEB, 80), tcp("client0", APP, 22)], DROPPED)


# ----------------------------------------------------------------------- behaviour 1/4


@pytest.mark.kernel
def test_sources_restrict_outside_clients_and_hairpin() -> None:
    path = model_path("sources")
    allowed, other = "198.51.100.10", "192.0.2.77"
    with Topology(read_model(path), HOST, extra_client_addresses={0: [allowed, other]}) as topo:
        load(topo, path, HOST)
        topo.serve("web", [22, 23])
        host4, client4 = topo.host_address(4), topo.client_address(4)
        gateway = topo.gateway("br0", 4)
        expect_reached(
            topo,
            [
                (tcp("client0", host4, 2222, source=allowed), ("web", allowed, 22)),
                (tcp("client0", host4, 2223, source=allowed), ("web", allowed, 23)),
                (udp("client0", host4, 2223, source=allowed), ("web", allowed, 23)),
                # 2223 also lists the bridge subnet: the hairpin is allowed.
                (tcp("guest:peer", host4, 2223), ("web", gateway, 23)),
                (udp("guest:peer", host4, 2223), ("web", gateway, 23)),
            ],
        )
        expect_blocked(
            topo,
            [
                tcp("client0", host4, 2222, source=other),
                tcp("client0", host4, 2222),  # the client's own address, 203.0.113.100
                tcp("client0", host4, 2223, source=other),
                udp("client0", host4, 2223, source=other),
                tcp("guest:peer", host4, 2222),  # hairpin from a source not listed
                tcp("host", host4, 2222),  # the host's own source is not listed either
            ],
        )
        assert client4 not in (allowed, other)


# ----------------------------------------------------------------------- behaviour 1


def add_host_address(topo: Topology, address: str) -> str:
    """Another address of the host on its uplink (the harness gives it only its own)."""
    topo.run("host", ["ip", "addr", "add", f"{address}/24", "dev", "wan0"])
    return address


@pytest.mark.kernel
def test_forward_address_matches_only_that_address() -> None:
    path = model_path("forward-address")
    with Topology(read_model(path), HOST) as topo:
        load(topo, path, HOST)
        topo.serve("web", [80, 81])
        host4, client4 = topo.host_address(4), topo.client_address(4)
        other = add_host_address(topo, "203.0.113.5")
        expect_reached(
            topo,
            [
                (tcp("client0", host4, 8080), ("web", client4, 80)),
                # the other address is a host address: forwards without `address` work
                (tcp("client0", other, 8081), ("web", client4, 81)),
                (tcp("client0", host4, 8081), ("web", client4, 81)),
            ],
        )
        reply = topo.request("host", "tcp", host4, 8080, timeout=3)
        assert (reply.guest, reply.port) == ("web", 80), reply
        expect_blocked(topo, [tcp("client0", other, 8080), tcp("host", other, 8080)])


@pytest.mark.kernel
def test_listed_host_addresses_are_the_only_ones_forwarded() -> None:
    path = model_path("host-addresses")
    with Topology(read_model(path), HOST) as topo:
        assert topo.host_addresses(4) == ["203.0.113.1", "203.0.113.2"]
        load(topo, path, HOST)
        topo.serve("web", [80, 81])
        client4 = topo.client_address(4)
        unlisted = add_host_address(topo, "203.0.113.5")
        expect_reached(
            topo,
            [
                (tcp("client0", "203.0.113.1", 8080), ("web", client4, 80)),
                (tcp("client0", "203.0.113.2", 8080), ("web", client4, 80)),
                (tcp("client0", "203.0.113.2", 8081), ("web", client4, 81)),
            ],
        )
        expect_blocked(
            topo,
            [
                tcp("client0", unlisted, 8080),
                tcp("client0", unlisted, 8081),
                tcp("client0", "203.0.113.1", 8081),  # 8081 is only on .2
            ],
        )


# ----------------------------------------------------------------------- ranges


@pytest.mark.kernel
def test_port_range_keeps_the_offset() -> None:
    path = model_path("range")
    with Topology(read_model(path), HOST) as topo:
        load(topo, path, HOST)
        topo.serve("games", [*range(9000, 9012), 8011])
        host4, client4 = topo.host_address(4), topo.client_address(4)
        expect_reached(
            topo,
            [
                (make("client0", host4, port), ("games", client4, port + 1000))
                for make in (tcp, udp)
                for port in (8000, 8005, 8010)
            ],
        )
        expect_blocked(topo, [tcp("client0", host4, 8011), udp("client0", host4, 8011)])


@pytest.mark.kernel
def test_a_range_onto_one_port_sends_every_port_there() -> None:
    """`{port: "7100-7102", to: 9100}`: every port of the range reaches 9100, TCP and UDP
    (the guest also listens on 9101 and 9102, where a kept offset would land)."""
    path = model_path("range")
    with Topology(read_model(path), HOST) as topo:
        load(topo, path, HOST)
        topo.serve("games", [9100, 9101, 9102, 7103])
        host4, client4 = topo.host_address(4), topo.client_address(4)
        expect_reached(
            topo,
            [
                (make("client0", host4, port), ("games", client4, 9100))
                for make in (tcp, udp)
                for port in (7100, 7101, 7102)
            ],
        )
        expect_blocked(topo, [tcp("client0", host4, 7103), udp("client0", host4, 7103)])


# ----------------------------------------------------------------------- behaviour 5


@pytest.mark.kernel
def test_snat_brings_replies_back_when_the_guest_routes_elsewhere() -> None:
    path = model_path("snat")
    with Topology(read_model(path), HOST, router=True) as topo:
        router = topo.router_address("lan0", 4)
        assert f"via {router} " in topo.run("guest:db", ["ip", "route", "show", "default"]).stdout
        topo.serve("db", [5432])
        host4, gateway = topo.host_address(4), topo.gateway("lan0", 4)
        probes = [
            tcp("client0", host4, 5432),
            udp("client0", host4, 5433),
            tcp("host", host4, 5432),
            udp("host", host4, 5433),
        ]
        load(topo, model_path("snat-off"), HOST)
        # Without snat the guest answers through the router, a dead end.
        expect_blocked(topo, probes, DROPPED)
        load(topo, path, HOST)
        expect_reached(topo, [(probe, ("db", gateway, 5432)) for probe in probes])


# ----------------------------------------------------------------------- IPv6


@pytest.mark.kernel
def test_ipv6_forwards_sources_and_closed_family() -> None:
    path = model_path("ipv6")
    allowed6, allowed4 = "2001:db8:100::10", "198.51.100.10"
    extra = {0: [allowed6, allowed4]}
    with Topology(read_model(path), HOST, extra_client_addresses=extra) as topo:
        topo.serve("web", [80, 22, 23])
        topo.serve_in("client0", "outside", [7100])
        host6, client6 = topo.host_address(6), topo.client_address(6)
        host4 = topo.host_address(4)
        gateway6 = topo.gateway("br0", 6)
        web6, peer6 = topo.guest_address("web", 6), topo.guest_address("peer", 6)
        direct = tcp("client0", web6, 80)
        expect_reached(topo, [(direct, ("web", client6, 80))])  # routed without rules
        load(topo, path, HOST)
        expect_reached(
            topo,
            [
                (tcp("client0", host6, 8080), ("web", client6, 80)),
                (udp("client0", host6, 8080), ("web", client6, 80)),
                (tcp("client0", host6, 2222, source=allowed6), ("web", allowed6, 22)),
                (tcp("client0", host4, 2223, source=allowed4), ("web", allowed4, 23)),
                # hairpin and masquerade in IPv6 too
                (tcp("guest:peer", host6, 8080), ("web", gateway6, 80)),
                (tcp("guest:web", client6, 7100), ("outside", host6, 7100)),
                (udp("guest:peer", client6, 7100), ("outside", host6, 7100)),
            ],
        )
        reply = topo.request("host", "tcp", host6, 8080, timeout=3)
        assert (reply.guest, reply.port) == ("web", 80), reply
        expect_blocked(
            topo,
            [
                tcp("client0", host6, 2222),  # v6 source not listed
                # 2223 lists only an IPv4 prefix: IPv6 is closed, for every source
                tcp("client0", host6, 2223),
                tcp("client0", host6, 2223, source=allowed6),
                tcp("client0", host6, 22),
            ],
        )
        expect_blocked(topo, [direct, tcp("client0", peer6, 80)], DROPPED)


# ----------------------------------------------------------------------- two uplinks


@pytest.mark.kernel
def test_every_host_address_on_every_uplink_and_transit_is_not_dnated() -> None:
    path = model_path("two-uplinks")
    with Topology(read_model(path), HOST) as topo:
        load(topo, path, HOST)
        topo.serve("web", [80])
        topo.serve_in("client0", "client0", [7100])
        topo.serve_in("client1", "client1", [7100, 8080])
        wan0, wan1 = topo.host_address(4, 0), topo.host_address(4, 1)
        client0, client1 = topo.client_address(4, 0), topo.client_address(4, 1)
        expect_reached(
            topo,
            [
                (tcp("client0", wan0, 8080), ("web", client0, 80)),
                (tcp("client0", wan1, 8080), ("web", client0, 80)),
                (udp("client1", wan0, 8080), ("web", client1, 80)),
                (tcp("client1", wan1, 8080), ("web", client1, 80)),
                # passing through the host, to a forwarded port: not DNATed
                (tcp("client0", client1, 8080), ("client1", client0, 8080)),
                (udp("client0", client1, 8080), ("client1", client0, 8080)),
                # guests leave by either uplink as that uplink's address
                (tcp("guest:web", client0, 7100), ("client0", wan0, 7100)),
                (tcp("guest:web", client1, 7100), ("client1", wan1, 7100)),
            ],
        )


# ----------------------------------------------------------------------- uplinks only


@pytest.mark.kernel
def test_forwards_match_only_traffic_arriving_on_an_uplink() -> None:
    with basic_topology() as topo:
        load(topo, BASIC, HOST)
        topo.serve("web", [80])
        host4, client4 = topo.host_address(4), topo.client_address(4)
        # A second link between client and host that is neither an uplink nor a bridge.
        topo.run("host", ["ip", "link", "add", "name", "side0", "type", "veth", "peer",
                          "name", "eth1", "netns", topo.ns["client0"]])  # fmt: skip
        topo.run("host", ["ip", "addr", "add", "198.18.77.1/24", "dev", "side0"])
        topo.run("host", ["ip", "link", "set", "dev", "side0", "up"])
        topo.run("client0", ["ip", "addr", "add", "198.18.77.2/24", "dev", "eth1"])
        topo.run("client0", ["ip", "link", "set", "dev", "eth1", "up"])
        expect_reached(topo, [(tcp("client0", host4, 8080), ("web", client4, 80))])
        topo.run("client0", ["ip", "route", "add", f"{host4}/32", "via", "198.18.77.1"])
        # Through side0 the host itself answers (a reset: the path works both ways),
        # at its uplink address and at side0's own.
        refused = ("refused",)
        expect_blocked(
            topo, [tcp("client0", host4, 8080), tcp("client0", "198.18.77.1", 8080)], refused
        )


# ----------------------------------------------------------------------- behaviour 6

FOREIGN = """
table ip filter {
    chain forward {
        type filter hook forward priority 0; policy accept;
        iifname "lo" ip saddr 192.0.2.0/24 accept
        accept
    }
}
table inet admin {
    set blocked {
        type ipv4_addr
        elements = { 192.0.2.1, 192.0.2.2 }
    }
    chain input {
        type filter hook input priority 0; policy accept;
        ip saddr @blocked drop
    }
}
table ip nftfwd {
    chain keep {
        ip daddr 192.0.2.9 drop
    }
}
"""
FOREIGN_TABLES = [("ip", "filter"), ("inet", "admin"), ("ip", "nftfwd")]


def foreign_listing(topo: Topology) -> dict[tuple[str, str], str]:
    return {table: ruleset(topo, "table", *table) for table in FOREIGN_TABLES}


@pytest.mark.kernel
def test_foreign_tables_are_byte_for_byte_unchanged() -> None:
    with basic_topology() as topo:
        topo.load_ruleset(FOREIGN)
        before = foreign_listing(topo)
        assert "192.0.2.1" in before[("inet", "admin")]
        load(topo, BASIC, HOST)
        assert foreign_listing(topo) == before
        topo.serve("web", [80])
        host4, client4 = topo.host_address(4), topo.client_address(4)
        expect_reached(topo, [(tcp("client0", host4, 8080), ("web", client4, 80))])
        load(topo, model_path("hairpin-off"), HOST)
        assert foreign_listing(topo) == before
        tables = topo.run("host", ["nft", "list", "tables"]).stdout.split("\n")
        assert sorted(t for t in tables if t) == sorted(
            [*(f"table {family} {name}" for family, name in FOREIGN_TABLES), "table inet nftfwd"]
        )


# ----------------------------------------------------------------------- failing loads


def crowded_output_hook(count: int = 1024) -> str:
    """A foreign table with ``count`` nat output chains: the kernel allows at most 1024
    on one hook, so a transaction that registers one more fails (E2BIG)."""
    chains = "\n".join(
        f"    chain c{i} {{ type nat hook output priority {i % 50}; policy accept; }}"
        for i in range(count)
    )
    return f"table ip crowd {{\n{chains}\n}}\n"


@pytest.mark.kernel
def test_a_failing_load_changes_nothing() -> None:
    off = model_path("hairpin-off")  # no nat output chain ...
    with basic_topology() as topo:
        load(topo, off, HOST)
        topo.serve("web", [80])
        host4, client4 = topo.host_address(4), topo.client_address(4)
        works = [(tcp("client0", host4, 8080), ("web", client4, 80))]
        expect_reached(topo, works)

        # ... basic.yaml adds one, on a hook that is full: the kernel refuses the batch.
        topo.load_ruleset(crowded_output_hook())
        before = ruleset(topo)
        done = load(topo, BASIC, HOST, check=False)
        assert done.returncode == 2, done
        assert "Traceback" not in done.stderr, done.stderr
        assert done.stderr.strip(), "an error must say what went wrong"
        assert "Argument list too long" in done.stderr
        assert "the refused part: chain output {" in done.stderr  # which part it refused
        assert ruleset(topo) == before
        expect_reached(topo, works)
        expect_blocked(topo, [tcp("host", host4, 8080)])  # still hairpin: false

        # An invalid model: refused before anything reaches the kernel.
        done = load(topo, model_path("invalid"), HOST, check=False)
        assert done.returncode == 2, done
        assert "Traceback" not in done.stderr, done.stderr
        assert "outside the bridge's subnet" in done.stderr
        assert ruleset(topo) == before
        expect_reached(topo, works)


@contextlib.contextmanager
def owned_table(topo: Topology, family: str, name: str) -> Iterator[None]:
    """Hold ``table <family> <name> { flags owner; }`` from a live `nft -i` process (as
    firewalld >= 2.0 does with its table): nobody else may change it."""
    holder = subprocess.Popen(
        ["ip", "netns", "exec", topo.ns["host"], "nft", "-i"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert holder.stdin is not None
        holder.stdin.write(f"add table {family} {name} {{ flags owner; }}\n")
        holder.stdin.flush()
        deadline = time.monotonic() + 5
        while f"table {family} {name}" not in ruleset(topo, "tables"):
            assert time.monotonic() < deadline, "the owned table did not appear"
            time.sleep(0.05)
        yield
    finally:
        if holder.stdin is not None:
            with contextlib.suppress(OSError):
                holder.stdin.close()
        try:
            holder.wait(3)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait(3)


@pytest.mark.kernel
def test_a_foreign_owned_table_does_not_stop_a_load() -> None:
    with basic_topology() as topo:
        load(topo, model_path("hairpin-off"), HOST)
        # Created after nftfwd's table, the owned table is listed last: nft 1.0.6 then
        # always prints its JSON cut short (`"flags": ` and nothing), so a load that
        # reads the whole ruleset as JSON fails every time, not by chance.
        with owned_table(topo, "inet", "firewalld"):
            before = ruleset(topo, "table", "inet", "firewalld")
            load(topo, BASIC, HOST)
            assert ruleset(topo, "table", "inet", "firewalld") == before
            topo.serve("web", [80])
            host4 = topo.host_address(4)
            reply = topo.request("host", "tcp", host4, 8080, timeout=3)
            assert (reply.guest, reply.port) == ("web", 80), reply  # basic.yaml's hairpin


# ----------------------------------------------------------------------- diff, confirm


@pytest.mark.kernel
def test_diff_after_a_load_is_empty() -> None:
    with basic_topology() as topo:
        assert nftfwd(topo, "diff", str(BASIC), "--host", HOST).returncode == 1
        load(topo, BASIC, HOST)
        done = nftfwd(topo, "diff", str(BASIC), "--host", HOST)
        assert done.returncode == 0, done
        changed = nftfwd(topo, "diff", str(model_path("basic-changed")), "--host", HOST)
        assert changed.returncode == 1, changed
        again = load(topo, BASIC, HOST)
        assert again.returncode == 0


@pytest.mark.kernel
def test_load_confirm_rolls_back_unless_confirmed() -> None:
    with basic_topology() as topo:
        load(topo, BASIC, HOST)
        topo.serve("web", [80])
        host4 = topo.host_address(4)
        before = ruleset(topo)
        done = load(topo, model_path("hairpin-off"), HOST, "--confirm", "1", check=False)
        assert done.returncode == 3, done
        assert ruleset(topo) == before
        reply = topo.request("host", "tcp", host4, 8080, timeout=3)
        assert (reply.guest, reply.port) == ("web", 80), reply  # basic.yaml's hairpin

        argv = [str(model_path("hairpin-off")), "--host", HOST, "--atomic", "--yes"]
        waiting = subprocess.Popen(
            ["ip", "netns", "exec", topo.ns["host"], "env",
             f"NFTFWD_STATE_DIR={state_dir(topo)}", str(NFTFWD), "load", *argv,
             "--confirm", "20"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while not (state_dir(topo) / "pending-confirm.json").exists():
                assert waiting.poll() is None, waiting.communicate()
                assert time.monotonic() < deadline, "load --confirm never waited"
                time.sleep(0.05)
            confirmed = nftfwd(topo, "confirm")
            assert confirmed.returncode == 0, confirmed
            out, err = waiting.communicate(timeout=5)
            assert waiting.returncode == 0, (out, err)
        finally:
            if waiting.poll() is None:
                waiting.kill()
                waiting.wait(3)
        expect_blocked(topo, [tcp("host", host4, 8080)])  # hairpin-off.yaml is kept


# ----------------------------------------------------------------------- conntrack


@pytest.mark.kernel
def test_load_closes_tracked_connections_of_changed_forwards_only() -> None:
    with basic_topology() as topo:
        load(topo, BASIC, HOST)
        topo.serve("web", [80, 22, 7000])
        topo.serve("app", [22])
        host4, client4 = topo.host_address(4), topo.client_address(4)
        with (
            topo.open_session("client0", host4, 8080) as removed,
            topo.open_session("client0", host4, 2222) as moved,
            topo.open_session("client0", host4, 7000) as kept,
        ):
            assert [s.exchange(timeout=3).ok for s in (removed, moved, kept)] == [True] * 3
            load(topo, model_path("basic-changed"), HOST)
            assert not removed.exchange(timeout=1).ok, "8080 is no longer forwarded"
            assert not moved.exchange(timeout=1).ok, "2222 now reaches another guest"
            still = kept.exchange("unchanged", timeout=3)
            assert still.text == f"web {client4} 7000 unchanged", still
        expect_reached(
            topo,
            [
                (tcp("client0", host4, 2222), ("web", client4, 22)),
                (tcp("client0", host4, 8081), ("web", client4, 80)),
            ],
        )
        expect_blocked(topo, [tcp("client0", host4, 8080)])
