"""claims.py: where each forward exists and listens, and what it claims there;
and that the checks, the lowering and doctor's flows all follow it."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest

from nftfwd.claims import Claim, host_reaches, reaches
from nftfwd.compiler import load_model
from nftfwd.doctor.flows import HOST_ADDRESS, build_flows
from nftfwd.errors import ModelError
from nftfwd.lower import lower_host
from nftfwd.model import Bridge, Forward, Guest, Host, IPAddress, PortRange

V4, V6 = IPv4Address("192.168.122.10"), IPv6Address("fd00:122::10")


def forward(port: int = 8080, to: int = 80, **changes: Any) -> Forward:
    values: dict[str, Any] = {
        "port": PortRange(port, port),
        "to": PortRange(to, to),
        "protos": ("tcp",),
        "sources": (),
        "address": None,
        "snat": False,
        "path": f"forward {port}",
        "location": None,
    }
    values.update(changes)
    return Forward(**values)


def host(*forwards: Forward, v6: bool = True, addresses: tuple[IPAddress, ...] = ()) -> Host:
    guest = Guest("web", V4, V6 if v6 else None, forwards)
    bridge = Bridge(
        "virbr0",
        IPv4Network("192.168.122.0/24"),
        IPv6Network("fd00:122::/64") if v6 else None,
        True,
        (guest,),
    )
    return Host("kvm1", ("eth0",), addresses, True, (bridge,))


def only(h: Host) -> tuple[Bridge, Guest, Forward]:
    [(bridge, guest, fw)] = list(h.forwards())
    return bridge, guest, fw


def test_a_forward_exists_in_each_family_its_guest_has_an_address_in() -> None:
    h = host(forward())
    found = reaches(h, *only(h))
    assert [(r.family, r.target, r.listen, r.sources) for r in found] == [
        ("ip", V4, (), ()),
        ("ip6", V6, (), ()),
    ]
    h = host(forward(), v6=False)
    assert [r.family for r in reaches(h, *only(h))] == ["ip"]


def test_a_named_address_keeps_the_forward_to_its_family_and_is_where_it_listens() -> None:
    at = ip_address("203.0.113.5")
    h = host(forward(address=at), addresses=(at, ip_address("2001:db8::5")))
    assert [(r.family, r.listen) for r in reaches(h, *only(h))] == [("ip", (at,))]


def test_listed_host_addresses_are_per_family_and_none_listed_means_any() -> None:
    a4 = ip_address("203.0.113.5")
    h = host(forward(), addresses=(a4,))
    assert [(r.family, r.listen) for r in reaches(h, *only(h))] == [("ip", (a4,)), ("ip6", ())]


def test_sources_close_the_families_they_do_not_name() -> None:
    net4 = ip_network("198.51.100.0/24")
    h = host(forward(sources=(net4,)))
    assert [(r.family, r.sources) for r in reaches(h, *only(h))] == [("ip", (net4,))]
    both = (net4, ip_network("2001:db8::/32"))
    h = host(forward(sources=both))
    assert [r.sources for r in reaches(h, *only(h))] == [both[:1], both[1:]]


def test_a_forward_whose_families_all_close_exists_nowhere() -> None:
    h = host(forward(sources=(ip_network("2001:db8::/32"),)), v6=False)
    assert reaches(h, *only(h)) == ()
    assert host_reaches(h) == []


def test_claims_are_one_per_protocol_and_host_address_none_meaning_any() -> None:
    a, b = ip_address("203.0.113.5"), ip_address("203.0.113.6")
    fw = forward(port=8000, protos=("tcp", "udp"))
    h = host(fw, v6=False, addresses=(a, b))
    [reach] = host_reaches(h)
    claims = list(reach.claims())
    assert [(c.proto, c.address, c.ports) for c in claims] == [
        ("tcp", a, fw.port),
        ("tcp", b, fw.port),
        ("udp", a, fw.port),
        ("udp", b, fw.port),
    ]
    assert all(c.family == "ip" and c.forward is fw and c.reach is reach for c in claims)
    [reach] = host_reaches(host(fw, v6=False))
    assert list(reach.claims()) == [
        Claim("tcp", fw.port, None, reach),
        Claim("udp", fw.port, None, reach),
    ]


def test_host_reaches_are_in_model_order() -> None:
    first, second = forward(8080), forward(8081, sources=(ip_network("fd00:1::/64"),))
    found = host_reaches(host(first, second))
    assert [(r.forward, r.family) for r in found] == [
        (first, "ip"),
        (first, "ip6"),
        (second, "ip6"),
    ]


# -- every stage reads the same claims ---------------------------------------------------


def test_the_lowering_has_one_element_per_claim_and_host_port(tmp_path: Path) -> None:
    a4 = ip_address("203.0.113.5")
    fw = forward(port=8000, to=80, protos=("tcp", "udp"))
    h = host(fw, forward(9000, 90, address=a4, snat=True), addresses=(a4,))
    table = lower_host("nftfwd", h)
    keys = {s.name: {e.key for e in s.elements} for s in table.sets}
    # IPv4: the host lists an address, so both forwards listen at it.
    assert len(keys["dnat_addr_at4"]) == 3
    # IPv6: none listed, so the first listens on any host address; the second is IPv4.
    assert len(keys["dnat_addr_any6"]) == 2 and "dnat_addr_at6" not in keys
    assert len(keys["snat4"]) == 1 and "snat6" not in keys


def test_doctor_flows_follow_the_claims_where_the_host_lists_one_family_only() -> None:
    a4 = ip_address("203.0.113.5")
    h = host(forward(), addresses=(a4,))
    new = [f for f in build_flows(h) if f.kind == "forward" and f.label.startswith("new ")]
    assert [(f.mid.family, f.early.daddr if f.early else None) for f in new] == [
        ("ip", (ip_network(a4),)),
        ("ip6", (HOST_ADDRESS,)),
    ]


def _load(tmp_path: Path, forwards: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "version: 1\nhosts:\n  kvm1:\n    uplinks: [eth0]\n"
        "    addresses: [203.0.113.5, '2001:db8::5']\n"
        "    bridges:\n      virbr0:\n        subnet: 192.168.122.0/24\n"
        "        subnet6: fd00:122::/64\n        guests:\n          web:\n"
        "            address: 192.168.122.10\n            address6: fd00:122::10\n"
        f"            forwards:\n{forwards}"
    )
    load_model(path)


def test_snat_agreement_is_asked_only_where_forwards_meet(tmp_path: Path) -> None:
    # One forward is IPv4 only, the other IPv6 only: they never reach the same address.
    _load(
        tmp_path,
        "              - {port: 8080, to: 80, address: 203.0.113.5, snat: true}\n"
        "              - {port: 8081, to: 80, address: '2001:db8::5'}\n",
    )
    with pytest.raises(ModelError) as raised:
        _load(
            tmp_path,
            "              - {port: 8080, to: 80, snat: true}\n"
            "              - {port: 8081, to: 80, address: '2001:db8::5'}\n",
        )
    [problem] = raised.value.problems
    assert "reaches fd00:122::10 tcp/80 like" in problem.message
