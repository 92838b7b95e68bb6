"""Closing what a removed forward still carries: conntrack keeps a flow's NAT until it ends.

One pass per load, whatever the number of ports: the tracked connections are listed once
per family that lost forwards, matched here against the removed forwards, and only the
matching ones are deleted, by their tuple, in batches (ctnetlink, see netlink.py). A
removed forward of 65,535 ports costs what one of a port costs.
"""

from __future__ import annotations

import contextlib
import ipaddress
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from nftfwd.kernel.netlink import PROTO_NUMBER, Tracked, delete, tracked
from nftfwd.plan import ForwardChange

PROGRESS_AFTER_S = 1.0


@dataclass(frozen=True)
class Flow:
    """Connections DNATed by a forward that is gone: host ports first..last (one family,
    one protocol) went to `address`, port `to_port` onwards (the same offsets), or with
    `step` 0 all to port `to_port` (a range onto one port)."""

    family: str  # ip, ip6
    proto: str  # tcp, udp
    first: int
    last: int
    address: str
    to_port: int
    step: int = 1

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
            int(data.get("step", 1)),
        )


def gone_flows(changes: Iterable[ForwardChange]) -> list[Flow]:
    """The flows of removed or retargeted forwards; those of forwards that stay are not
    touched (a flow is matched by what it was DNATed to), nor those of a forward whose
    comment alone changed."""
    return [
        Flow(
            c.key.family,
            c.key.proto,
            c.key.port,
            c.last_port,
            c.old.address,
            c.old.port,
            c.old_step,
        )
        for c in changes
        if c.change in ("-", "~") and c.old is not None and c.moves_traffic
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
    started = time.monotonic()
    progress = threading.Timer(
        PROGRESS_AFTER_S,
        _say,
        (f"closing the tracked connections of {len(flows)} removed or changed forwards...",),
    )
    progress.daemon = True
    progress.start()
    try:
        listed = [
            entry for family in sorted({f.family for f in flows}) for entry in tracked(family)
        ]
        deleted = delete(gone_entries(listed, flows))
    except OSError as err:
        return Outcome(
            0,
            time.monotonic() - started,
            f"the tracked connections of removed forwards could not be closed ({err}): "
            "connections already open through them keep working until they end.",
        )
    finally:
        progress.cancel()
    return Outcome(deleted, time.monotonic() - started, None)


def _say(message: str) -> None:
    with contextlib.suppress(OSError):
        print(message, file=sys.stderr, flush=True)


def gone_entries(entries: Iterable[Tracked], flows: list[Flow]) -> list[Tracked]:
    """The tracked connections that belong to `flows`: the original destination port
    lies in a flow's range, and the reply comes from the flow's guest address and port
    at the same offset, or from its one port (a forward that stays, or another guest, is
    left alone)."""
    # (family, protocol, guest address, step, guest port - host port * step) -> host ports
    ranges: dict[tuple[str, int, bytes, int, int], list[tuple[int, int]]] = defaultdict(list)
    for flow in flows:
        guest = ipaddress.ip_address(flow.address).packed
        moved = flow.to_port - flow.first * flow.step
        ranges[(flow.family, PROTO_NUMBER[flow.proto], guest, flow.step, moved)].append(
            (flow.first, flow.last)
        )
    return [
        entry
        for entry in entries
        if any(
            first <= entry.dport <= last
            for step in (1, 0)
            for first, last in ranges.get(
                (
                    entry.family,
                    entry.proto,
                    entry.reply_src,
                    step,
                    entry.reply_sport - entry.dport * step,
                ),
                (),
            )
        )
    ]
