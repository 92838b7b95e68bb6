"""The lowering's catalogue of maps (lower.MAPS): every map and set a lowered table holds
is in it, under its family, with what it holds; plan reads forwards by these names."""

from __future__ import annotations

from pathlib import Path

import pytest

from nftfwd.compiler import load_model
from nftfwd.lower import ANY, AT, MAPS, lower_host, map_of

REPO = Path(__file__).resolve().parent.parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
KEY_PARTS = {AT: 3, ANY: 2, None: 3}  # host address . protocol . port; protocol . port;
# snat: guest address . protocol . guest port


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_map_of_a_lowered_table_is_catalogued(path: Path) -> None:
    model = load_model(path)
    by_name = {m.name: m for m in MAPS}
    for host in model.hosts:
        table = lower_host(model.table, host)
        for named in table.sets:
            entry = by_name[named.name]
            assert len(named.key_types) == KEY_PARTS[entry.where]
            assert named.key_types[-2:] == ("inet_proto", "inet_service")
            address = {"ip": "ipv4_addr", "ip6": "ipv6_addr"}[entry.family]
            if entry.where != ANY:
                assert named.key_types[0] == address
            holds = {
                "dnat_addr": address,
                "dnat_port": "inet_service",
                "sources": "verdict",
                "snat": None,
            }
            assert named.data_type == holds[entry.holds]


def test_one_entry_per_name_and_what_it_holds() -> None:
    assert len({m.name for m in MAPS}) == len(MAPS) == 14
    assert map_of("dnat_addr", "ip6", AT).name == "dnat_addr_at6"
    assert map_of("sources", "ip", ANY).name == "sources_any4"
    assert map_of("snat", "ip").name == "snat4"
