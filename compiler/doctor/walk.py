"""Walking one packet view through a base chain and the chains it jumps to.

The walk finds which drops, rejects, NAT statements and policies the view reaches, and
whether it surely reaches them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nftfwd.doctor.flows import Packet
from nftfwd.doctor.judge import Judge
from nftfwd.doctor.listing import Chain, Json, Rule, Ruleset, xt_conditions
from nftfwd.doctor.shape import shape
from nftfwd.doctor.tri import Tri, t_and
from nftfwd.nftjson import Element, read_element, tagged

MAX_DEPTH = 32  # jumps deeper than this are judged "maybe"
NONTERMINAL_XT = {
    "LOG", "NFLOG", "CHECKSUM", "MARK", "CONNMARK", "TCPMSS", "CT", "NOTRACK", "TRACE",
    "DSCP", "TOS", "TTL", "HL", "CLASSIFY", "SECMARK", "CONNSECMARK", "AUDIT", "SET",
    "IDLETIMER", "LED", "RATEEST", "HMARK", "TEE",
}  # fmt: skip
NOOP_STATEMENTS = {
    "counter", "log", "mangle", "notrack", "set", "map", "flow", "last", "dup", "secmark",
    "ct helper", "ct timeout", "ct expectation", "synproxy", "meter", "reset",
}  # fmt: skip


@dataclass
class Event:
    kind: str  # drop | reject | policy | unknown | dnat | snat
    chain: Chain
    rule: Rule | None
    certain: bool


def _verdict(key: str, val: Json) -> tuple[str, str] | None:
    """(kind, jump target) of a statement; None: a condition (or unknown: maybe)."""
    if key in ("accept", "drop", "return", "continue", "reject"):
        return key, ""
    if key in ("jump", "goto"):
        return key, str(val.get("target", "")) if isinstance(val, dict) else ""
    if key in ("dnat", "redirect", "snat", "masquerade"):
        return ("dnat" if key in ("dnat", "redirect") else "snat"), ""
    if key in ("queue", "tproxy", "fwd"):
        return "opaque", ""
    if key == "xt" and isinstance(val, dict) and val.get("type") != "match":
        name = str(val.get("name", ""))
        targets = {"REJECT": "reject", "DROP": "drop", "ACCEPT": "accept", "RETURN": "return",
                   "DNAT": "dnat", "REDIRECT": "dnat", "NETMAP": "dnat", "SNAT": "snat",
                   "MASQUERADE": "snat"}  # fmt: skip
        if name in targets:
            return targets[name], ""
        return ("none" if name in NONTERMINAL_XT or val.get("type") != "target" else "unknown"), ""
    return None


def walk(rs: Ruleset, base: Chain, pkt: Packet) -> list[Event]:
    """What a packet view reaches in a base chain: walked once per shape (shape.py), as
    packets of the same shape reach the same drops. Do not change the list returned."""
    alike = shape(rs, base.family, base.table, pkt)
    key = ("walk", base.family, base.table, base.name, alike)
    found: list[Event] | None = rs.memo.get(key)
    if found is None:
        found = rs.memo[key] = Walk(rs, base, alike).run()
    return found


def _once(rs: Ruleset, key: tuple[Any, ...], match: Json) -> Json:
    """A match that a walk builds from part of a rule, the first one built for that part:
    the judge's memo, keyed by the match, then finds it again for the next flow."""
    return rs.memo.setdefault(key, match)


def _elements(rs: Ruleset, anonymous: list[Json]) -> tuple[Element, ...]:
    """An anonymous map's elements, read once: the memo's keys hold their id()."""
    found: tuple[Element, ...] = rs.memo.setdefault(
        ("anonymous map", id(anonymous)), tuple(map(read_element, anonymous))
    )
    return found


