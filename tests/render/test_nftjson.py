"""The reader of libnftables JSON (nftjson) and the one printer (nft_text) of what it
reads, on their own: on what the kernel lists (tests/data/nftjson/, `nft -j list ruleset`
captured in a network namespace: nftfwd's table, a table with interval and concatenated
sets and a verdict map, and iptables-nft's tables with xt matches) and on nftfwd's own
batches (golden/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_DATA

from nftfwd.doctor.listing import rule_texts
from nftfwd.ir import (
    Concat,
    Counter,
    Ct,
    Fib,
    Flags,
    Goto,
    Jump,
    Log,
    Lookup,
    MapOf,
    Match,
    Meta,
    Nat,
    Payload,
    Prefix,
    Range,
    Reject,
    SetOf,
    SetRef,
    Unknown,
    Verdict,
    Vmap,
    Xt,
)
from nftfwd.nft_text import element_text, operand_text, rule_text, statement_text, value_text
from nftfwd.nftjson import (
    Chain,
    Element,
    NamedSet,
    NotNftJson,
    Other,
    Rule,
    Table,
    element_json,
    read_document,
    read_element,
    read_objects,
    read_operand,
    read_statement,
    read_value,
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
    # iptables-nft's xt match: what it tests is only in the text listing
    assert Xt("match", "conntrack") in forward[0].statements
    assert [m.op for m in forward[1].matches()] == ["=="]
    # iptables' -p tcp: Debian 12's iptables writes meta l4proto, Debian 13's ip protocol
    assert forward[1].matches()[0].left in (Meta("l4proto"), Payload("ip", "protocol"))
    assert rule_text(forward[0]) == "xt match conntrack accept"
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
    assert {e.key for e in blocked.elements} == {
        Prefix("10.0.0.0", 8),
        "172.16.0.1",
        Range("192.168.1.1", "192.168.1.9"),
    }

    pairs = _named(path, "extra", "pairs")
    assert pairs.key_types == ("ipv4_addr", "inet_service")
    assert sorted(map(element_text, pairs.elements)) == ["10.1.0.0/16 . 80-90", "10.2.0.1 . 443"]
    assert {e.parts for e in pairs.elements} == {
        (Prefix("10.1.0.0", 16), Range(80, 90)),
        ("10.2.0.1", 443),
    }

    svc = _named(path, "extra", "svc")
    assert (svc.kind, svc.data_type) == ("map", "verdict")
    assert sorted(map(element_text, svc.elements)) == ["tcp . 22 : accept", "udp . 53 : drop"]
    assert {e.data for e in svc.elements} == {Verdict("accept"), Verdict("drop")}

    sources = _named(path, "fleetfwd", "sources_any4")
    assert [e.data for e in sources.elements] == [Jump("allow4_0")]


@pytest.mark.parametrize("path", LISTINGS, ids=lambda p: p.stem)
def test_every_rule_printed_as_the_text_listing_shows_it(path: Path) -> None:
    """The JSON listing's rules, read and printed, are the text listing's (`nft -a list
    ruleset` by the same nft, its counters' values left out as doctor reads it), but for
    iptables-nft's xt matches and targets, whose translation only the text holds."""
    texts = rule_texts(path.with_suffix(".nft").read_text())
    rules = read_document(_listing(path)).rules
    native = [r for r in rules if not any(isinstance(s, Xt) for s in r.statements)]
    assert len(native) == len(rules) - 3
    for rule in native:
        assert rule_text(rule) == texts[(rule.family, rule.table, rule.chain, rule.handle)]


@pytest.mark.parametrize(
    "path", sorted((TEST_DATA / "doctor").glob("*.ruleset.txt")), ids=lambda p: p.name.split(".")[0]
)
def test_doctors_fixtures_rules_printed_as_nft_lists_them(path: Path) -> None:
    """Other tools' rules (libvirt, Docker, incus, an admin's table: doctor's fixtures,
    listed by nft as JSON and as text): each printed as the text shows it, but for
    iptables-nft's xt matches and targets."""
    texts = rule_texts(path.read_text())
    json_path = path.with_name(path.name.replace(".ruleset.txt", ".json"))
    rules = read_document(_listing(json_path)).rules
    native = [r for r in rules if not any(isinstance(s, Xt) for s in r.statements)]
    assert native
    for rule in native:
        assert rule_text(rule) == texts[(rule.family, rule.table, rule.chain, rule.handle)]


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
        ([{"concat": ["tcp", 22]}, 2222], Element(("tcp", 22), 2222)),
        ({"elem": {"val": 80, "comment": "web"}}, Element(80, None, "web")),
        (
            [{"elem": {"val": {"concat": ["udp", 53]}, "comment": "dns"}}, {"drop": None}],
            Element(("udp", 53), Verdict("drop"), "dns"),
        ),
        ({"prefix": {"addr": "10.0.0.0", "len": 8}}, Element(Prefix("10.0.0.0", 8))),
        (
            [{"concat": [{"range": ["10.0.0.1", "10.0.0.9"]}, 80]}, {"jump": {"target": "x"}}],
            Element((Range("10.0.0.1", "10.0.0.9"), 80), Jump("x")),
        ),
        ({"weird": [1]}, Element(Unknown({"weird": [1]}))),
    ]
    for raw, element in forms:
        assert read_element(raw) == element
        assert element_json(element) == raw
    # a counter or timeout on an element is not part of what it is
    assert read_element({"elem": {"val": 1, "counter": {"packets": 3}}}) == Element(1)
    # typed elements compare and hash as values, what the reader has no type for too
    raw = [{"concat": ["tcp", 22]}, {"queue": {"num": 1}}]
    assert len({read_element(raw), read_element(json.loads(json.dumps(raw)))}) == 1


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
    ("expr", "typed", "text"),
    [
        ({"meta": {"key": "iifname"}}, Meta("iifname"), "iifname"),
        ({"meta": {"key": "l4proto"}}, Meta("l4proto"), "meta l4proto"),
        ({"ct": {"key": "state"}}, Ct("state"), "ct state"),
        ({"ct": {"key": "saddr", "dir": "original"}}, Ct("saddr", "original"), "ct original saddr"),
        ({"payload": {"protocol": "ip6", "field": "daddr"}}, Payload("ip6", "daddr"), "ip6 daddr"),
        (
            {"fib": {"result": "type", "flags": ["daddr", "iif"]}},
            Fib(("daddr", "iif"), "type"),
            "fib daddr . iif type",
        ),
        (
            {
                "concat": [
                    {"meta": {"key": "l4proto"}},
                    {"payload": {"protocol": "th", "field": "dport"}},
                ]
            },
            Concat((Meta("l4proto"), Payload("th", "dport"))),
            "meta l4proto . th dport",
        ),
        (
            {"payload": {"base": "nh", "offset": 0, "len": 8}},
            Unknown({"payload": {"base": "nh", "offset": 0, "len": 8}}),
            "payload",
        ),
    ],
)
def test_operands_read_and_printed(expr: Any, typed: Any, text: str) -> None:
    assert read_operand(expr) == typed
    assert operand_text(typed) == text


