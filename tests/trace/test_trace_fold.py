"""trace's pure stages on real captured output: `nft -a monitor trace` (nft 1.0.6) of the
cases of tests/trace/test_trace_kernel.py, with the chains (`nft -j list chains`) of the
host namespace at that moment (tests/data/trace/). The events are read, folded into the
path, and the end is the one the kernel showed; the trace table and its plan are pure too.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import SCENARIOS, TEST_DATA

from nftfwd.compiler import load_model
from nftfwd.doctor.findings import Finding
from nftfwd.errors import NftfwdError
from nftfwd.nftjson import Chain, read_document
from nftfwd.trace_events import parse_event, parse_events
from nftfwd.trace_path import Trace, base_chains, fold
from nftfwd.trace_plan import find_target, owner_pid, trace_chains, trace_script
from nftfwd.trace_report import Report, format_json, format_text, matching_findings

DATA = TEST_DATA / "trace"
SEED004 = SCENARIOS / "seed004-ssh-2222.yaml"
SOURCES = TEST_DATA / "e2e" / "sources.yaml"
TRACE_TABLE = ("inet", "nftfwd_trace")


def listed_chains(case: str) -> dict[tuple[str, str, str], Chain]:
    listing = json.loads((DATA / f"{case}.chains.json").read_text())
    return base_chains(read_document(listing).chains)


def folded(case: str, guest: str = "192.168.122.133") -> Trace:
    events = parse_events((DATA / f"{case}.monitor").read_text().splitlines())
    chains = {**listed_chains(case), **trace_chains()}
    return fold(events, trace_table=TRACE_TABLE, own_table="nftfwd", chains=chains,
                guest_address=guest)  # fmt: skip


def report(case: str, model: Path = SEED004, host: str = "localhost", guest: str = "") -> Report:
    chosen = load_model(model).host(host)
    target = find_target(chosen, 2222, "tcp", None, None)
    trace = folded(case, guest or str(target.first.target))
    return Report(host, "nftfwd", target, trace, 5.0, ())


def test_event_lines_are_read_into_typed_events() -> None:
    rule = parse_event(
        'trace id e6a17e81 ip filter LIBVIRT_FWI rule oifname "virbr0" counter packets 3 '
        "bytes 180 reject # handle 15 (verdict drop)"
    )
    assert rule is not None
    assert (rule.trace_id, rule.family, rule.table, rule.chain, rule.kind) == (
        "e6a17e81", "ip", "filter", "LIBVIRT_FWI", "rule"
    )  # fmt: skip
    assert (rule.rule, rule.handle, rule.verdict) == ('oifname "virbr0" counter reject', 15, "drop")
    policy = parse_event("trace id 1479f533 ip filter FORWARD policy drop ")
    assert policy is not None and (policy.kind, policy.verdict) == ("policy", "drop")
    unknown = parse_event("trace id 1 inet t c unknown rule handle 4 (verdict accept)")
    assert unknown is not None and (unknown.rule, unknown.handle, unknown.verdict) == (
        None, 4, "accept"
    )  # fmt: skip
    packet = parse_event(
        'trace id a inet nftfwd_trace pre packet: iif "eno1" ether saddr d6:a5:a9:f8:02:f5 '
        "ip saddr 203.0.113.100 ip daddr 203.0.113.1 ip protocol tcp tcp sport 51208 "
        "tcp dport 2222 tcp flags == syn tcp window 64240 "
    )
    assert packet is not None and packet.packet is not None
    seen = packet.packet
    assert (seen.iif, seen.saddr, seen.daddr, seen.proto, seen.sport, seen.dport, seen.flags) == (
        "eno1", "203.0.113.100", "203.0.113.1", "tcp", 51208, 2222, "syn"
    )  # fmt: skip
    # what `nft monitor` prints besides trace events is no event
    assert parse_event("add chain inet nftfwd_trace ready0 # handle 5") is None
    assert parse_event("# new generation 3 by process 24090 (nft)") is None


@pytest.mark.parametrize("code", ["port-unreachable", "3"])
def test_an_unreachable_code_reads_by_name_as_nft_1_0_6_prints_it(code: str) -> None:
    """nft 1.1.3 prints the number of the code, 1.0.6 its name; a trace says the name."""
    event = parse_event(
        'trace id 8dee1c4b ip filter OUTPUT packet: oif "eno1" ip saddr 203.0.113.1 '
        "ip daddr 203.0.113.100 ip protocol icmp icmp type destination-unreachable "
        f"icmp code {code} icmp id 0 icmp sequence 0"
    )
    assert event is not None and event.packet is not None
    assert event.packet.icmp == "destination-unreachable port-unreachable"


def test_base_chains_with_their_hooks() -> None:
    chains = listed_chains("libvirt-iptables")
    forward = chains[("ip", "filter", "FORWARD")]
    assert (forward.hook, forward.priority, forward.policy) == ("forward", 0, "accept")
    assert chains[("inet", "nftfwd", "prerouting")].priority == -100
    assert ("ip", "filter", "LIBVIRT_FWI") not in chains  # a chain jumped to, not a base chain
    assert chains[("ip", "mangle", "PREROUTING")].priority == -150


def test_healthy_forward_is_delivered_through_nftfwd_dnat() -> None:
    trace = folded("healthy")
    assert (trace.result, trace.exit_code, trace.route) == ("delivered", 0, "virbr0")
    assert trace.dnat is not None and (trace.dnat.address, trace.dnat.port) == (
        "192.168.122.133", 22
    )  # fmt: skip
    assert trace.dnat.step is not None and trace.dnat.step.where == "inet nftfwd prerouting"
    first = trace.paths[0]
    assert [(s.hook, s.chain, s.verdict) for s in first.steps] == [
        ("prerouting", "prerouting", "accept"),
        ("forward", "forward", "accept"),
        ("postrouting", "postrouting", "accept"),
    ]
    assert trace.reply is not None and trace.reply.packet.saddr == "192.168.122.133"
    # the guest's reply changes trace id on its way (bridge, veth): still its own path
    assert [(s.hook, s.rule) for s in trace.reply.steps] == [
        ("forward", "ct state established,related accept")
    ]


def test_libvirt_reject_is_named_with_its_rule_and_handle() -> None:
    trace = folded("libvirt-iptables")
    assert (trace.result, trace.exit_code) == ("stopped", 1)
    assert trace.stop is not None and trace.stop.rejects
    assert (trace.stop.where, trace.stop.rule, trace.stop.handle) == (
        "ip filter LIBVIRT_FWI", 'oifname "virbr0" counter reject', 15
    )  # fmt: skip
    assert trace.stop.hook == "forward"  # reached by a jump from ip filter FORWARD
    text = format_text(report("libvirt-iptables"))
    assert (
        'stopped: rejected by ip filter LIBVIRT_FWI, rule oifname "virbr0" counter reject '
        "(handle 15).\n" in text
    )
    # the host's ICMP error about it is part of the connection, and shown
    assert "reply 203.0.113.1 -> 203.0.113.100 (icmp)" in text


def test_docker_policy_drop_names_the_chain_and_its_policy() -> None:
    trace = folded("docker")
    assert trace.stop is not None and (trace.stop.where, trace.stop.policy) == (
        "ip filter FORWARD", True
    )  # fmt: skip
    assert "stopped: dropped by ip filter FORWARD, policy drop.\n" in format_text(report("docker"))


def test_admin_drop_rule_names_its_handle() -> None:
    trace = folded("admin-drop")
    assert trace.stop is not None
    assert (trace.stop.where, trace.stop.rule, trace.stop.handle) == (
        "inet filter forward", "tcp dport 22 drop", 3
    )  # fmt: skip


def test_client_outside_sources_is_left_without_dnat_by_nftfwd() -> None:
    trace = folded("sources", guest="192.168.50.10")
    assert (trace.result, trace.dnat, trace.exit_code) == ("stopped", None, 1)
    assert trace.own_no_dnat is not None
    assert (trace.own_no_dnat.where, trace.own_no_dnat.rule) == (
        "inet nftfwd allow4_1", "ip saddr != 198.51.100.0/24 accept"
    )  # fmt: skip
    text = format_text(report("sources", SOURCES, "e2e"))
    assert "stopped: nftfwd's own rules leave it without DNAT" in text
    assert "the forward is closed to this client" in text


def test_hairpin_from_the_host_is_dnatted_in_output() -> None:
    trace = folded("probe")
    assert (trace.result, trace.route) == ("delivered", "virbr0")
    assert trace.paths[0].hook == "output"
    assert trace.dnat is not None and trace.dnat.step is not None
    assert trace.dnat.step.where == "inet nftfwd output"


def test_nothing_and_no_reply() -> None:
    assert fold([], trace_table=TRACE_TABLE, own_table="nftfwd", chains={}).exit_code == 4
    # the healthy trace without the guest's answer: DNATed, forwarded, no reply
    lines = (DATA / "healthy.monitor").read_text().splitlines()
    events = [e for e in parse_events(lines) if e.packet is None or e.packet.iif != "virbr0"]
    events = events[: next(i for i, e in enumerate(events) if e.chain == "postrouting") + 2]
    chains = {**listed_chains("healthy"), **trace_chains()}
    trace = fold(events, trace_table=TRACE_TABLE, own_table="nftfwd", chains=chains,
                 guest_address="192.168.122.133")  # fmt: skip
    assert (trace.result, trace.exit_code) == ("no-reply", 4)
    finding = Finding("rp-filter-strict", "uplink eno1", "m", "f", "error")
    other = Finding("flush-ruleset-on-boot", "/etc/nftables.conf", "m", "f", "warning")
    assert matching_findings(trace, [finding, other]) == (finding,)


def test_doctor_finding_of_the_stopping_chain_is_matched() -> None:
    trace = folded("libvirt-iptables")
    hit = Finding("foreign-chain-rejects", "table ip filter, chain LIBVIRT_FWI, rule 2 (handle 15)",
                  "m", "f", "error")  # fmt: skip
    miss = Finding("foreign-policy-drop", "table ip filter, chain FORWARD, policy drop", "m", "f",
                   "error")  # fmt: skip
    assert matching_findings(trace, [miss, hit]) == (hit,)


def test_json_document() -> None:
    document = json.loads(format_json(report("libvirt-iptables")))
    assert document["format"] == 1
    assert (document["result"], document["exit_code"]) == ("stopped", 1)
    assert document["stopped_by"]["chain"] == "LIBVIRT_FWI"
    assert document["stopped_by"]["handle"] == 15
    assert document["dnat"]["address"] == "192.168.122.133"
    assert document["forward"] == {"proto": "tcp", "port": 2222, "guest": "centos",
                                   "address": "192.168.122.133", "guest_port": 22}  # fmt: skip
    assert [s["chain"] for s in document["paths"][0]["steps"]][-1] == "LIBVIRT_FWI"


def test_text_from_other_tables_cannot_rewrite_the_terminal() -> None:
    """A foreign rule's text (its comment, say) may hold control characters."""
    plain = report("libvirt-iptables")
    path = plain.trace.paths[0]
    step = replace(path.steps[-1], rule='oifname "virbr0" comment "\x1b[2Jgone" reject')
    hostile = replace(plain, trace=replace(plain.trace, paths=(replace(path, steps=(step,)),)))
    text = format_text(hostile)
    assert "\x1b" not in text and "\\x1b[2Jgone" in text
    assert text.endswith("\n") and "\n\n" not in text


