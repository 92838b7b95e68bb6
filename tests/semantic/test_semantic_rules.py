"""semantic on its own: each rule of RULES against tests/data/bad/, and the rules,
value parsers and problem report on models made here.

Every bad case is attributed to what refuses it (the reader, the schema, a value parser,
or the rules that report it), and every rule has a case named for it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TEST_DATA

from nftfwd.errors import MAX_REPORTED, ModelError, NftfwdError, Problem
from nftfwd.errors import Location as Loc
from nftfwd.model import PortRange
from nftfwd.schema import validate_shape
from nftfwd.semantic import RULES, build_model, values
from nftfwd.semantic.rules import HostView, Rule, snat_disagrees
from nftfwd.semantic.tree import Problems, Tree, build_tree
from nftfwd.semantic.values import Refusal
from nftfwd.source import Document, load_file, load_text

BAD = TEST_DATA / "bad"
CASES = sorted(BAD.glob("*.yaml"))


def _views(doc: Document, tree: Tree) -> list[HostView]:
    return [
        HostView(doc, host, ("hosts", host.name), tree.forward_keys) for host in tree.model.hosts
    ]


def _found(rule: Rule, views: list[HostView]) -> list[Problem]:
    return [problem for view in views for problem in rule.check(view)]


def attribution(path: Path) -> tuple[str, ...]:
    """What refuses the model at `path`: ("source",), ("schema",), ("values",), or the
    names of the rules that report a problem in it, as build_model runs them."""
    try:
        doc = load_file(path)
    except NftfwdError:
        return ("source",)
    try:
        validate_shape(doc)
    except NftfwdError:
        return ("schema",)
    problems = Problems()
    tree = build_tree(doc, problems)
    if problems.count:
        return ("values",)
    views = _views(doc, tree)
    local = tuple(r.name for r in RULES if not r.across and _found(r, views))
    if local:
        return local
    return tuple(r.name for r in RULES if r.across and _found(r, views))


ATTRIBUTED = {path.stem: attribution(path) for path in CASES}


def _first_expected(path: Path) -> tuple[int, str]:
    line, _, rest = path.read_text().splitlines()[0].removeprefix("# expect: ").partition(" ")
    return int(line), rest


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_every_bad_case_is_attributed(path: Path) -> None:
    assert ATTRIBUTED[path.stem], f"{path.name}: valid, or refused by no rule of RULES"


def test_every_rule_has_a_bad_case_named_for_it() -> None:
    for rule in RULES:
        cases = [stem for stem, by in ATTRIBUTED.items() if rule.name in by]
        assert cases, f"no case in tests/data/bad/ is refused by {rule.name}"
        named = rule.name.replace("_", "-")
        assert any(stem.startswith(named) for stem in cases), (rule.name, cases)


def test_rules_are_listed_as_their_cases_are() -> None:
    names = [rule.name for rule in RULES]
    assert names == sorted(names)
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(
    "path",
    [p for p in CASES if ATTRIBUTED[p.stem] not in (("source",), ("schema",), ("values",))],
    ids=lambda p: p.stem,
)
def test_the_rule_alone_gives_the_expected_problem(path: Path) -> None:
    """The first expected problem of a rule's case comes from that rule itself."""
    doc = load_file(path)
    validate_shape(doc)
    views = _views(doc, build_tree(doc, Problems()))
    line, message = _first_expected(path)
    found = [p for r in RULES if r.name in ATTRIBUTED[path.stem] for p in _found(r, views)]
    assert any(
        p.location is not None and p.location.line == line and message in f"{p.path}: {p.message}"
        for p in found
    ), (message, found)


# ---- rules on models made here -------------------------------------------------------

HEADER = """\
version: 1
hosts:
  h:
    uplinks: [eth0]
    bridges:
      br0:
        subnet: 10.0.0.0/24
        guests:
"""


def _doc(guests: str) -> Document:
    doc = load_text(HEADER + guests, "m.yaml")
    validate_shape(doc)
    return doc


def _messages(doc: Document) -> list[str]:
    with pytest.raises(ModelError) as caught:
        build_model(doc)
    return [
        f"{p.location.line if p.location else 0} {p.path}: {p.message}"
        for p in caught.value.problems
    ]


