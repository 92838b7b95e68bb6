"""Closing what a removed forward still carries: conntrack keeps a flow's NAT until it ends.

One pass per load, whatever the number of ports: the tracked connections are listed once
per family and protocol that lost forwards (`conntrack -L`), matched here against the
removed forwards, and only the matching ones are deleted, all in one `conntrack -R -`
batch. A removed forward of 65,535 ports costs the same few processes as one of a port.
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from nftfwd.plan import ForwardChange

FAMILY = {"ip": "ipv4", "ip6": "ipv6"}
# Listing a busy host's table can take a while; deleting is one batch.
LIST_TIMEOUT_S = 120
PROGRESS_AFTER_S = 1.0


@dataclass(frozen=True)
class Flow:
    """Connections DNATed by a forward that is gone: host ports first..last (one family,
    one protocol) went to `address`, port `to_port` onwards (the same offsets)."""

    family: str  # ip, ip6
    proto: str  # tcp, udp
    first: int
    last: int
    address: str
    to_port: int

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> Flow:
        return Flow(
            str(data["family"]),
            str(data["proto"]),
            int(data["first"]),
            int(data["last"]),
            str(data["address"]),
            int(data["to_port"]),
        )


def gone_flows(changes: Iterable[ForwardChange]) -> list[Flow]:
    """The flows of removed or retargeted forwards; those of forwards that stay are not
    touched (a flow is matched by what it was DNATed to)."""
    return [
        Flow(c.key.family, c.key.proto, c.key.port, c.last_port, c.old.address, c.old.port)
        for c in changes
        if c.change in ("-", "~") and c.old is not None
    ]


@dataclass(frozen=True)
class Outcome:
    deleted: int
    seconds: float
    warning: str | None


def forget_flows(flows: list[Flow]) -> Outcome:
    """Delete the tracked connections of `flows`; says so on stderr when it takes long."""
    if not flows:
        return Outcome(0, 0.0, None)
    tool = shutil.which("conntrack")
    if tool is None:
        return Outcome(
            0,
            0.0,
            "`conntrack` is not installed: connections already open through removed "
            "forwards keep working until they end (apt-get install conntrack).",
        )
    started = time.monotonic()
    progress = threading.Timer(
        PROGRESS_AFTER_S,
        _say,
        (f"closing the tracked connections of {len(flows)} removed or changed forwards...",),
    )
    progress.daemon = True
    progress.start()
    try:
        deletes, failed = [], []
        by_kind: dict[tuple[str, str], list[Flow]] = defaultdict(list)
        for flow in flows:
            by_kind[(flow.family, flow.proto)].append(flow)
        for (family, proto), group in sorted(by_kind.items()):
            listed = _run([tool, "-L", "-f", FAMILY[family], "-p", proto], None)
            if listed is None:
                failed.append(f"listing {FAMILY[family]} {proto}")
                continue
            deletes += matching_deletes(listed, family, proto, group)
        if deletes and _run([tool, "-R", "-"], "".join(deletes)) is None:
            failed.append("deleting")
    finally:
        progress.cancel()
    seconds = time.monotonic() - started
    warning = None
    if failed:
        warning = (
            f"conntrack failed at {', '.join(failed)}: connections already open through "
            "removed forwards may keep working until they end."
        )
    return Outcome(len(deletes), seconds, warning)


def _say(message: str) -> None:
    with contextlib.suppress(OSError):
        print(message, file=sys.stderr, flush=True)


def _run(argv: list[str], stdin: str | None) -> str | None:
    try:
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=LIST_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    # -L exits 0; -R exits 0 also when an entry was already gone.
    return done.stdout if done.returncode == 0 else None


def matching_deletes(listing: str, family: str, proto: str, flows: list[Flow]) -> list[str]:
    """`conntrack -R` lines deleting the listed entries that belong to `flows`: the
    original destination port lies in a flow's range, and the reply comes from the
    flow's guest address and port at the same offset."""
    # (guest address, guest port - host port) -> the host port ranges with that offset
    ranges: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for flow in flows:
        ranges[(_canonical(family, flow.address), flow.to_port - flow.first)].append(
            (flow.first, flow.last)
        )
    deletes = []
    for line in listing.splitlines():
        entry = _entry(line)
        if entry is None:
            continue
        orig_dport = int(entry["dport"][0])
        key = (_canonical(family, entry["src"][1]), int(entry["sport"][1]) - orig_dport)
        if any(first <= orig_dport <= last for first, last in ranges.get(key, ())) and all(
            _is_address(entry[k][0]) for k in ("src", "dst")
        ):
            zone = f" -w {entry['zone'][0]}" if "zone" in entry else ""
            deletes.append(
                f"-D -f {FAMILY[family]} -p {proto} -s {entry['src'][0]} -d {entry['dst'][0]} "
                f"--sport {entry['sport'][0]} --dport {orig_dport}{zone}\n"
            )
    return deletes


def _entry(line: str) -> dict[str, list[str]] | None:
    """The key=value words of one `conntrack -L` line in order: src, dst, sport and dport
    appear twice, the original direction first, then the reply."""
    words: dict[str, list[str]] = defaultdict(list)
    for word in line.split():
        key, sep, value = word.partition("=")
        if sep:
            words[key].append(value)
    if any(len(words[k]) != 2 for k in ("src", "dst", "sport", "dport")):
        return None
    if not all(words[k][i].isdigit() for k in ("sport", "dport") for i in (0, 1)):
        return None
    return words


def _canonical(family: str, address: str) -> str:
    """conntrack and nft print IPv4 alike; IPv6 is compared in its compressed form."""
    if family == "ip":
        return address
    try:
        return ipaddress.ip_address(address).compressed
    except ValueError:
        return address


def _is_address(text: str) -> bool:
    """Only addresses reach conntrack's batch, whatever a listing line holds."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