@pytest.mark.parametrize(
    ("expr", "quote", "typed", "text"),
    [
        ({"set": ["br0", "eth0"]}, True, SetOf(("br0", "eth0")), '{ "br0", "eth0" }'),
        (
            {"set": [{"prefix": {"addr": "10.0.0.0", "len": 8}}, 22]},
            False,
            SetOf((Prefix("10.0.0.0", 8), 22)),
            "{ 10.0.0.0/8, 22 }",
        ),
        (
            ["established", "related"],
            False,
            Flags(("established", "related")),
            "established,related",
        ),
        ({"range": [1000, 2000]}, False, Range(1000, 2000), "1000-2000"),
        (
            {"concat": ["fd00::1", "tcp", 443]},
            False,
            ("fd00::1", "tcp", 443),
            "fd00::1 . tcp . 443",
        ),
        ({"jump": {"target": "allow6_1"}}, False, Jump("allow6_1"), "jump allow6_1"),
        ({"accept": None}, False, Verdict("accept"), "accept"),
        ({"elem": {"val": 53, "comment": "dns"}}, False, 53, "53"),
        ("@blocked", False, SetRef("blocked"), "@blocked"),
        (
            {"set": [[{"concat": ["tcp", 22]}, {"accept": None}], [53, {"drop": None}]]},
            False,
            MapOf(((("tcp", 22), Verdict("accept")), (53, Verdict("drop")))),
            "{ tcp . 22 : accept, 53 : drop }",
        ),
        # no type of its own: kept, and named as nft names the expression
        (
            {"&": [{"meta": {"key": "mark"}}, 255]},
            False,
            Unknown({"&": [{"meta": {"key": "mark"}}, 255]}),
            "&",
        ),
        ({"meta": {"key": "mark"}}, False, Meta("mark"), "meta mark"),
        ("br0", True, "br0", '"br0"'),
        (8080, False, 8080, "8080"),
        (True, False, Unknown(True), "True"),
    ],
)
def test_values_read_and_printed(expr: Any, quote: bool, typed: Any, text: str) -> None:
    assert read_value(expr) == typed
    assert value_text(typed, quote) == text


