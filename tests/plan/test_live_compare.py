"""The pieces load and diff compare a live table with: outlines, elements, restore batches."""

from __future__ import annotations

import json
from typing import Any

from nftfwd.diffview import element_lines, format_text
from nftfwd.ir import Table
from nftfwd.kernel.libnft import table_outlines
from nftfwd.kernel.live import LiveTable, batch_file, restore_batch
from nftfwd.nftjson import name_protocols, read_objects
from nftfwd.plan import ElementChange, HostDiff, compare_elements, elements_of

OUTLINE = """\
# Warning: table ip filter is managed by iptables-nft, do not touch!
table ip filter {
\tchain FORWARD {
\t\ttype filter hook forward priority filter; policy drop;
\t}
}
table inet firewalld { # progname firewalld
\tflags owner
}
table inet "nftfwd" {
\tmap dnat_addr_any4 {
\t\ttype inet_proto . inet_service : ipv4_addr
\t}
}
"""


def test_table_outlines_split_a_listing_by_table() -> None:
    blocks = table_outlines(OUTLINE)
    assert list(blocks) == [("ip", "filter"), ("inet", "firewalld"), ("inet", "nftfwd")]
    assert blocks[("inet", "firewalld")] == (
        "table inet firewalld { # progname firewalld\n\tflags owner\n}\n"
    )
    assert blocks[("inet", "nftfwd")].endswith("ipv4_addr\n\t}\n}\n")
    assert table_outlines("") == {}


def _map(name: str, elem: list[Any], table: str = "nftfwd") -> dict[str, Any]:
    return {"map": {"family": "inet", "table": table, "name": name, "elem": elem}}


def test_elements_compare_as_data_and_show_in_nft_syntax() -> None:
    live = [
        {"metainfo": {"version": "1.0.6"}},
        _map("dnat_addr_any4", [[{"concat": ["tcp", 8080]}, "10.0.0.2"]]),
        _map("sources_any4", [[{"concat": ["tcp", 22]}, {"jump": {"target": "allow4_0"}}]]),
        {"set": {"family": "inet", "table": "nftfwd", "name": "nets", "elem": [
            {"prefix": {"addr": "10.0.0.0", "len": 8}}, {"range": [1, 9]}]}},
        _map("dnat_addr_any4", [[{"concat": ["tcp", 1]}, "10.9.9.9"]], table="other"),
    ]  # fmt: skip
    compiled = [
        {"add": _map("dnat_addr_any4", [[{"concat": ["tcp", 8081]}, "10.0.0.2"]])},
        {"add": _map("sources_any4", [[{"concat": ["tcp", 22]}, {"accept": None}]])},
        {"delete": {"table": {"family": "inet", "name": "nftfwd"}}},
    ]
    old = elements_of(read_objects(live), "nftfwd")
    new = elements_of(read_objects(compiled), "nftfwd")
    assert set(old) == {"dnat_addr_any4", "sources_any4", "nets"}
    assert compare_elements(old, old) == []
    changes = compare_elements(old, new)
    assert [(c.change, c.owner, c.element) for c in changes] == [
        ("-", "dnat_addr_any4", "tcp . 8080 : 10.0.0.2"),
        ("+", "dnat_addr_any4", "tcp . 8081 : 10.0.0.2"),
        ("-", "nets", "10.0.0.0/8"),
        ("-", "nets", "1-9"),
        ("+", "sources_any4", "tcp . 22 : accept"),
        ("-", "sources_any4", "tcp . 22 : jump allow4_0"),
    ]


