"""A plan (nftfwd diff) as one JSON document, for CI and bots (schemas/diff.schema.json).

Forwards are structured: protocol, family, listen address, host ports, allowed clients,
and the guest side (name, address, ports); every port a JSON integer, a range as its
first and last port, as the text shows it (consecutive ports that move together).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from nftfwd.plan import ForwardChange, HostDiff, Target

FORMAT = 1  # the document's version: a change that breaks readers makes a new one
FAMILY = {"ip": "ipv4", "ip6": "ipv6"}
KIND = {"+": "added", "-": "removed", "~": "changed"}


def _ports(first: int, last: int) -> dict[str, int]:
    return {"first": first, "last": last}


def _guest(target: Target, change: ForwardChange, names: Mapping[str, str]) -> dict[str, Any]:
    return {
        "guest": names.get(target.address),
        "guest_address": target.address,
        "guest_port": _ports(*change.guest_ports(target)),
        "comment": target.comment,
    }


def forward_entry(change: ForwardChange, names: Mapping[str, str]) -> dict[str, Any]:
    """One added, removed or changed forward (changed: the guest side before and after)."""
    key = change.key
    entry: dict[str, Any] = {
        "protocol": key.proto,
        "family": FAMILY[key.family],
        "listen_address": None if key.listen == "any" else key.listen,
        "host_port": _ports(key.port, change.last_port),
        "sources": None if key.source == "any" else key.source.split(", "),
    }
    if change.change == "~":
        assert change.old is not None and change.new is not None
        return {**entry, "old": _guest(change.old, change, names),
                "new": _guest(change.new, change, names)}  # fmt: skip
    target = change.new if change.change == "+" else change.old
    assert target is not None
    return {**entry, **_guest(target, change, names)}


def host_entry(diff: HostDiff) -> dict[str, Any]:
    forwards: dict[str, list[dict[str, Any]]] = {"added": [], "removed": [], "changed": []}
    for change in diff.forwards:
        forwards[KIND[change.change]].append(forward_entry(change, diff.guest_names))
    return {
        "host": diff.host,
        "table": diff.table,
        "changed": diff.changed,
        "forwards": forwards,
        "rules_changed": bool(diff.rules),
        "rules_diff": list(diff.rules),
        "elements": {
            "added": sum(1 for e in diff.elements if e.change == "+"),
            "removed": sum(1 for e in diff.elements if e.change == "-"),
        },
    }


def plan_document(diffs: Iterable[HostDiff], against: Literal["host", "model"]) -> dict[str, Any]:
    """against: what the model was compared with, the live host or an older model (--from)."""
    hosts = [host_entry(d) for d in diffs]
    return {
        "format": FORMAT,
        "against": against,
        "changed": any(h["changed"] for h in hosts),
        "hosts": hosts,
    }


def format_json(diffs: Iterable[HostDiff], against: Literal["host", "model"]) -> str:
    return json.dumps(plan_document(diffs, against), indent=2) + "\n"