def test_snat_disagrees_reports_every_clash_not_only_the_first() -> None:
    forwards = "".join(
        f"              - {{port: {8080 + i}, to: 80, snat: {str(snat).lower()}}}\n"
        for i, snat in enumerate((False, True, False, True))
    )
    doc = _doc("          g:\n            address: 10.0.0.2\n            forwards:\n" + forwards)
    views = _views(doc, build_tree(doc, Problems()))
    found = list(snat_disagrees(views[0]))
    # forwards[1] and [3] disagree with [0]; [2] agrees with [0] but not with [1].
    assert [(p.path.rsplit(".", 1)[1], p.message.split(" like ")[1][:25]) for p in found] == [
        ("forwards[1]", "hosts.h.bridges.br0.guest"),
        ("forwards[2]", "hosts.h.bridges.br0.guest"),
        ("forwards[3]", "hosts.h.bridges.br0.guest"),
    ]
    assert "like hosts.h.bridges.br0.guests.g.forwards[0] (line 12)" in found[0].message
    assert "like hosts.h.bridges.br0.guests.g.forwards[1] (line 13)" in found[1].message
    assert "like hosts.h.bridges.br0.guests.g.forwards[0] (line 12)" in found[2].message


def test_rules_across_entities_wait_for_the_values() -> None:
    """A refused value is reported once, not again as the conflict it seems to make."""
    doc = _doc(
        "          a:\n            address: 10.0.0.2\n            forwards:\n"
        "              - {port: 80}\n"
        "          b:\n            address: 10.0.0.3\n            forwards:\n"
        "              - {port: 80, sources: [10.0.0.1/8]}\n"
    )
    assert _messages(doc) == [
        "16 hosts.h.bridges.br0.guests.b.forwards[0].sources[0]: '10.0.0.1/8' has host bits "
        "set; write the prefix as '10.0.0.0/8'"
    ]


def test_single_entity_rules_and_values_are_reported_together() -> None:
    doc = _doc(
        "          a:\n            address: 10.0.1.2\n            forwards:\n"
        "              - {port: 80-81, to: 90-92, sources: [10.0.0.1/8]}\n"
    )
    assert _messages(doc) == [
        "10 hosts.h.bridges.br0.guests.a.address: 10.0.1.2 is outside the bridge's subnet "
        "10.0.0.0/24; use an address inside it",
        "12 hosts.h.bridges.br0.guests.a.forwards[0].to: 'to' covers 3 ports but 'port' covers "
        "2; give one port (every port of the range goes to it) or a range of 2 ports",
        "12 hosts.h.bridges.br0.guests.a.forwards[0].sources[0]: '10.0.0.1/8' has host bits "
        "set; write the prefix as '10.0.0.0/8'",
    ]


# ---- value parsers and the report ----------------------------------------------------


def test_value_parsers_return_a_value_or_a_refusal() -> None:
    assert values.ports("8000-8010", None) == PortRange(8000, 8010)
    assert values.ports(80, None) == PortRange(80, 80)
    assert values.ports(8080.0, None) == Refusal(
        "port 8080.0 has a decimal point; write it as 8080"
    )
    assert values.ports(80, "0x50") == Refusal(
        "YAML 1.1 reads 0x50 as the hexadecimal number 80, not as written; write 80"
    )
    assert str(values.address("fd00::1", 6)) == "fd00::1"
    assert values.address("fd00::1", 4) == Refusal(
        "'fd00::1' is not an IPv4 address; write an IPv4 address here"
    )
    assert values.bridge_subnet("127.0.0.0/24", 4) == Refusal(
        "127.0.0.0/24 is not a subnet for guests: it overlaps 127.0.0.0/8 (loopback); "
        "use a private unicast range such as 192.168.122.0/24"
    )
    assert values.protos(["udp", "tcp", "udp"]) == ("tcp", "udp")
    assert values.table("fwd") == Refusal(
        "'fwd' is a word nft reserves and cannot name a table; "
        "choose another name, for example 'nftfwd'"
    )


def test_a_port_written_as_80_and_one_as_80_0_are_parsed_apart() -> None:
    """The builder parses each value once; 80 == 80.0 in Python, but only one is a port."""
    doc = _doc(
        "          a:\n            address: 10.0.0.2\n            forwards:\n"
        "              - {port: 80}\n"
        "              - {port: 81, to: 80.0}\n"
    )
    assert _messages(doc) == [
        "13 hosts.h.bridges.br0.guests.a.forwards[1].to: port 80.0 has a decimal point; "
        "write it as 80"
    ]


def test_the_report_keeps_the_first_problems_whatever_order_they_come_in() -> None:
    problems = Problems()
    made = [Problem(Loc("m.yaml", line, 1), "k", "m") for line in range(1000, 0, -1)]
    for problem in made:
        problems.add(problem)
    error = problems.error()
    assert [p.location.line for p in error.problems if p.location] == list(
        range(1, MAX_REPORTED + 1)
    )
    assert error.omitted == 1000 - MAX_REPORTED