def test_element_changes_are_shown_ten_per_set_then_counted() -> None:
    def snat(address: str) -> str:
        return json.dumps({"concat": [address, 80]})

    changes = [ElementChange("+", "snat4", snat(f"10.0.0.{i}")) for i in range(12)]
    changes.append(ElementChange("-", "snat4", snat("10.0.1.1")))
    lines = element_lines(changes)
    assert lines[0] == "  + snat4 { 10.0.0.0 . 80 }"
    assert len(lines) == 11 and lines[-1] == "  ... snat4: 12 added and 1 removed in all"
    diff = HostDiff("h", "nftfwd", [], [], {}, changes[:1])
    assert diff.changed
    assert format_text(diff, color=False) == (
        "host h, table inet nftfwd: changes\nelements:\n  + snat4 { 10.0.0.0 . 80 }\n"
    )


def _table() -> Table:
    return Table("inet", "nftfwd", "h", (), ())


def test_restore_batch_orders_what_the_kernel_needs_first_and_drops_handles() -> None:
    ident = {"family": "inet", "table": "nftfwd"}
    listing = [
        {"metainfo": {"version": "1.0.6"}},
        {"table": {"family": "inet", "name": "nftfwd", "handle": 7}},
        {"map": {**ident, "name": "m", "handle": 1, "elem": [[1, {"jump": {"target": "c"}}]]}},
        {"chain": {**ident, "name": "pre", "handle": 2, "type": "nat", "hook": "prerouting"}},
        {"rule": {**ident, "chain": "pre", "handle": 4, "expr": [{"accept": None}]}},
        {"chain": {**ident, "name": "c", "handle": 3}},
        {"counter": {**ident, "name": "hits", "handle": 5}},
    ]
    commands = restore_batch(_table(), LiveTable(listing, "table inet nftfwd {\n}\n"))["nftables"]
    assert commands[:3] == [
        {"metainfo": {"json_schema_version": 1}},
        {"add": {"table": {"family": "inet", "name": "nftfwd"}}},
        {"delete": {"table": {"family": "inet", "name": "nftfwd"}}},
    ]
    kinds = [next(iter(c["add"])) for c in commands[3:]]
    assert kinds == ["table", "chain", "chain", "counter", "map", "rule"]
    assert not any("handle" in body for c in commands[3:] for body in c["add"].values())
    assert restore_batch(_table(), LiveTable([], None))["nftables"][1:] == commands[1:3]


def test_batch_file_is_one_command_a_line_and_reads_back() -> None:
    commands = {"nftables": [{"add": {"table": {"family": "inet", "name": "x"}}}, {"a": [1]}]}
    text = batch_file(commands)
    assert json.loads(text) == commands
    assert text.count("\n") == 4


def test_protocols_listed_as_numbers_get_their_names_back_in_elements() -> None:
    listed = [
        {"map": {"name": "m", "type": ["inet_proto", "inet_service"], "map": "ipv4_addr",
                 "elem": [[{"concat": [6, 80]}, "10.0.0.2"], [{"concat": [132, 9]}, "10.0.0.3"]]}},
        {"set": {"name": "p", "type": "inet_proto", "elem": [17, 6]}},
        {"set": {"name": "ports", "type": "inet_service", "elem": [6, 17]}},
        {"rule": {"expr": [{"match": {"right": {"set": [6, 17]}}}]}},
    ]  # fmt: skip
    for obj in listed:
        name_protocols(obj)
    assert listed[0]["map"]["elem"] == [
        [{"concat": ["tcp", 80]}, "10.0.0.2"],
        [{"concat": [132, 9]}, "10.0.0.3"],  # not one nftfwd writes: left as listed
    ]
    assert listed[1]["set"]["elem"] == ["udp", "tcp"]
    assert listed[2]["set"]["elem"] == [6, 17]  # ports, not protocols
    assert listed[3]["rule"]["expr"][0]["match"]["right"]["set"] == [6, 17]


def test_element_changes_are_coloured_by_their_sign_on_a_terminal() -> None:
    changes = [ElementChange(sign, "m", json.dumps(sign)) for sign in ("+", "-")]
    text = format_text(HostDiff("h", "nftfwd", [], [], {}, changes), color=True)
    assert "\033[32m  + m { + }\033[0m" in text and "\033[31m  - m { - }\033[0m" in text
