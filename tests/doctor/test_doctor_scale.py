"""doctor on a large host: the same finding as on a small one, for work that does not grow
with the forwards times the rules.

One bridge with 2,000 guests and a forward each, next to an admin's table inet filter
(tests/data/doctor/admin-policy-drop.json) whose forward chain has 200 rules and policy
drop. Every rule weighs addresses or ports, a few name particular guests, one accepts a
block of them. The work is counted, not timed (timings belong to bench/): the addresses
of the rules are parsed once, and the chains are walked once per shape of packet
(doctor/shape.py), so 2,000 forwards cost the judge no more than 1,000.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, ip_address
from typing import Any

import pytest
from conftest import TEST_DATA

from nftfwd.doctor import judge
from nftfwd.doctor.findings import Finding
from nftfwd.doctor.judge import Judge
from nftfwd.doctor.ruleset import analyse_ruleset
from nftfwd.doctor.walk import Walk
from nftfwd.model import Bridge, Forward, Guest, Host, PortRange

DATA = TEST_DATA / "doctor"
FIRST_GUEST = IPv4Address("10.0.0.2")  # guest i is FIRST_GUEST + i, its forward port 10000 + i
ACCEPTED = IPv4Network("10.0.1.0/24")  # rule: ip daddr 10.0.1.0/24 tcp dport 22 accept
ADDRESSES = {"eno1": (ip_address("203.0.113.10"),)}


def host(n: int) -> Host:
    guests = tuple(
        Guest(
            f"g{i}",
            FIRST_GUEST + i,
            None,
            (
                Forward(
                    PortRange(10000 + i, 10000 + i),
                    PortRange(22, 22),
                    ("tcp",),
                    (),
                    None,
                    False,
                    f"hosts.big.bridges.virbr0.guests.g{i}.forwards[0]",
                    None,
                ),
            ),
        )
        for i in range(n)
    )
    bridge = Bridge("virbr0", IPv4Network("10.0.0.0/16"), None, True, guests)
    return Host("big", ("eno1",), (), True, (bridge,))


def _match(left: dict[str, Any], right: Any) -> dict[str, Any]:
    return {"match": {"op": "==", "left": left, "right": right}}


def _payload(protocol: str, field: str) -> dict[str, Any]:
    return {"payload": {"protocol": protocol, "field": field}}


def _rule(handle: int, *expr: dict[str, Any]) -> dict[str, Any]:
    rule = {"family": "inet", "table": "filter", "chain": "forward", "handle": handle}
    return {"rule": {**rule, "expr": [*expr, {"accept": None}]}}


def ruleset() -> dict[str, Any]:
    """admin-policy-drop with 199 more rules in its forward chain (200 in all): none
    accepts a new connection of the guests but those of one block of guests."""
    data: dict[str, Any] = json.loads((DATA / "admin-policy-drop.json").read_text())
    items = data["nftables"]
    rules = []
    for i in range(198):
        handle = 100 + i
        if i % 4 == 0:  # another source
            rules.append(_rule(handle, _match(_payload("ip", "saddr"), f"198.51.100.{i}")))
        elif i % 4 == 1:  # a guest named, but for udp (the guests' forwards are tcp)
            guest = str(FIRST_GUEST + i)
            rules.append(_rule(handle, _match(_payload("ip", "daddr"), guest),
                               _match(_payload("udp", "dport"), 22)))  # fmt: skip
        elif i % 4 == 2:  # some of the host ports, to another network
            ports = {"set": [{"range": [10000, 10000 + i]}, 2222]}
            net = {"prefix": {"addr": "192.0.2.0", "len": 24}}
            rules.append(_rule(handle, _match(_payload("tcp", "dport"), ports),
                               _match(_payload("ip", "daddr"), net)))  # fmt: skip
        else:  # another interface
            rules.append(_rule(handle, _match({"meta": {"key": "iifname"}}, f"wg{i}")))
    block = {"prefix": {"addr": str(ACCEPTED.network_address), "len": ACCEPTED.prefixlen}}
    rules.append(_rule(400, _match(_payload("ip", "daddr"), block),
                       _match(_payload("tcp", "dport"), 22)))  # fmt: skip
    after = next(i for i, item in enumerate(items) if item.get("rule", {}).get("handle") == 7)
    items[after + 1 : after + 1] = rules
    chain = [
        item["rule"]
        for item in items
        if "rule" in item
        and (item["rule"]["table"], item["rule"]["chain"]) == ("filter", "forward")
    ]
    assert len(chain) == 200
    return data


RULESET = ruleset()


def analyse(n: int, first: int = 0) -> list[Finding]:
    """The findings for the forwards first..n-1 of host(n)."""
    h = host(n)
    (bridge,) = h.bridges
    h = replace(h, bridges=(replace(bridge, guests=bridge.guests[first:]),))
    return analyse_ruleset(copy.deepcopy(RULESET), "nftfwd", h, addresses=ADDRESSES)


@contextmanager
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """How often doctor walks a base chain, judges a match afresh, parses an address."""
    counts = {"walks": 0, "judgements": 0}
    run, match = Walk.run, Judge._match

    def counting_run(self: Walk) -> Any:
        counts["walks"] += 1
        return run(self)

    def counting_match(self: Judge, *args: Any) -> Any:
        counts["judgements"] += 1
        return match(self, *args)

    with monkeypatch.context() as patch:
        patch.setattr(Walk, "run", counting_run)
        patch.setattr(Judge, "_match", counting_match)
        judge._parsed.cache_clear()
        yield counts
        counts["parses"] = judge._parsed.cache_info().misses


def test_a_large_host_has_the_finding_of_a_small_one() -> None:
    small, big = analyse(2), analyse(2000)
    assert [(f.id, f.subject) for f in small] == [
        ("foreign-policy-drop", "table inet filter, chain forward, policy drop")
    ]
    assert [(f.id, f.subject, f.fix) for f in big] == [(f.id, f.subject, f.fix) for f in small]
    # The message names three of the dropped flows and counts the rest: the guests'
    # outbound connections, then for each guest outside the accepted block the new
    # connections from eno1 and the hairpin ones.
    outside = sum(1 for i in range(2000) if FIRST_GUEST + i not in ACCEPTED)
    assert outside == 2000 - 256
    assert "; and 2 more;" in small[0].message
    more = 1 + 2 * outside - 3
    assert big[0].message == small[0].message.replace("; and 2 more;", f"; and {more} more;")


def test_guests_that_a_rule_accepts_are_told_apart_from_the_others() -> None:
    """Guests alike for every rule share their walks; the accepted block is not alike."""
    (inside,) = analyse(300, first=254)  # 10.0.1.0 and on: all in the accepted block
    assert "forwarded to" not in inside.message  # only the guests' outbound connections
    assert "new connections from guests on virbr0 (10.0.0.0/16) out through eno1" in inside.message
    assert "more" not in inside.message
    (edge,) = analyse(300, first=250)  # 10.0.0.252-255 outside, then the block
    assert f"; and {1 + 2 * 4 - 3} more;" in edge.message
    assert "forwarded to g250 10.0.0.252 port 22" in edge.message


def test_the_work_does_not_grow_with_the_forwards(monkeypatch: pytest.MonkeyPatch) -> None:
    with counted(monkeypatch) as small:
        analyse(2)
    with counted(monkeypatch) as half:
        analyse(1000)
    with counted(monkeypatch) as full:
        analyse(2000)
    # each address of the ruleset is parsed once, however many flows are judged against it
    assert small["parses"] == half["parses"] == full["parses"]
    # beyond the guests that the rules name, more guests are alike: no more walks
    assert full["walks"] == half["walks"]
    assert full["judgements"] == half["judgements"]
    assert full["walks"] < 2000
