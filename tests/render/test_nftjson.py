"""The reader of libnftables JSON and the printer of its expressions, on their own: on
what the kernel lists (tests/data/nftjson/, `nft -j list ruleset` captured in a network
namespace: nftfwd's table, a table with interval and concatenated sets and a verdict map,
and iptables-nft's tables with xt matches) and on nftfwd's own batches (golden/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nftfwd.nftjson import (
    Chain,
    Element,
    NamedSet,
    NotNftJson,
    Other,
    Rule,
    Table,
    element_json,
    element_text,
    expr_text,
    read_document,
    read_element,
    read_objects,
    rule_text,
    verdict,
)

REPO = Path(__file__).resolve().parent.parent.parent
DATA = REPO / "tests/data/nftjson"
# (nft version, listing): the same rules listed by each nft the reader must read
LISTINGS = sorted(DATA.glob("kernel-nft-*.json"))


def _listing(path: Path) -> Any:
    return json.loads(path.read_text())


def _named(path: Path, table: str, name: str) -> NamedSet:
    (found,) = (s for s in read_document(_listing(path)).sets if (s.table, s.name) == (table, name))
    return found


def test_both_nft_versions_were_captured() -> None:
    """Debian 12's nft and Debian 13's (tests/data/nftjson/capture.sh, run on each)."""
    assert [p.name for p in LISTINGS] == ["kernel-nft-1.0.6.json", "kernel-nft-1.1.3.json"]


@pytest.mark.parametrize("path", LISTINGS, ids=lambda p: p.stem)
def test_tables_chains_and_rules_as_the_kernel_lists_them(path: Path) -> None:
    document = read_document(_listing(path))
    assert {(t.family, t.name) for t in document.tables} == {
        ("inet", "fleetfwd"),
        ("inet", "extra"),
        ("ip", "filter"),
        ("ip", "nat"),
    }
    chains = {(c.family, c.table, c.name): c for c in document.chains}
    assert chains[("ip", "filter", "FORWARD")] == Chain(
        "ip", "filter", "FORWARD", "filter", "forward", 0, "drop"
    )
    assert chains[("inet", "fleetfwd", "prerouting")] == Chain(
        "inet", "fleetfwd", "prerouting", "nat", "prerouting", -100, "accept"
    )
    # a regular chain: no hook, no type
    assert chains[("inet", "fleetfwd", "allow4_0")].hook is None
    assert chains[("inet", "fleetfwd", "allow4_0")].type == ""
    forward = [r for r in document.rules if (r.table, r.chain) == ("filter", "FORWARD")]
    assert [r.handle is not None for r in forward] == [True, True]
    # iptables-nft's xt match: kept as the expression the kernel lists
    assert {"xt": {"type": "match", "name": "conntrack"}} in forward[0].expr
    assert [m.op for m in forward[1].matches()] == ["=="]
    # iptables' -p tcp: Debian 12's iptables writes meta l4proto, Debian 13's ip protocol
    assert expr_text(forward[1].matches()[0].left) in ("meta l4proto", "ip protocol")
    # the named counter: no type of its own, kept whole
    (counter,) = (o for o in document.objects if isinstance(o, Other))
    assert (counter.kind, counter.body["name"]) == ("counter", "hits")


@pytest.mark.parametrize("path", LISTINGS, ids=lambda p: p.stem)
def test_sets_and_maps_with_typed_elements(path: Path) -> None:
    blocked = _named(path, "extra", "blocked")
    assert (blocked.kind, blocked.key_types, blocked.flags) == (
        "set",
        ("ipv4_addr",),
        ("interval",),
    )
    assert sorted(map(element_text, blocked.elements)) == [
        "10.0.0.0/8",
        "172.16.0.1",
        "192.168.1.1-192.168.1.9",
    ]
    (commented,) = (e for e in blocked.elements if e.comment is not None)
    assert (commented.key, commented.comment) == ("172.16.0.1", "one host")

    pairs = _named(path, "extra", "pairs")
    assert pairs.key_types == ("ipv4_addr", "inet_service")
    assert sorted(map(element_text, pairs.elements)) == ["10.1.0.0/16 . 80-90", "10.2.0.1 . 443"]
    assert sorted(len(e.parts) for e in pairs.elements) == [2, 2]

    svc = _named(path, "extra", "svc")
    assert (svc.kind, svc.data_type) == ("map", "verdict")
    assert sorted(map(element_text, svc.elements)) == ["tcp . 22 : accept", "udp . 53 : drop"]
    assert sorted(verdict(e.data) for e in svc.elements) == [("accept", None), ("drop", None)]

    sources = _named(path, "fleetfwd", "sources_any4")
    assert [verdict(e.data) for e in sources.elements] == [("jump", "allow4_0")]


@pytest.mark.parametrize("path", LISTINGS, ids=lambda p: p.stem)
def test_a_batch_and_the_kernels_listing_of_it_read_alike(path: Path) -> None:
    """golden/fleet-dualstack.edge1.json is what was loaded to make the listing."""
    batch = read_document(json.loads((REPO / "golden/fleet-dualstack.edge1.json").read_text()))
    listed = read_document(_listing(path)).of_table("fleetfwd")

    def elements(document: Any) -> dict[str, set[str]]:
        return {
            s.name: {json.dumps(element_json(e), sort_keys=True) for e in s.elements}
            for s in document.sets
        }

    assert elements(batch) == elements(listed)
    assert {(s.name, s.key_types, s.data_type) for s in batch.sets} == {
        (s.name, s.key_types, s.data_type) for s in listed.sets
    }
    assert [(c.name, c.hook, c.priority) for c in batch.chains] == [
        (c.name, c.hook, c.priority) for c in listed.chains
    ]
    # the kernel lists some expressions otherwise than they were written (it folds
    # `meta nfproto` into what follows), but the same rules in the same chains
    assert [r.chain for r in batch.rules] == [r.chain for r in listed.rules]


def test_elements_of_every_form_and_back() -> None:
    forms: list[tuple[Any, Element]] = [
        ("10.0.0.1", Element("10.0.0.1")),
        ([{"concat": ["tcp", 22]}, 2222], Element({"concat": ["tcp", 22]}, 2222)),
        ({"elem": {"val": 80, "comment": "web"}}, Element(80, None, "web")),
        (
            [{"elem": {"val": {"concat": ["udp", 53]}, "comment": "dns"}}, {"drop": None}],
            Element({"concat": ["udp", 53]}, {"drop": None}, "dns"),
        ),
    ]
    for raw, element in forms:
        assert read_element(raw) == element
        assert element_json(element) == raw
    # a counter or timeout on an element is not part of what it is
    assert read_element({"elem": {"val": 1, "counter": {"packets": 3}}}) == Element(1)


def test_what_the_reader_has_no_type_for_is_kept_or_skipped_never_a_crash() -> None:
    document = read_objects(
        [
            {"metainfo": {"version": "1.1.3"}},
            {"flowtable": {"family": "inet", "table": "t", "name": "ft", "hook": "ingress"}},
            {"add": {"table": {"family": "inet", "name": "t"}}},
            {"delete": {"table": {"family": "inet", "name": "t"}}},
            "not an object",
            {"two": 1, "keys": 2},
            {"rule": "not a body"},
            {"rule": {"family": "inet", "table": "t", "chain": "c", "expr": "junk"}},
            {"set": {"family": "inet", "table": "t", "name": "s", "elem": "junk"}},
            {"chain": {"family": "inet", "table": "t", "name": "c", "prio": "x", "hook": 3}},
        ]
    )
    assert document.objects == (
        Other("flowtable", {"family": "inet", "table": "t", "name": "ft", "hook": "ingress"}),
        Table("inet", "t"),
        Rule("inet", "t", "c", None, ()),
        NamedSet("set", "inet", "t", "s", (), None, (), ()),
        Chain("inet", "t", "c", "", None, 0, "accept"),
    )
    with pytest.raises(NotNftJson):
        read_document({"nft": []})


@pytest.mark.parametrize(
    ("expr", "quote", "text"),
    [
        ({"meta": {"key": "iifname"}}, False, "iifname"),
        ({"meta": {"key": "l4proto"}}, False, "meta l4proto"),
        ({"ct": {"key": "state"}}, False, "ct state"),
        ({"payload": {"protocol": "ip6", "field": "daddr"}}, False, "ip6 daddr"),
        ({"fib": {"result": "type", "flags": ["daddr", "iif"]}}, False, "fib daddr . iif type"),
        ({"set": ["br0", "eth0"]}, True, '{ "br0", "eth0" }'),
        ({"set": [{"prefix": {"addr": "10.0.0.0", "len": 8}}, 22]}, False, "{ 10.0.0.0/8, 22 }"),
        (["established", "related"], False, "established,related"),
        ({"range": [1000, 2000]}, False, "1000-2000"),
        ({"concat": ["fd00::1", "tcp", 443]}, False, "fd00::1 . tcp . 443"),
        ({"jump": {"target": "allow6_1"}}, False, "jump allow6_1"),
        ({"accept": None}, False, "accept"),
        ({"elem": {"val": 53, "comment": "dns"}}, False, "53"),
        ({"&": [{"meta": {"key": "mark"}}, 255]}, False, "&"),  # no text of its own: named
        ("br0", True, '"br0"'),
        (8080, False, "8080"),
    ],
)
def test_the_printer(expr: Any, quote: bool, text: str) -> None:
    assert expr_text(expr, quote) == text


def test_a_rules_expressions_printed() -> None:
    expr = [
        {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth0"}},
        {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                   "right": {"prefix": {"addr": "10.0.0.0", "len": 8}}}},
        {"xt": {"type": "match", "name": "conntrack"}},
        {"counter": {"packets": 0, "bytes": 0}},
        {"jump": {"target": "DOCKER"}},
    ]  # fmt: skip
    assert rule_text(expr) == 'iifname "eth0" ip saddr != 10.0.0.0/8 xt match conntrack jump DOCKER'
