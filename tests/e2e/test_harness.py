"""Self-tests of the namespace harness, independent of nftfwd's compiler."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest
import yaml
from conftest import REPO
from harness import HarnessError, Topology, kernel_test_prerequisites, plan_topology

SCENARIO_DIRS = [REPO / "examples", REPO / "examples" / "scenarios"]


def scenario(name: str) -> dict[str, Any]:
    for directory in SCENARIO_DIRS:
        path = directory / name
        if path.exists():
            model: dict[str, Any] = yaml.safe_load(path.read_text())
            return model
    raise FileNotFoundError(f"{name} not found in {[str(d) for d in SCENARIO_DIRS]}")


def namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def assert_gone(topo: Topology) -> None:
    assert topo.prefix not in namespaces()


# The hand-written prototype ruleset (/tmp/shared-proto/p.nft). The harness gives
# uplink 0 the address 203.0.113.1 when the model lists none, so it loads unchanged.
PROTO_RULESET = """
table inet nftfwd
delete table inet nftfwd
table inet nftfwd {
    map dnat4_addr {
        type ipv4_addr . ipv4_addr . inet_proto . inet_service : ipv4_addr
        flags interval
        elements = { 0.0.0.0/0 . 0.0.0.0/0 . tcp . 8080 : 192.168.122.133,
                     198.51.100.0/24 . 0.0.0.0/0 . tcp . 2222 : 192.168.122.133,
                     0.0.0.0/0 . 203.0.113.1 . tcp . 20443 : 192.168.122.133,
                     0.0.0.0/0 . 0.0.0.0/0 . udp . 8000-8010 : 192.168.122.133 }
    }
    map dnat4_port {
        type ipv4_addr . ipv4_addr . inet_proto . inet_service : inet_service
        flags interval
        elements = { 0.0.0.0/0 . 0.0.0.0/0 . tcp . 8080 : 80,
                     198.51.100.0/24 . 0.0.0.0/0 . tcp . 2222 : 22,
                     0.0.0.0/0 . 203.0.113.1 . tcp . 20443 : 443,
                     0.0.0.0/0 . 0.0.0.0/0 . udp . 8000 : 9000,
                     0.0.0.0/0 . 0.0.0.0/0 . udp . 8001 : 9001 }
    }
    map dnat6_addr {
        type ipv6_addr . ipv6_addr . inet_proto . inet_service : ipv6_addr
        flags interval
        elements = { ::/0 . ::/0 . tcp . 8080 : fd00:122::133 }
    }
    map dnat6_port {
        type ipv6_addr . ipv6_addr . inet_proto . inet_service : inet_service
        flags interval
        elements = { ::/0 . ::/0 . tcp . 8080 : 80 }
    }
    set snat4 {
        type ipv4_addr . inet_proto . inet_service
        elements = { 192.168.122.133 . tcp . 5432 }
    }
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        iifname { "enp2s0", "virbr0" } fib daddr type local \
            ip daddr != { 127.0.0.0/8, 192.168.122.0/24 } meta l4proto { tcp, udp } \
            dnat ip to ip saddr . ip daddr . meta l4proto . th dport map @dnat4_addr \
            : ip saddr . ip daddr . meta l4proto . th dport map @dnat4_port
        iifname { "enp2s0", "virbr0" } fib daddr type local \
            ip6 daddr != { ::1, fe80::/10, fd00:122::/64 } meta l4proto { tcp, udp } \
            dnat ip6 to ip6 saddr . ip6 daddr . meta l4proto . th dport map @dnat6_addr \
            : ip6 saddr . ip6 daddr . meta l4proto . th dport map @dnat6_port
    }
    chain output {
        type nat hook output priority -100; policy accept;
        fib daddr type local ip daddr != { 127.0.0.0/8, 192.168.122.0/24 } \
            meta l4proto { tcp, udp } \
            dnat ip to ip saddr . ip daddr . meta l4proto . th dport map @dnat4_addr \
            : ip saddr . ip daddr . meta l4proto . th dport map @dnat4_port
    }
    chain forward {
        type filter hook forward priority filter; policy accept;
        ct state established,related accept
        ct status dnat accept
        iifname "virbr0" oifname "virbr0" accept
        iifname "virbr0" oifname { "enp2s0" } ip saddr 192.168.122.0/24 accept
        ip daddr { 192.168.122.0/24 } drop
        ip6 daddr { fd00:122::/64 } drop
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "virbr0" ct status dnat ip daddr . meta l4proto . th dport @snat4 masquerade
        ct status dnat ip saddr 192.168.122.0/24 ip daddr 192.168.122.0/24 masquerade
        oifname { "enp2s0" } ip saddr 192.168.122.0/24 masquerade
    }
}
"""

PROTO_MODEL: dict[str, Any] = {
    "version": 1,
    "hosts": {
        "proto": {
            "uplinks": ["enp2s0"],
            "bridges": {
                "virbr0": {
                    "subnet": "192.168.122.0/24",
                    "subnet6": "fd00:122::/64",
                    "guests": {
                        "web": {
                            "address": "192.168.122.133",
                            "address6": "fd00:122::133",
                            "forwards": [
                                {"port": 8080, "to": 80},
                                {"port": 2222, "to": 22, "sources": ["198.51.100.0/24"]},
                                {"port": 20443, "to": 443, "address": "203.0.113.1"},
                                {"port": "8000-8010", "to": "9000-9010", "proto": "udp"},
                                {"port": 5432, "snat": True},
                            ],
                        }
                    },
                }
            },
        }
    },
}

# A minimal DNAT + snat ruleset for seed002's gateway (router test).
GATEWAY_RULESET = """
table inet harness
delete table inet harness
table inet harness {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        iifname "enp0s25" ip daddr 10.187.40.123 tcp dport 8080 dnat ip to 10.188.50.202
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "enp3s0" ct status dnat masquerade
    }
}
"""


def test_plan_addresses_without_kernel() -> None:
    plan = plan_topology(scenario("fleet-dualstack.yaml"), "edge2")
    hosts = [[str(i) for i in uplink.host] for uplink in plan.uplinks]
    assert hosts == [["203.0.113.7/24", "2001:db8::7/64"], ["198.18.1.1/24", "2001:db8:2::1/64"]]
    clients = [[str(i) for i in uplink.client] for uplink in plan.uplinks]
    assert clients == [
        ["203.0.113.100/24", "2001:db8::100/64"],
        ["198.18.1.100/24", "2001:db8:2::100/64"],
    ]
    routed = plan_topology(scenario("seed002-gateway-snat.yaml"), "gateway", router=True)
    assert [str(i) for i in routed.bridges[0].router] == ["10.188.50.254/24"]
    assert [g.via_router for g in routed.guests] == [True]
    clash = {"hosts": {"h": {"uplinks": ["e0"], "addresses": ["10.0.0.1"], "bridges": {
        "br0": {"subnet": "10.0.0.0/16"}}}}}  # fmt: skip
    with pytest.raises(HarnessError, match="overlaps"):
        plan_topology(clash, "h")


@pytest.mark.kernel
def test_prerequisites_hold() -> None:
    assert kernel_test_prerequisites() is None


@pytest.mark.kernel
def test_routing_without_ruleset() -> None:
    with Topology(scenario("seed000-libvirt-port3000.yaml"), "kvm-host") as topo:
        assert set(topo.ns) == {"host", "client0", "guest:app", "guest:quiet"}
        topo.serve_in("client0", "client0", [7000])
        topo.serve("app", [3000])
        client = topo.client_address(4)
        out = topo.request("guest:app", "tcp", client, 7000)
        assert (out.ok, out.guest, out.peer, out.port) == (True, "client0", "192.168.122.106", 7000)
        udp = topo.request("guest:app", "udp", client, 7000)
        assert (udp.guest, udp.peer) == ("client0", "192.168.122.106")
        gateway = topo.gateway("virbr0", 4)
        assert gateway == "192.168.122.1"
        back = topo.request("host", "tcp", "192.168.122.106", 3000)
        assert (back.guest, back.peer, back.port) == ("app", gateway, 3000)
        assert topo.request("host", "tcp", "192.168.122.131", 3000).error == "refused"
    assert_gone(topo)


@pytest.mark.kernel
def test_prototype_ruleset_forwards() -> None:
    extra = {0: ["198.51.100.10"]}
    with Topology(PROTO_MODEL, "proto", extra_client_addresses=extra) as topo:
        topo.load_ruleset(PROTO_RULESET)
        topo.serve("web", [80, 22, 9001])
        host4, client4 = topo.host_address(4), topo.client_address(4)
        assert host4 == "203.0.113.1"

        reply = topo.request("client0", "tcp", host4, 8080)
        assert (reply.ok, reply.guest, reply.peer, reply.port) == (True, "web", client4, 80)
        with topo.open_session("client0", host4, 8080) as session:
            first, second = session.exchange("one"), session.exchange("two")
        assert first.ok and first.text == f"web {client4} 80 one"
        assert second.ok and second.text == f"web {client4} 80 two"

        host6 = topo.host_address(6)
        v6 = topo.request("client0", "tcp", host6, 8080)
        assert (v6.guest, v6.peer, v6.port) == ("web", topo.client_address(6), 80)
        assert topo.request("client0", "udp", host4, 8001).port == 9001
        assert topo.request("client0", "tcp", host4, 2222).error == "refused"
        allowed = topo.request("client0", "tcp", host4, 2222, source="198.51.100.10")
        assert (allowed.peer, allowed.port) == ("198.51.100.10", 22)
        assert topo.request("host", "tcp", host4, 8080).guest == "web"
        direct = topo.request("client0", "tcp", "192.168.122.133", 80, timeout=0.5)
        assert direct.error == "timeout"
    assert_gone(topo)


@pytest.mark.kernel
def test_router_is_a_dead_end_until_snat() -> None:
    with Topology(scenario("seed002-gateway-snat.yaml"), "gateway", router=True) as topo:
        assert topo.host_address(4) == "10.187.40.123"
        router = topo.router_address("enp3s0", 4)
        routes = topo.run("guest:flask", ["ip", "route", "show", "default"]).stdout
        assert f"via {router} " in routes
        topo.serve("flask", [8080], protos=("tcp",))
        assert topo.request("host", "tcp", "10.188.50.202", 8080).ok
        assert topo.request("client0", "tcp", "10.188.50.202", 8080, timeout=0.5).error == "timeout"
        topo.load_ruleset(GATEWAY_RULESET)
        reply = topo.request("client0", "tcp", "10.187.40.123", 8080)
        assert (reply.guest, reply.peer) == ("flask", topo.gateway("enp3s0", 4))
    assert_gone(topo)


@pytest.mark.kernel
def test_dual_stack_two_uplinks() -> None:
    with Topology(scenario("fleet-dualstack.yaml"), "edge2") as topo:
        links = topo.run("host", ["ip", "-br", "link"]).stdout
        assert {"eth0", "eth1", "br0"} <= {
            line.split("@")[0].split()[0] for line in links.splitlines()
        }
        topo.serve("games", [443, 27015])
        guest6 = topo.guest_address("games", 6)
        for uplink in (0, 1):
            client6 = topo.client_address(6, uplink)
            reply = topo.request(f"client{uplink}", "tcp", guest6, 443)
            assert (reply.guest, reply.peer, reply.port) == ("games", client6, 443)
        assert topo.request("client1", "udp", guest6, 27015).peer == topo.client_address(6, 1)
        assert topo.request("client1", "tcp", "10.20.0.9", 443).peer == topo.client_address(4, 1)
        topo.serve_in("client0", "client0", [7000])
        back = topo.request("guest:games", "udp", topo.client_address(6), 7000)
        assert (back.guest, back.peer) == ("client0", guest6)
    assert_gone(topo)


@pytest.mark.kernel
def test_cleanup_after_an_exception() -> None:
    topo = Topology(scenario("seed000-libvirt-port3000.yaml"), "kvm-host")
    with pytest.raises(RuntimeError, match="boom"), topo:
        server = topo.serve("app", [3000])
        session = topo.open_session("client0", "192.168.122.106", 3000)
        raise RuntimeError("boom")
    assert server.process.returncode is not None
    assert session.process.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(server.pid, 0)
    assert_gone(topo)
