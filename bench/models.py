"""Models with N forwards for the benchmark (standard library only).

One host ``bench`` with one uplink ``up0`` and one bridge ``br0`` (10.0.0.0/16, the
host's gateway 10.0.0.1). Forward i (0-based) belongs to guest
``g<i>`` at 10.0.0.0 + 2 + i and sends host TCP port 10000 + i to the guest's port 80,
so a model with N forwards has N guests (the "10-guest model" is N = 10).

``changed=True`` gives the same model with one forward edited (the middle one's
guest port 80 -> 81): the "one-forward change" of a loaded host.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

HOST = "bench"
UPLINK = "up0"
BRIDGE = "br0"
SUBNET = ipaddress.IPv4Network("10.0.0.0/16")
GATEWAY = ipaddress.IPv4Address("10.0.0.1")
FIRST_PORT = 10000
GUEST_PORT = 80
TABLE = "nftfwd"
MAX_FORWARDS = 55535 - 1  # ports 10000..65534 (and far fewer than the /16's addresses)


@dataclass(frozen=True)
class Forward:
    index: int
    guest: str
    address: ipaddress.IPv4Address
    port: int
    to: int


def forwards(n: int, changed: bool = False) -> list[Forward]:
    if not 1 <= n <= MAX_FORWARDS:
        raise ValueError(f"n must be 1..{MAX_FORWARDS}")
    edited = n // 2 if changed else -1
    return [
        Forward(
            i,
            f"g{i}",
            GATEWAY + 1 + i,
            FIRST_PORT + i,
            GUEST_PORT + (1 if i == edited else 0),
        )
        for i in range(n)
    ]


def last(n: int) -> Forward:
    """The last forward of an N-forward model: the target of the packet-path test."""
    return forwards(n)[-1]


def model_yaml(n: int, changed: bool = False) -> str:
    lines = [
        f"# nftfwd benchmark model: {n} forwards{' (one edited)' if changed else ''}",
        "version: 1",
        f"table: {TABLE}",
        "hosts:",
        f"  {HOST}:",
        f"    uplinks: [{UPLINK}]",
        "    bridges:",
        f"      {BRIDGE}:",
        f"        subnet: {SUBNET}",
        "        guests:",
    ]
    for f in forwards(n, changed):
        lines += [
            f"          {f.guest}:",
            f"            address: {f.address}",
            "            forwards:",
            f"              - {{port: {f.port}, to: {f.to}}}",
        ]
    return "\n".join(lines) + "\n"


def topology_model(guests: Sequence[Forward]) -> dict[str, Any]:
    """The benchmark host for the test harness's Topology, with only the given guests:
    a packet-path run needs the namespace of the guest it connects to, not N of them."""
    bridge = {
        "subnet": str(SUBNET),
        "guests": {f.guest: {"address": str(f.address)} for f in guests},
    }
    return {"hosts": {HOST: {"uplinks": [UPLINK], "bridges": {BRIDGE: bridge}}}}


def per_rule_ruleset(n: int, table: str = "perrule") -> str:
    """The same forwards as one nft rule each (the rule-per-forward baseline).

    The rules are evaluated in order, so a connection to the last forward passes
    n - 1 non-matching rules first. The last rule also counts its packets (named
    counter ``last``): the benchmark checks that every connection went through it.
    """
    every = forwards(n)
    rules = "\n".join(
        f'\t\tiifname "{UPLINK}" tcp dport {f.port}'
        + (" counter name last" if f is every[-1] else "")
        + f" dnat ip to {f.address}:{f.to}"
        for f in every
    )
    return (
        f"table ip {table}\ndelete table ip {table}\n"
        f"table ip {table} {{\n"
        "\tcounter last {\n\t}\n"
        "\tchain prerouting {\n"
        "\t\ttype nat hook prerouting priority -100; policy accept;\n"
        f"{rules}\n"
        "\t}\n"
        "}\n"
    )


def seed_commands(n: int) -> list[list[str]]:
    """The seed method: two iptables commands per forward, run one after the other."""
    argvs: list[list[str]] = []
    for f in forwards(n):
        argvs.append(
            [
                "iptables",
                "-t",
                "nat",
                "-I",
                "PREROUTING",
                "-p",
                "tcp",
                "--dport",
                str(f.port),
                "-j",
                "DNAT",
                "--to-destination",
                f"{f.address}:{f.to}",
            ]
        )
        argvs.append(
            [
                "iptables",
                "-I",
                "FORWARD",
                "-d",
                str(f.address),
                "-p",
                "tcp",
                "--dport",
                str(f.to),
                "-j",
                "ACCEPT",
            ]
        )
    return argvs


if __name__ == "__main__":
    import sys

    sys.stdout.write(model_yaml(int(sys.argv[1]) if len(sys.argv) > 1 else 10))