def test_a_port_that_is_no_forward_is_refused() -> None:
    host = load_model(SEED004).host("localhost")
    with pytest.raises(NftfwdError, match=r"tcp port 2223 is not a forward of host localhost"):
        find_target(host, 2223, "tcp", None, None)
    with pytest.raises(NftfwdError, match=r"udp port 2222 is not a forward"):
        find_target(host, 2222, "udp", None, None)
    with pytest.raises(NftfwdError, match=r"not a forward of host localhost in IPv6"):
        find_target(host, 2222, "tcp", "ip6", None)
    with pytest.raises(NftfwdError, match=r"--from nope: not an IP address"):
        find_target(host, 2222, "tcp", None, "nope")


def test_trace_table_marks_new_connections_after_conntrack_before_nat() -> None:
    host = load_model(SEED004).host("localhost")
    script = trace_script(find_target(host, 2222, "tcp", None, "198.51.100.7"), 4242)
    assert "type filter hook prerouting priority -150;" in script
    assert "type filter hook output priority -150;" in script
    assert (
        "ct state new ip saddr 198.51.100.7 meta nfproto ipv4 meta l4proto tcp th dport 2222 "
        "fib daddr type local add @conn { ct id } meta nftrace set 1" in script
    )
    assert "ct id @conn meta nftrace set 1" in script  # both directions, the ICMP errors too
    assert script.startswith(
        'create table inet nftfwd_trace { comment "nftfwd trace, pid 4242"; }\n'
    )  # `create`: a second trace started at once fails instead of merging into it
    listed = 'table inet nftfwd_trace {\n\tcomment "nftfwd trace, pid 4242"\n\tset conn {\n'
    assert owner_pid(listed) == 4242


def test_a_drop_before_nat_is_named_not_blamed_on_nftfwd() -> None:
    first = (DATA / "admin-drop.monitor").read_text().splitlines()[0]  # the trace table's
    trace_id = first.split()[2]
    lines = [
        first,
        f'trace id {trace_id} ip early PREROUTING packet: iif "eno1" ip saddr 203.0.113.100 '
        "ip daddr 203.0.113.1 tcp sport 40000 tcp dport 2222 tcp flags == syn",
        f"trace id {trace_id} ip early PREROUTING rule tcp dport 2222 drop # handle 4 "
        "(verdict drop)",
    ]
    early = Chain("ip", "early", "PREROUTING", "filter", "prerouting", -120, "accept")
    chains = {**trace_chains(), ("ip", "early", "PREROUTING"): early}
    trace = fold(parse_events(lines), trace_table=TRACE_TABLE, own_table="nftfwd",
                 chains=chains)  # fmt: skip
    assert (trace.result, trace.dnat, trace.own_no_dnat) == ("stopped", None, None)
    assert trace.stop is not None and (trace.stop.where, trace.stop.handle) == (
        "ip early PREROUTING", 4
    )  # fmt: skip
