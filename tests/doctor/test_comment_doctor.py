"""doctor names a forward with what its comment says it is for."""

from __future__ import annotations

import json
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, ip_address

from conftest import TEST_DATA

from nftfwd.doctor.ruleset import analyse_ruleset
from nftfwd.model import Bridge, Forward, Guest, Host, PortRange

DATA = TEST_DATA / "doctor"
PATH = "hosts.localhost.bridges.virbr0.guests.centos.forwards[0]"
SSH = Forward(PortRange(2222, 2222), PortRange(22, 22), ("tcp",), (), None, False, PATH, None)


def seed004(forward: Forward, guest_comment: str | None = None) -> Host:
    """scenarios/seed004-ssh-2222.yaml, with comments."""
    guest = Guest("centos", IPv4Address("192.168.122.133"), None, (forward,), guest_comment)
    bridge = Bridge("virbr0", IPv4Network("192.168.122.0/24"), None, True, (guest,))
    return Host("localhost", ("eno1",), (), True, (bridge,))


def libvirt_rejects(host: Host) -> str:
    ruleset = json.loads((DATA / "libvirt-iptables.json").read_text())
    text = (DATA / "libvirt-iptables.ruleset.txt").read_text()
    addresses = {"eno1": (ip_address("203.0.113.10"),), "virbr0": (ip_address("192.168.122.1"),)}
    (finding,) = analyse_ruleset(ruleset, "nftfwd", host, ruleset_text=text, addresses=addresses)
    return finding.message


def test_the_message_names_the_forward_with_its_comment() -> None:
    message = libvirt_rejects(seed004(replace(SSH, comment="admin SSH, ticket #42")))
    assert 'forwarded to centos 192.168.122.133 port 22 "admin SSH, ticket #42"' in message


def test_a_forward_without_one_is_named_with_its_guests() -> None:
    message = libvirt_rejects(seed004(SSH, guest_comment="the CentOS build box"))
    assert 'forwarded to centos 192.168.122.133 port 22 "the CentOS build box"' in message


def test_without_comments_the_message_is_as_before() -> None:
    message = libvirt_rejects(seed004(SSH))
    assert "forwarded to centos 192.168.122.133 port 22;" in message
    assert '"' not in message.split("forwarded to", 1)[1].split(";")[0]
