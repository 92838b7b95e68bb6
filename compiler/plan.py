"""What a change of ruleset means at the level of the model: forwards added, removed, changed.

Forwards are read back from the DNAT maps of a table's JSON, in the form the kernel lists
or the form nftfwd emits (the same element encoding), so the live side and the compiled
side go through one reader.
"""

from __future__ import annotations

import bisect
import difflib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

Change = Literal["+", "-", "~"]


@dataclass(frozen=True, order=True)
class ForwardKey:
    family: str  # ip, ip6
    proto: str
    port: int
    listen: str  # a host address, or "any"
    source: str  # a prefix, or "any"


@dataclass(frozen=True, order=True)
class Target:
    address: str
    port: int


@dataclass(frozen=True)
class ForwardChange:
    change: Change
    key: ForwardKey
    last_port: int  # consecutive host ports with the same offset are shown as one range
    old: Target | None
    new: Target | None


def forwards_of(json_objects: Iterable[Any], table: str) -> dict[ForwardKey, Target]:
    """Forward entries, one per host port, from `{"map": ...}` or `{"add": {"map": ...}}`."""
    maps: dict[str, list[Any]] = {}
    for obj in json_objects:
        body = obj.get("add", obj) if isinstance(obj, dict) else None
        if isinstance(body, dict) and "map" in body and body["map"].get("table") == table:
            maps[body["map"]["name"]] = body["map"].get("elem", [])
    entries: dict[ForwardKey, Target] = {}
    for family, suffix in (("ip", "4"), ("ip6", "6")):
        ranges: dict[tuple[str, str, str], list[tuple[int, int, str]]] = defaultdict(list)
        for key, address in maps.get(f"dnat_addr{suffix}", []):
            source, listen, proto, (lo, hi) = _key_parts(key)
            ranges[(source, listen, proto)].append((lo, hi, str(address)))
        for found in ranges.values():
            found.sort()
        for key, port in maps.get(f"dnat_port{suffix}", []):
            source, listen, proto, (first, _) = _key_parts(key)
            candidates = ranges.get((source, listen, proto), [])
            index = bisect.bisect_right(candidates, (first, 65536, "")) - 1
            if index >= 0 and candidates[index][0] <= first <= candidates[index][1]:
                target = Target(candidates[index][2], int(port))
                entries[ForwardKey(family, proto, first, listen, source)] = target
    return entries


def _key_parts(key: Any) -> tuple[str, str, str, tuple[int, int]]:
    source, listen, proto, port = key["concat"]
    return _addr(source), _addr(listen), str(proto), _ports(port)


def _addr(value: Any) -> str:
    if isinstance(value, dict) and "prefix" in value:
        prefix = value["prefix"]
        return "any" if prefix["len"] == 0 else f"{prefix['addr']}/{prefix['len']}"
    if isinstance(value, dict) and "range" in value:
        return "-".join(map(str, value["range"]))
    return str(value)


def _ports(value: Any) -> tuple[int, int]:
    if isinstance(value, dict) and "range" in value:
        first, last = value["range"]
        return int(first), int(last)
    return int(value), int(value)


def compare(old: dict[ForwardKey, Target], new: dict[ForwardKey, Target]) -> list[ForwardChange]:
    """Per-port differences, folded into ranges that move together."""
    singles: list[ForwardChange] = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        change: Change = "+" if before is None else "-" if after is None else "~"
        singles.append(ForwardChange(change, key, key.port, before, after))
    return _fold(singles)


def _fold(changes: list[ForwardChange]) -> list[ForwardChange]:
    folded: list[ForwardChange] = []
    for item in changes:
        if folded and _continues(folded[-1], item):
            last = folded[-1]
            folded[-1] = ForwardChange(last.change, last.key, item.key.port, last.old, last.new)
        else:
            folded.append(item)
    return folded


def _continues(run: ForwardChange, item: ForwardChange) -> bool:
    step = item.key.port - run.key.port
    same_key = (run.key.family, run.key.proto, run.key.listen, run.key.source) == (
        item.key.family,
        item.key.proto,
        item.key.listen,
        item.key.source,
    )
    return (
        same_key
        and run.change == item.change
        and item.key.port == run.last_port + 1
        and _shifted(run.old, step) == item.old
        and _shifted(run.new, step) == item.new
    )


def _shifted(target: Target | None, step: int) -> Target | None:
    return None if target is None else Target(target.address, target.port + step)


def rules_diff(old_text: str, new_text: str, old_name: str, new_name: str) -> list[str]:
    return list(
        difflib.unified_diff(
            old_text.splitlines(), new_text.splitlines(), old_name, new_name, lineterm=""
        )
    )