class Walk:
    """One packet view through one base chain and the chains it jumps to."""

    def __init__(self, rs: Ruleset, base: Chain, pkt: Packet) -> None:
        self.rs, self.base = rs, base
        self.judge = Judge(rs, base.family, base.table, pkt)
        self.events: list[Event] = []

    def run(self) -> list[Event]:
        outcome, certain = self.chain(self.base, True, 0)
        if outcome == "continue" and self.base.policy == "drop":
            self.events.append(Event("policy", self.base, None, certain))
        return self.events

    def chain(self, chain: Chain, certain: bool, depth: int) -> tuple[str, bool]:
        if depth > MAX_DEPTH:
            return "continue", False
        for rule in chain.rules:
            outcome, certain, done = self.rule(chain, rule, certain, depth)
            if done:
                return outcome, certain
        return "continue", certain

    def condition(self, key: str, val: Json, rule: Rule) -> Tri:
        if key == "match":
            return self.judge.match(val)
        if key == "xt" and isinstance(val, dict):
            name, memo = str(val.get("name", "")), self.rs.memo
            xt = ("xt", id(rule), name)  # read from the rule's text once, for every flow
            if xt not in memo:
                memo[xt] = xt_conditions(name, rule.text)
            conds: list[Json] | None = memo[xt]
            return (
                Tri.MAYBE
                if conds is None
                else t_and(*(self.judge.match(c["match"]) for c in conds))
            )
        return Tri.MAYBE

    def rule(self, chain: Chain, rule: Rule, certain: bool, depth: int) -> tuple[str, bool, bool]:
        m = Tri.YES
        for item in rule.expr:
            if (found := tagged(item)) is None:
                m = t_and(m, Tri.MAYBE)
                continue
            key, val = found
            if key in NOOP_STATEMENTS:
                continue
            if key == "vmap" and isinstance(val, dict):
                return self.vmap(chain, rule, val, m, certain, depth)
            verdict = _verdict(key, val)
            if verdict is None:
                m = t_and(m, self.condition(key, val, rule))
            elif verdict[0] in ("dnat", "snat"):
                m = t_and(m, self.nat_maps(val))
            elif verdict[0] == "none":
                continue
            if m is Tri.NO:
                return "continue", certain, False
            if verdict is not None:
                return self.apply(verdict, m, chain, rule, certain, depth)
        return "continue", certain, False

    def nat_maps(self, val: Json) -> Tri:
        """A dnat/snat whose address or port comes from a map applies only to its keys."""
        result = Tri.YES
        for fld in ("addr", "port"):
            part = val.get(fld) if isinstance(val, dict) else None
            if isinstance(part, dict) and isinstance(part.get("map"), dict):
                m = part["map"]
                match = {"op": "==", "left": m.get("key"), "right": m.get("data")}
                match = _once(self.rs, ("nat map", id(m)), match)
                result = t_and(result, self.judge.match(match))
        return result

    def vmap(
        self, chain: Chain, rule: Rule, val: Json, m: Tri, certain: bool, depth: int
    ) -> tuple[str, bool, bool]:
        data = val.get("data")
        if isinstance(data, str) and data.startswith("@"):
            named = self.rs.sets.get((chain.family, chain.table, data[1:]))
            entries = None if named is None else named.elements
        else:
            anonymous = data.get("set") if isinstance(data, dict) else None
            entries = _elements(self.rs, anonymous) if isinstance(anonymous, list) else None
        if entries is None:
            return "continue", False, False
        for entry in entries:
            if not isinstance(entry.data, dict):
                certain = False
                continue
            match = {"op": "==", "left": val.get("key"), "right": entry.key}
            match = _once(self.rs, ("vmap", id(val), id(entry)), match)
            cond = t_and(m, self.judge.match(match))
            verdict = None if (found := tagged(entry.data)) is None else _verdict(*found)
            if cond is Tri.NO:
                continue
            if verdict is None:
                certain = False
                continue
            outcome, certain, done = self.apply(verdict, cond, chain, rule, certain, depth)
            if done:
                return outcome, certain, True
        return "continue", certain, False

    def apply(
        self, verdict: tuple[str, str], m: Tri, chain: Chain, rule: Rule, certain: bool, depth: int
    ) -> tuple[str, bool, bool]:
        kind, target = verdict
        sure, partly = certain and m is Tri.YES, ("continue", False, False)
        if kind in ("drop", "reject", "dnat", "snat", "unknown"):
            self.events.append(Event(kind, chain, rule, sure and kind != "unknown"))
        if kind in ("accept", "dnat", "snat"):
            return ("accept", certain, True) if m is Tri.YES else partly
        if kind in ("drop", "reject"):
            return ("drop", certain, True) if m is Tri.YES else partly
        if kind == "return":
            return ("continue", certain, True) if m is Tri.YES else partly
        if kind in ("jump", "goto"):
            sub = self.rs.chains.get((chain.family, chain.table, target))
            if sub is None:
                return partly
            outcome, after = self.chain(sub, sure, depth + 1)
            if m is not Tri.YES:
                return partly
            if outcome != "continue" or kind == "goto":
                return outcome, after, True
            return "continue", after, False
        if kind in ("unknown", "opaque"):
            return partly
        return "continue", certain, False