@pytest.mark.parametrize(
    ("expr", "typed", "text"),
    [
        ({"counter": {"packets": 3, "bytes": 180}}, Counter(), ""),
        (
            {"xt": {"type": "target", "name": "MASQUERADE"}},
            Xt("target", "MASQUERADE"),
            "xt target MASQUERADE",
        ),
        ({"log": {"prefix": "dropped: "}}, Log("dropped: "), 'log prefix "dropped: "'),
        ({"log": None}, Log(), "log"),
        (
            {"reject": {"type": "icmpx", "expr": "admin-prohibited"}},
            Reject("icmpx", "admin-prohibited"),
            "reject with icmpx admin-prohibited",
        ),
        (
            {"reject": {"type": "icmp", "expr": "port-unreachable"}},
            Reject("icmp", "port-unreachable"),
            "reject",
        ),
        ({"reject": {"type": "tcp reset"}}, Reject("tcp reset"), "reject with tcp reset"),
        ({"reject": None}, Reject(), "reject"),
        ({"masquerade": None}, Nat("masquerade", None, None, None), "masquerade"),
        (
            {"dnat": {"family": "ip", "addr": "10.0.0.2", "port": 22}},
            Nat("dnat", "ip", "10.0.0.2", 22),
            "dnat ip to 10.0.0.2:22",
        ),
        (
            {"vmap": {"key": {"meta": {"key": "iifname"}}, "data": "@ifs"}},
            Vmap(Lookup(Meta("iifname"), SetRef("ifs"))),
            "iifname vmap @ifs",
        ),
        ({"goto": {"target": "x"}}, Goto("x"), "goto x"),
        ({"queue": {"num": 1}}, Unknown({"queue": {"num": 1}}), "queue"),
        ("not a statement", Unknown("not a statement"), ""),
    ],
)
def test_statements_read_and_printed(expr: Any, typed: Any, text: str) -> None:
    assert read_statement(expr) == typed
    assert statement_text(typed) == text


def test_a_rules_expressions_printed() -> None:
    expr = [
        {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth0"}},
        {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                   "right": {"prefix": {"addr": "10.0.0.0", "len": 8}}}},
        {"xt": {"type": "match", "name": "conntrack"}},
        {"counter": {"packets": 0, "bytes": 0}},
        {"jump": {"target": "DOCKER"}},
    ]  # fmt: skip
    (rule,) = read_objects(
        [{"rule": {"family": "ip", "table": "filter", "chain": "FORWARD", "expr": expr}}]
    ).rules
    assert rule.statements[:2] == (
        Match(Meta("iifname"), "eth0"),
        Match(Payload("ip", "saddr"), Prefix("10.0.0.0", 8), "!="),
    )
    assert rule_text(rule) == 'iifname "eth0" ip saddr != 10.0.0.0/8 xt match conntrack jump DOCKER'
