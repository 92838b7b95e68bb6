"""doctor's reading of other tables, on rulesets captured from a real kernel.

The fixtures in tests/data/doctor/ come from tests/data/doctor/make_fixtures.sh: the
shapes of libvirt's, Docker's and an admin's rules loaded next to nftfwd's own table
(golden/seed004-ssh-2222.localhost.nft) in a throwaway namespace, then listed.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_address, ip_network
from typing import Any

import pytest
from conftest import TEST_DATA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nftfwd.doctor.findings import Finding
from nftfwd.doctor.listing import rule_texts, xt_conditions
from nftfwd.doctor.ruleset import analyse_ruleset
from nftfwd.doctor.run import exit_code, format_findings
from nftfwd.errors import NftfwdError
from nftfwd.ir import Ct, Fib, Match, Payload, Range, SetOf
from nftfwd.libvirt import open_mode_steps
from nftfwd.model import Bridge, Forward, Guest, Host, PortRange

DATA = TEST_DATA / "doctor"
ADDRESSES: dict[str, tuple[IPv4Address | IPv6Address, ...]] = {
    "lo": (ip_address("127.0.0.1"),),
    "eno1": (ip_address("203.0.113.10"),),
    "virbr0": (ip_address("192.168.122.1"),),
}
PATH = "hosts.localhost.bridges.virbr0.guests.centos.forwards[0]"


def forward(port: int = 2222, to: int = 22, **changes: Any) -> Forward:
    fw = Forward(PortRange(port, port), PortRange(to, to), ("tcp",), (), None, False, PATH, None)
    return replace(fw, **changes)


def seed004(*forwards: Forward, hairpin: bool = True, v6: bool = False) -> Host:
    """scenarios/seed004-ssh-2222.yaml: eno1, virbr0 192.168.122.0/24, centos .133 2222->22."""
    guest = Guest(
        "centos",
        ip_address("192.168.122.133"),  # type: ignore[arg-type]
        ip_address("fd00:122::133") if v6 else None,  # type: ignore[arg-type]
        forwards or (forward(),),
    )
    bridge = Bridge(
        "virbr0",
        ip_network("192.168.122.0/24"),  # type: ignore[arg-type]
        ip_network("fd00:122::/64") if v6 else None,  # type: ignore[arg-type]
        True,
        (guest,),
    )
    return Host("localhost", ("eno1",), (), hairpin, (bridge,))


def fixture(name: str) -> tuple[dict[str, Any], str]:
    ruleset = json.loads((DATA / f"{name}.json").read_text())
    return ruleset, (DATA / f"{name}.ruleset.txt").read_text()


def analyse(name: str, host: Host | None = None, *, text: bool = True, **kw: Any) -> list[Finding]:
    ruleset, listing = fixture(name)
    return analyse_ruleset(
        ruleset,
        "nftfwd",
        host or seed004(),
        ruleset_text=listing if text else None,
        addresses=ADDRESSES,
        **kw,
    )


def ids(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(f.id, f.subject) for f in findings]


def commands(finding: Finding) -> list[str]:
    return [line for line in finding.fix.splitlines() if not line.startswith("#")]


# --- libvirt ----------------------------------------------------------------------------


def test_libvirt_iptables_reject_is_one_finding_with_the_open_mode_fix() -> None:
    found = analyse("libvirt-iptables", libvirt_networks={"virbr0": "default"})
    assert ids(found) == [
        ("foreign-chain-rejects", "table ip filter, chain LIBVIRT_FWI, rule 2 (handle 15)")
    ]
    (f,) = found
    assert f.message.startswith('Rule `oifname "virbr0" reject` (base chain FORWARD, ')
    assert " rejects new connections from eno1 to tcp port 2222" in f.message
    assert "centos 192.168.122.133 port 22" in f.message
    assert "libvirt's NAT mode for virbr0" in f.message
    assert "<forward mode='open'/>" in f.fix
    assert commands(f) == open_mode_steps("default")[:4]
    assert "# or interactively: virsh net-edit default, " in f.fix


def test_libvirt_iptables_without_the_text_listing_is_only_a_maybe() -> None:
    """JSON shows `xt match conntrack` without its states: the accept before the reject
    may or may not take the packets, so the reject is reported as "may"."""
    found = analyse("libvirt-iptables", text=False)
    assert ids(found) == [
        ("foreign-chain-rejects", "table ip filter, chain LIBVIRT_FWI, rule 2 (handle 15)")
    ]
    assert " may reject " in found[0].message
    assert "xt target REJECT" in found[0].message
    assert "NETWORK" in commands(found[0])[0]  # the network's name is not known here


def test_libvirt_nftables_reject_is_one_finding() -> None:
    found = analyse("libvirt-nftables")
    assert ids(found) == [
        ("foreign-chain-rejects", "table ip libvirt_network, chain guest_input, rule 2 (handle 10)")
    ]
    assert found[0].message.startswith('Rule `oif "virbr0" reject` (base chain forward, ')
    assert "<forward mode='open'/>" in found[0].fix


@pytest.mark.parametrize(
    ("name", "subject"),
    [
        ("libvirt-iptables", "table ip nat, chain LIBVIRT_PRT, rule 5 (handle 11)"),
        ("libvirt-nftables", "table ip libvirt_network, chain guest_nat, rule 5 (handle 14)"),
    ],
)
def test_libvirt_nat_mode_without_forwards_is_reported_as_nat_network(
    name: str, subject: str
) -> None:
    host = seed004()
    bridge = replace(host.bridges[0], guests=())
    found = analyse(name, replace(host, bridges=(bridge,)))
    assert ids(found) == [("libvirt-nat-network", subject)]
    assert found[0].severity == "warning"  # no forward fails: its rejects would be errors
    assert "in NAT mode" in found[0].message
    assert "<forward mode='open'/>" in found[0].fix


# --- Docker -------------------------------------------------------------------------------

DOCKER_FIX = [
    "iptables -I DOCKER-USER -i eno1 -o virbr0 -d 192.168.122.0/24 -m conntrack --ctstate "
    "RELATED,ESTABLISHED -j ACCEPT",
    "iptables -I DOCKER-USER -i eno1 -o virbr0 -m conntrack --ctstate DNAT -j ACCEPT",
    "iptables -I DOCKER-USER -i virbr0 -o eno1 -m conntrack --ctstate DNAT -j ACCEPT",
    "iptables -I DOCKER-USER -i virbr0 -o eno1 -s 192.168.122.0/24 -j ACCEPT",
    "iptables -I DOCKER-USER -i virbr0 -o virbr0 -m conntrack --ctstate DNAT -j ACCEPT",
]


def test_docker_forward_policy_drop_and_its_docker_user_fix() -> None:
    found = analyse("docker")
    assert ids(found) == [("foreign-policy-drop", "table ip filter, chain FORWARD, policy drop")]
    assert found[0].message.startswith("The drop policy of base chain FORWARD (hook forward, ")
    assert commands(found[0]) == DOCKER_FIX  # make_fixtures.sh runs these for docker-fixed


def test_docker_after_the_fix_is_healthy() -> None:
    assert analyse("docker-fixed") == []


def test_docker_with_br_netfilter_also_drops_traffic_between_guests() -> None:
    (f,) = analyse("docker", bridged=("ip",))
    assert f.id == "foreign-policy-drop"
    assert "iptables -I DOCKER-USER -i virbr0 -o virbr0 -j ACCEPT" in commands(f)
    # the accept of everything virbr0 -> virbr0 covers the DNAT-only variant
    assert DOCKER_FIX[-1] not in commands(f)


def test_docker_published_port_elsewhere_is_no_conflict() -> None:
    assert analyse("docker-fixed", seed004(forward(port=8081))) == []
    found = analyse("docker-fixed", seed004(forward(port=8080)))
    assert ids(found) == [("dnat-conflict", "table ip nat, chain DOCKER, rule 2 (handle 10)")]
    assert "docker ps --filter publish=8080" in found[0].fix


# --- an admin's own tables --------------------------------------------------------------

ADMIN_FIX = [
    'nft \'insert rule inet filter forward iifname "eno1" oifname "virbr0" ct status dnat accept\'',
    'nft \'insert rule inet filter forward iifname "virbr0" oifname "eno1" '
    "ip saddr 192.168.122.0/24 accept'",
    'nft \'insert rule inet filter forward iifname "virbr0" oifname "virbr0" '
    "ct status dnat accept'",
]


def test_admin_policy_drop_names_the_chain_and_the_rules_to_insert() -> None:
    found = analyse("admin-policy-drop")
    assert ids(found) == [("foreign-policy-drop", "table inet filter, chain forward, policy drop")]
    assert commands(found[0]) == ADMIN_FIX  # make_fixtures.sh runs these for -fixed
    assert "new connections from eno1 to tcp port 2222" in found[0].message
    assert "replies" not in found[0].message  # ct state established,related accept


def test_a_table_with_flags_owner_gets_no_nft_commands_it_would_refuse() -> None:
    """firewalld >= 2.0 owns its table: the kernel refuses nft's changes to it, so the fix
    names what its owner must add, and nothing to run."""
    ruleset, listing = fixture("admin-policy-drop")
    owned = "table inet filter { # handle 1 progname firewalld\n\tflags owner\n"
    listing = listing.replace("table inet filter { # handle 1\n", owned, 1)
    (found,) = analyse_ruleset(ruleset, "nftfwd", seed004(), ruleset_text=listing,
                               addresses=ADDRESSES)  # fmt: skip
    assert (found.id, found.subject) == ids(analyse("admin-policy-drop"))[0]
    assert commands(found) == []
    assert "belongs to the program that made it (flags owner)" in found.fix
    assert [line.removeprefix("#   ") for line in found.fix.splitlines()[2:]] == [
        command.removeprefix("nft '").removesuffix("'") for command in ADMIN_FIX
    ]


def test_admin_after_the_fix_is_healthy() -> None:
    assert analyse("admin-policy-drop-fixed") == []


def test_admin_fix_without_br_netfilter_accept_is_a_br_netfilter_finding() -> None:
    found = analyse("admin-policy-drop-fixed", bridged=("ip",))
    assert ids(found) == [("br-netfilter", "table inet filter, chain forward, policy drop")]
    assert commands(found[0])[0] == (
        'nft \'insert rule inet filter forward iifname "virbr0" oifname "virbr0" accept\''
    )
    assert "bridge-nf-call-iptables=0" in found[0].fix


def test_admin_policy_drop_dual_stack_names_both_families() -> None:
    found = analyse("admin-policy-drop", seed004(v6=True))
    assert ids(found) == [("foreign-policy-drop", "table inet filter, chain forward, policy drop")]
    assert (
        'nft \'insert rule inet filter forward iifname "virbr0" oifname "eno1" '
        "ip6 saddr fd00:122::/64 accept'"
    ) in commands(found[0])


def test_without_hairpin_no_hairpin_rule_is_asked_for() -> None:
    (f,) = analyse("admin-policy-drop", seed004(hairpin=False))
    assert commands(f) == ADMIN_FIX[:2]


def test_ipv4_only_tables_do_not_judge_ipv6_traffic() -> None:
    host = seed004(v6=True)
    assert ids(analyse("libvirt-iptables", host)) == ids(analyse("libvirt-iptables"))


@pytest.mark.parametrize("bridged", [(), ("ip", "ip6")])
def test_healthy_host_has_no_findings(bridged: tuple[str, ...]) -> None:
    assert analyse("healthy", seed004(v6=True), bridged=bridged) == []


def test_missing_own_table_is_a_finding() -> None:
    ruleset, listing = fixture("healthy")
    items = [
        i
        for i in ruleset["nftables"]
        if (next(iter(i.values())).get("family"), next(iter(i.values())).get("table"))
        != ("inet", "nftfwd")
        and i.get("table", {}).get("name") != "nftfwd"
    ]
    found = analyse_ruleset({"nftables": items}, "nftfwd", seed004(), ruleset_text=listing)
    assert ids(found) == [("table-not-loaded", "table inet nftfwd")]
    assert commands(found[0]) == ["nftfwd load --atomic"]


# --- other tables' NAT --------------------------------------------------------------------


def test_dnat_of_the_same_port_in_another_table() -> None:
    found = analyse("dnat-conflict")
    assert ids(found) == [
        ("dnat-conflict", "table inet incus, chain prert.incus, rule 1 (handle 3)")
    ]
    assert "also DNATs tcp port 2222 of forward " + PATH in found[0].message
    assert "which one takes them is undefined" in found[0].message
    assert commands(found[0]) == ["nft delete rule inet incus prert.incus handle 3"]


def test_dnat_through_a_map_is_found_by_its_keys() -> None:
    found = analyse("dnat-conflict", seed004(forward(port=2223)))
    assert ids(found) == [
        ("dnat-conflict", "table inet incus, chain prert.incus, rule 2 (handle 5)")
    ]
    assert analyse("dnat-conflict", seed004(forward(port=2224))) == []


def test_dnat_conflict_only_for_the_protocols_forwarded() -> None:
    assert analyse("dnat-conflict", seed004(forward(protos=("udp",)))) == []


def test_foreign_masquerade_only_matters_where_the_model_says_no_masquerade() -> None:
    host = seed004()
    subnet = IPv4Network("10.1.1.0/24")
    bridge = replace(host.bridges[0], subnet=subnet, guests=())
    assert analyse("dnat-conflict", replace(host, bridges=(bridge,))) == []
    bridge = replace(bridge, masquerade=False)
    found = analyse("dnat-conflict", replace(host, bridges=(bridge,)))
    assert ids(found) == [
        ("foreign-masquerade", "table inet incus, chain pstrt.incusbr0, rule 1 (handle 6)")
    ]
    assert found[0].severity == "warning"  # the forwards work; outbound is not as modelled


# --- reading the text listing -------------------------------------------------------------


def test_rule_texts_are_keyed_by_table_chain_and_handle() -> None:
    texts = rule_texts(fixture("libvirt-iptables")[1])
    assert texts[("ip", "filter", "LIBVIRT_FWI", 14)] == (
        'oifname "virbr0" ip daddr 192.168.122.0/24 ct state related,established accept'
    )
    assert texts[("ip", "filter", "FORWARD", 10)] == "jump LIBVIRT_FWX"


def test_xt_conditions_translate_what_nft_prints() -> None:
    """Into what nftjson reads a rule's matches as (the IR's types)."""
    assert xt_conditions("conntrack", "ct state related,established accept") == [
        Match(Ct("state"), SetOf(("related", "established")))
    ]
    assert xt_conditions("conntrack", "ct state ! new accept") == [Match(Ct("state"), "new", "!=")]
    assert xt_conditions("addrtype", "fib daddr type local jump DOCKER") == [
        Match(Fib(("daddr",), "type"), "local")
    ]
    assert xt_conditions("multiport", "tcp dport { 80, 443 } accept") == [
        Match(Payload("tcp", "dport"), SetOf((80, 443)))
    ]
    assert xt_conditions("multiport", "tcp dport 8000-8010 accept") == [
        Match(Payload("tcp", "dport"), Range(8000, 8010))
    ]
    assert xt_conditions("comment", "accept") == []
    assert xt_conditions("physdev", "xt match physdev accept") is None
    assert xt_conditions("conntrack", "ct original ip saddr 10.0.0.1 accept") is None


# --- robustness and output ----------------------------------------------------------------


def test_not_a_ruleset_is_an_error() -> None:
    with pytest.raises(NftfwdError):
        analyse_ruleset({"foo": 1}, "nftfwd", seed004())


def _mutations(ruleset: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    junk = st.one_of(
        st.none(),
        st.integers(),
        st.text(max_size=5),
        st.just({"xt": {"type": "target", "name": "TARPIT"}}),
        st.just({"match": {"op": "&", "left": {"meta": {"key": "mark"}}, "right": 1}}),
        st.just({"jump": {"target": "nowhere"}}),
        st.just({"vmap": {"key": {"meta": {"key": "iifname"}}, "data": "@missing"}}),
    )

    @st.composite
    def mutate(draw: st.DrawFn) -> dict[str, Any]:
        data = copy.deepcopy(ruleset)
        items = data["nftables"]
        for _ in range(draw(st.integers(1, 6))):
            i = draw(st.integers(0, len(items) - 1))
            obj = next(iter(items[i].values())) if isinstance(items[i], dict) and items[i] else None
            if isinstance(obj, dict) and isinstance(obj.get("expr"), list) and obj["expr"]:
                j = draw(st.integers(0, len(obj["expr"]) - 1))
                obj["expr"][j] = draw(junk)
            elif isinstance(obj, dict) and obj:
                obj.pop(draw(st.sampled_from(sorted(obj))))
            else:
                items[i] = draw(junk)
        return data

    return mutate()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_or_unknown_rules_never_crash_the_reader(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(["libvirt-iptables", "docker", "admin-policy-drop"]))
    ruleset = data.draw(_mutations(fixture(name)[0]))
    found = analyse_ruleset(ruleset, "nftfwd", seed004(v6=True), addresses=ADDRESSES)
    assert found == analyse_ruleset(ruleset, "nftfwd", seed004(v6=True), addresses=ADDRESSES)


def test_format_findings_is_plain_and_stable() -> None:
    assert format_findings([]) == "no findings\n"
    assert exit_code([]) == 0
    found = analyse("admin-policy-drop")
    assert exit_code(found) == 1
    text = format_findings(found)
    assert text.splitlines()[0] == (
        "FINDING foreign-policy-drop: table inet filter, chain forward, policy drop"
    )
    assert text.splitlines()[1].startswith("  error: The drop policy of base chain forward")
    assert text.splitlines()[2] == "  fix: " + ADMIN_FIX[0]
    assert text.splitlines()[3] == "       " + ADMIN_FIX[1]
    assert text.splitlines()[-1] == "1 error, 0 warnings, 0 notes"
    assert "\033[" not in text and "\033[" in format_findings(found, color=True)


def test_only_errors_fail_and_strict_fails_on_warnings_too() -> None:
    (error,) = analyse("admin-policy-drop")
    warning = replace(error, id="local-listener", severity="warning")
    note = replace(error, id="flush-ruleset-on-boot", severity="note")
    for found, plain, strict in [
        ([], 0, 0),
        ([note], 0, 0),
        ([warning, note], 0, 1),
        ([error, warning, note], 1, 1),
    ]:
        assert (exit_code(found), exit_code(found, strict=True)) == (plain, strict), found
    text = format_findings([note, warning, error])
    labels = re.findall(r"^  (error|warning|note): ", text, re.M)
    assert labels == ["error", "warning", "note"]  # each labels its message, in ORDER
    assert text.splitlines()[-1] == "1 error, 1 warning, 1 note"
