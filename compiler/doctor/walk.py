"""Walking one packet view through a base chain and the chains it jumps to.

The walk finds which drops, rejects, NAT statements and policies the view reaches, and
whether it surely reaches them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nftfwd.doctor.flows import Packet
from nftfwd.doctor.judge import Judge
from nftfwd.doctor.listing import Chain, Rule, Ruleset, xt_conditions
from nftfwd.doctor.shape import shape
from nftfwd.doctor.tri import Tri, t_and
from nftfwd.ir import (
    Counter,
    Goto,
    Jump,
    Log,
    Lookup,
    MapOf,
    Match,
    Nat,
    Reject,
    SetRef,
    Statement,
    Unknown,
    Verdict,
    Vmap,
    Xt,
)

MAX_DEPTH = 32  # jumps deeper than this are judged "maybe"
NONTERMINAL_XT = {
    "LOG", "NFLOG", "CHECKSUM", "MARK", "CONNMARK", "TCPMSS", "CT", "NOTRACK", "TRACE",
    "DSCP", "TOS", "TTL", "HL", "CLASSIFY", "SECMARK", "CONNSECMARK", "AUDIT", "SET",
    "IDLETIMER", "LED", "RATEEST", "HMARK", "TEE",
}  # fmt: skip
NOOP_STATEMENTS = {
    "mangle",
    "notrack",
    "set",
    "map",
    "flow",
    "last",
    "dup",
    "secmark",
    "ct helper",
    "ct timeout",
    "ct expectation",
    "synproxy",
    "meter",
    "reset",
}  # fmt: skip (besides Counter and Log: statements the reader has no type for)
VERDICTS = ("accept", "drop", "return", "continue")


@dataclass
class Event:
    kind: str  # drop | reject | policy | unknown | dnat | snat
    chain: Chain
    rule: Rule | None
    certain: bool


def _verdict(statement: Statement | object) -> tuple[str, str] | None:
    """(kind, jump target) of a statement; None: a condition (or unknown: maybe)."""
    match statement:
        case Verdict(kind):
            return kind, ""
        case Reject():
            return "reject", ""
        case Jump(target) | Goto(target):
            return ("jump" if isinstance(statement, Jump) else "goto"), target
        case Nat(kind):
            return ("dnat" if kind in ("dnat", "redirect") else "snat"), ""
        case Xt(kind, name) if kind != "match":
            targets = {"REJECT": "reject", "DROP": "drop", "ACCEPT": "accept", "RETURN": "return",
                       "DNAT": "dnat", "REDIRECT": "dnat", "NETMAP": "dnat", "SNAT": "snat",
                       "MASQUERADE": "snat"}  # fmt: skip
            if name in targets:
                return targets[name], ""
            return ("none" if name in NONTERMINAL_XT or kind != "target" else "unknown"), ""
        case Unknown() if statement.kind in ("queue", "tproxy", "fwd"):
            return "opaque", ""
        case Unknown() if statement.kind in (*VERDICTS, "reject", "jump", "goto"):
            return statement.kind, ""  # a verdict of a form not read: as its kind alone
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


def _once(rs: Ruleset, key: tuple[Any, ...], match: Match) -> Match:
    """A match that a walk builds from part of a rule, the first one built for that part:
    the judge's memo, keyed by the match, then finds it again for the next flow."""
    found: Match = rs.memo.setdefault(key, match)
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

    def condition(self, statement: Statement, rule: Rule) -> Tri:
        if isinstance(statement, Match):
            return self.judge.match(statement)
        if isinstance(statement, Xt):
            name, memo = statement.name, self.rs.memo
            xt = ("xt", id(rule), name)  # read from the rule's text once, for every flow
            if xt not in memo:
                memo[xt] = xt_conditions(name, rule.text)
            conds: list[Match] | None = memo[xt]
            return Tri.MAYBE if conds is None else t_and(*(self.judge.match(c) for c in conds))
        return Tri.MAYBE

    def rule(self, chain: Chain, rule: Rule, certain: bool, depth: int) -> tuple[str, bool, bool]:
        m = Tri.YES
        for statement in rule.statements:
            if isinstance(statement, Counter | Log) or (
                isinstance(statement, Unknown) and statement.kind in NOOP_STATEMENTS
            ):
                continue
            if isinstance(statement, Vmap):
                return self.vmap(chain, rule, statement.lookup, m, certain, depth)
            verdict = _verdict(statement)
            if verdict is None:
                m = t_and(m, self.condition(statement, rule))
            elif verdict[0] in ("dnat", "snat"):
                m = t_and(m, self.nat_maps(statement))
            elif verdict[0] == "none":
                continue
            if m is Tri.NO:
                return "continue", certain, False
            if verdict is not None:
                return self.apply(verdict, m, chain, rule, certain, depth)
        return "continue", certain, False

    def nat_maps(self, statement: Statement) -> Tri:
        """A dnat/snat whose address or port comes from a map applies only to its keys."""
        result = Tri.YES
        if not isinstance(statement, Nat):
            return result
        for part in (statement.addr, statement.port):
            if isinstance(part, Lookup):
                match = _once(self.rs, ("nat map", id(part)), Match(part.key, part.data))
                result = t_and(result, self.judge.match(match))
        return result

    def vmap(
        self, chain: Chain, rule: Rule, lookup: Lookup, m: Tri, certain: bool, depth: int
    ) -> tuple[str, bool, bool]:
        data = lookup.data
        entries: Sequence[tuple[Any, ...]] | None  # (key, data, ...)
        if isinstance(data, SetRef):
            named = self.rs.sets.get((chain.family, chain.table, data.name))
            entries = None if named is None else named.elements
        else:
            entries = data.pairs if isinstance(data, MapOf) else None
        if entries is None:
            return "continue", False, False
        for entry in entries:
            key, value = entry[0], entry[1]
            if not isinstance(value, Verdict | Jump | Goto | Unknown) or (
                isinstance(value, Unknown) and type(value.raw) is not dict
            ):
                certain = False
                continue
            match = _once(self.rs, ("vmap", id(lookup), id(entry)), Match(lookup.key, key))
            cond = t_and(m, self.judge.match(match))
            verdict = _verdict(value)
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
