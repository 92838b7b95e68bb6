"""Stage 3: the IR. Per-packet cost is fixed: forwards only add map elements."""

from __future__ import annotations

from pathlib import Path

import yaml

from nftfwd.compiler import load_model
from nftfwd.ir import (
    Chain,
    Dnat,
    Jump,
    Match,
    NamedSet,
    SetRef,
    Table,
    VerdictMapLookup,
    load_order,
)
from nftfwd.lower import lower_host
from nftfwd.render_json import batch


def _model(tmp: Path, guests: int, forwards: int) -> Table:
    data = {
        "version": 1,
        "hosts": {
            "h": {
                "uplinks": ["eth0"],
                "bridges": {
                    "br0": {
                        "subnet": "10.0.0.0/16",
                        "subnet6": "fd00::/64",
                        "guests": {
                            f"g{g}": {
                                "address": f"10.0.{g // 200}.{g % 200 + 2}",
                                "address6": f"fd00::{g + 2:x}",
                                "forwards": [
                                    {"port": 1000 + g * forwards + f, "proto": ["tcp", "udp"]}
                                    for f in range(forwards)
                                ],
                            }
                            for g in range(guests)
                        },
                    }
                },
            }
        },
    }
    path = tmp / "m.yaml"
    path.write_text(yaml.safe_dump(data))
    model = load_model(path)
    return lower_host(model.table, model.hosts[0])


def _rules(table: Table) -> int:
    return sum(len(c.rules) for c in table.chains)


def test_rule_count_does_not_grow_with_forwards(tmp_path: Path) -> None:
    small = _model(tmp_path, guests=1, forwards=1)
    large = _model(tmp_path, guests=50, forwards=20)
    assert _rules(small) == _rules(large)
    elements = {s.name: len(s.elements) for s in large.sets}
    assert elements["dnat_addr_any4"] == 50 * 20 * 2
    assert elements["dnat_port_any6"] == 50 * 20 * 2


def test_every_map_on_the_packet_path_is_an_exact_match_map(tmp_path: Path) -> None:
    # Concatenated interval maps live in the kernel's pipapo backend, whose lookups
    # grow with the number of elements: none may appear in the transaction.
    table = _model(tmp_path, guests=5, forwards=3)
    declared = [
        body
        for command in batch(table)["nftables"]
        for kind, body in command.get("add", {}).items()
        if kind in ("set", "map")
    ]
    assert len(declared) == len(table.sets) > 0
    assert not any("flags" in body for body in declared)


def test_port_range_offsets_are_kept_port_by_port(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "version: 1\nhosts:\n  h:\n    uplinks: [eth0]\n    bridges:\n      br0:\n"
        "        subnet: 10.0.0.0/24\n        guests:\n          g:\n"
        "            address: 10.0.0.2\n            forwards:\n"
        "              - {port: '8000-8010', to: '9000-9010'}\n"
    )
    model = load_model(path)
    table = lower_host(model.table, model.hosts[0])
    ports = {s.name: s for s in table.sets}["dnat_port_any4"]
    mapping = {e.key[1]: e.data for e in ports.elements}
    assert mapping[8005] == 9005
    assert len(mapping) == 11


def test_hairpin_off_has_no_output_chain_and_no_bridge_ingress(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "version: 1\nhosts:\n  h:\n    uplinks: [eth0]\n    hairpin: false\n    bridges:\n"
        "      br0:\n        subnet: 10.0.0.0/24\n        guests:\n          g:\n"
        "            address: 10.0.0.2\n            forwards: [{port: 80}]\n"
    )
    model = load_model(path)
    table = lower_host(model.table, model.hosts[0])
    assert [c.name for c in table.chains] == ["prerouting", "forward", "postrouting"]
    from nftfwd.nft_text import rule_text

    prerouting = rule_text(table.chains[0].rules[0])
    assert 'iifname "eth0"' in prerouting and "br0" not in prerouting


def test_sources_guard_jumps_to_one_chain_per_distinct_client_list(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "version: 1\nhosts:\n  h:\n    uplinks: [eth0]\n    addresses: ['203.0.113.1']\n"
        "    bridges:\n      br0:\n        subnet: 10.0.0.0/24\n        guests:\n"
        "          g:\n            address: 10.0.0.2\n            forwards:\n"
        "              - {port: 22, sources: [198.51.100.0/24]}\n"
        "              - {port: 23, sources: [198.51.100.0/24]}\n"
        "              - {port: 24, sources: [192.0.2.0/24]}\n"
        "              - {port: 80}\n"
    )
    model = load_model(path)
    table = lower_host(model.table, model.hosts[0])
    guards = [c for c in table.chains if c.base is None]
    assert [c.name for c in guards] == ["allow4_0", "allow4_1"]
    sources = {s.name: s for s in table.sets}["sources_at4"]
    jumps = {e.key[2]: e.data.target for e in sources.elements}  # type: ignore[union-attr]
    assert jumps == {22: "allow4_1", 23: "allow4_1", 24: "allow4_0"}


def _names(item: Chain | NamedSet) -> set[str]:
    """The chains and sets `item` names: jump targets, looked-up maps and sets."""
    if isinstance(item, NamedSet):
        return {e.data.target for e in item.elements if isinstance(e.data, Jump)}
    names = set()
    for rule in item.rules:
        for statement in rule.statements:
            match statement:
                case Match(_, SetRef(name)) | VerdictMapLookup(_, name):
                    names.add(name)
                case Dnat(_, addr, port):
                    names |= {addr.map, port.map}
    return names


def test_load_order_adds_every_object_after_the_ones_it_names(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "version: 1\nhosts:\n  h:\n    uplinks: [eth0]\n    bridges:\n      br0:\n"
        "        subnet: 10.0.0.0/24\n        guests:\n          g:\n"
        "            address: 10.0.0.2\n            forwards:\n"
        "              - {port: 2222, to: 22, sources: [192.0.2.0/24]}\n"
        "              - {port: 8080, to: 80, snat: true}\n"
    )
    model = load_model(path)
    order = load_order(lower_host(model.table, model.hosts[0]))
    added: set[str] = set()
    for item in order:
        assert _names(item) <= added, f"{item.name} names {_names(item) - added} before they exist"
        added.add(item.name)
    # A jump target, maps a rule looks up, a set a rule matches: every kind of reference.
    assert set().union(*map(_names, order)) == {
        "allow4_0",
        "sources_any4",
        "dnat_addr_any4",
        "dnat_port_any4",
        "snat4",
    }
