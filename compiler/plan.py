"""What a change of ruleset means at the level of the model: forwards added, removed, changed.

Forwards are read back from the DNAT maps of a table's JSON, in the form the kernel lists
or the form nftfwd emits (the same element encoding), so the live side and the compiled
side go through one reader.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from nftfwd.ir import Jump, SetOf
from nftfwd.lower import ANY, AT, map_of
from nftfwd.model import FAMILIES, Host
from nftfwd.nft_text import element_text, value_text
from nftfwd.nftjson import Document, Element, Rule, element_json, read_element

Change = Literal["+", "-", "~"]


# Named tuples, not dataclasses: a first load makes and sorts one key per host port,
# and tuples are made and compared in C.
class ForwardKey(NamedTuple):
    family: str  # ip, ip6
    proto: str
    port: int
    listen: str  # a host address, or "any"
    source: str  # the clients allowed (prefixes), or "any"


class Target(NamedTuple):
    address: str
    port: int
    comment: str | None = None  # what the element says the forward is for


@dataclass(frozen=True)
class ForwardChange:
    """A run of consecutive host ports (key.port to last_port) that changed alike.

    old and new are the targets of key.port; along the run a side's guest port either
    moves with the host port (step 1: 8000-8010 to 9000-9010) or stays (step 0: a range
    onto one port). `old_port`/`new_port` give the guest port of any host port of the run.
    """

    change: Change
    key: ForwardKey
    last_port: int
    old: Target | None
    new: Target | None
    old_step: int = 1
    new_step: int = 1

    def old_port(self, host_port: int) -> int:
        assert self.old is not None
        return self.old.port + (host_port - self.key.port) * self.old_step

    def new_port(self, host_port: int) -> int:
        assert self.new is not None
        return self.new.port + (host_port - self.key.port) * self.new_step

    @property
    def moves_traffic(self) -> bool:
        """Whether a port of the run now goes elsewhere (or nowhere): not when only the
        comment changed, so its connections may stay."""
        old, new = self.old, self.new
        if old is None or new is None:
            return True
        return (old.address, old.port, self.old_step) != (new.address, new.port, self.new_step)

    def guest_ports(self, target: Target) -> tuple[int, int]:
        """First and last guest port of `target` (this change's old or new) along the run."""
        step = self.old_step if target is self.old else self.new_step
        return target.port, target.port + (self.last_port - self.key.port) * step


def forwards_of(listed: Document, table: str) -> dict[ForwardKey, Target]:
    """Forward entries, one per host port, from a table's maps and the chains its
    `sources` maps jump to, in the kernel's listing or in a batch (nftjson reads both)."""
    document = listed.of_table(table)
    maps = {named.name: named.elements for named in document.sets}
    first_rule: dict[str, Rule] = {}
    for rule in document.rules:
        first_rule.setdefault(rule.chain, rule)
    entries: dict[ForwardKey, Target] = {}
    for family in FAMILIES:
        for where in (AT, ANY):
            guards = {
                _key_parts(element): _clients(first_rule.get(element.data.target))
                for element in maps.get(map_of("sources", family, where).name, ())
                if isinstance(element.data, Jump)
            }
            ports = {
                _key_parts(element): int(str(element.data))
                for element in maps.get(map_of("dnat_port", family, where).name, ())
            }
            for element in maps.get(map_of("dnat_addr", family, where).name, ()):
                parts = _key_parts(element)
                listen, proto, port = parts
                forward = ForwardKey(family, proto, port, listen, guards.get(parts, "any"))
                entries[forward] = Target(
                    str(element.data), ports.get(parts, port), element.comment
                )
    return entries


def _key_parts(element: Element) -> tuple[str, str, int]:
    """(host address or "any", protocol, port) of a forward map's key."""
    parts = element.parts
    listen = str(parts[0]) if len(parts) == 3 else "any"
    port = parts[-1]
    return listen, str(parts[-2]), port if type(port) is int else int(str(port))


def _clients(allow: Rule | None) -> str:
    """The clients an allow chain's rule lets through (`saddr != { ... } accept`)."""
    if allow is None or not allow.matches():
        return "?"
    right = allow.matches()[0].right
    items = right.items if isinstance(right, SetOf) else (right,)
    return ", ".join(value_text(item) for item in items)


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
        steps = _continues(folded[-1], item) if folded else None
        if steps is not None:
            last = folded[-1]
            folded[-1] = ForwardChange(
                last.change, last.key, item.key.port, last.old, last.new, *steps
            )
        else:
            folded.append(item)
    return folded


def _continues(run: ForwardChange, item: ForwardChange) -> tuple[int, int] | None:
    """The steps (old, new) with which `item` extends `run`, or None if it does not."""
    same_key = (run.key.family, run.key.proto, run.key.listen, run.key.source) == (
        item.key.family,
        item.key.proto,
        item.key.listen,
        item.key.source,
    )
    if not (same_key and run.change == item.change and item.key.port == run.last_port + 1):
        return None
    fresh = run.last_port == run.key.port  # one port so far: either step may follow
    old_step = _step(run.old, run.old_step, fresh, run.key.port, item.key.port, item.old)
    new_step = _step(run.new, run.new_step, fresh, run.key.port, item.key.port, item.new)
    return None if old_step is None or new_step is None else (old_step, new_step)


def _step(
    start: Target | None, step: int, fresh: bool, first: int, port: int, target: Target | None
) -> int | None:
    """The step that takes `start` (at host port `first`) to `target` (at `port`)."""
    if start is None or target is None:
        return step if start is target else None
    for candidate in (1, 0) if fresh else (step,):
        if target == Target(start.address, start.port + (port - first) * candidate, start.comment):
            return candidate
    return None


def rules_diff(old_text: str, new_text: str, old_name: str, new_name: str) -> list[str]:
    return list(
        difflib.unified_diff(
            old_text.splitlines(), new_text.splitlines(), old_name, new_name, lineterm=""
        )
    )


class ElementChange(NamedTuple):
    change: Literal["+", "-"]
    owner: str  # the named set or map
    encoded: str  # the element as elements_of encodes it

    @property
    def element(self) -> str:
        """The element as nft writes it (made only for the changes shown: a first load
        adds one per forward and map)."""
        return _text(self.encoded)


def elements_of(listed: Document, table: str) -> dict[str, frozenset[str]]:
    """The elements of each named set and map of `table`, by name, each as its JSON with
    sorted keys, from the kernel's listing or from a batch (see forwards_of)."""
    return {
        named.name: frozenset(
            json.dumps(element_json(element), sort_keys=True) for element in named.elements
        )
        for named in listed.of_table(table).sets
    }


def compare_elements(
    old: dict[str, frozenset[str]], new: dict[str, frozenset[str]]
) -> list[ElementChange]:
    changes: list[ElementChange] = []
    for owner in old.keys() | new.keys():
        before, after = old.get(owner, frozenset()), new.get(owner, frozenset())
        changes += [ElementChange("-", owner, element) for element in before - after]
        changes += [ElementChange("+", owner, element) for element in after - before]
    return sorted(changes, key=lambda c: (c.owner, c.encoded, c.change))


def _text(encoded: str) -> str:
    """One element of a set (a value) or a map (a `key : data` pair) in nft's syntax."""
    return element_text(read_element(json.loads(encoded)))


class Side(NamedTuple):
    """One side of a comparison, each part read once: the rules outside the sets and maps
    as text (the outline), the forwards in its maps, and every set's elements."""

    outline: str
    forwards: dict[ForwardKey, Target]
    elements: dict[str, frozenset[str]]


NO_SIDE = Side("", {}, {})  # a host or table that is not there


def side_of(outline: str, listed: Document, table: str) -> Side:
    return Side(outline, forwards_of(listed, table), elements_of(listed, table))


@dataclass(frozen=True)
class HostDiff:
    """The difference for one host: forwards, the rules as the kernel lists them, and the
    elements of the table's sets and maps (when the rules are its outline)."""

    host: str
    table: str
    forwards: list[ForwardChange]
    rules: list[str]
    guest_names: Mapping[str, str]  # guest address -> name, from the model(s)
    elements: list[ElementChange] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.forwards or self.rules or self.elements)


def host_diff(
    host: str, table: str, sides: tuple[Side, Side], names: tuple[str, str], *hosts: Host | None
) -> HostDiff:
    """What goes from `sides[0]` to `sides[1]` (named `names` in the rules' diff); the
    guests are named from `hosts`. The one comparison of `diff`, `load` and `diff --from`."""
    old, new = sides
    return HostDiff(
        host=host,
        table=table,
        forwards=compare(old.forwards, new.forwards),
        rules=rules_diff(old.outline, new.outline, *names),
        guest_names=guest_names(*hosts),
        elements=compare_elements(old.elements, new.elements),
    )


def guest_names(*hosts: Host | None) -> dict[str, str]:
    """Guest address -> name, for the plan's text."""
    names: dict[str, str] = {}
    for host in hosts:
        if host is None:
            continue
        for bridge in host.bridges:
            for guest in bridge.guests:
                for address in (guest.address, guest.address6):
                    if address is not None:
                        names[str(address)] = guest.name
    return names
