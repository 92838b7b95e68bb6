"""The kernel's ruleset as doctor reads it: `nft -j list ruleset` indexed into tables,
base chains with their rules in order, and sets; and the text listing with handles
(`nft -a list ruleset`), the only place where iptables-nft's `xt` matches show what they
match (the JSON says `{"xt": {"type": "match", "name": "conntrack"}}` and nothing more).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from nftfwd import nftjson
from nftfwd.errors import NftfwdError
from nftfwd.ir import (
    Compared,
    Ct,
    Fib,
    Listed,
    Match,
    Operand,
    Payload,
    Range,
    SetOf,
    Statement,
    Unknown,
)
from nftfwd.nft_text import rule_text
from nftfwd.nftjson import NamedSet, NotNftJson, Table, read_document

L4 = {"tcp", "udp", "sctp", "dccp", "udplite"}


# --- the ruleset ----------------------------------------------------------------------


@dataclass
class Rule:
    index: int
    handle: int | None
    statements: tuple[Statement, ...]  # as nftjson read them
    text: str


@dataclass
class Chain:
    family: str
    table: str
    name: str
    type: str
    hook: str | None
    prio: int
    policy: str
    rules: list[Rule] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"table {self.family} {self.table}, chain {self.name}"


@dataclass
class Ruleset:
    tables: set[tuple[str, str]]
    chains: dict[tuple[str, str, str], Chain]
    sets: dict[tuple[str, str, str], NamedSet]
    owned: set[tuple[str, str]] = field(default_factory=set)  # `flags owner` (text only)
    # What the walks work out once and look up for every further flow (judge.py, walk.py).
    # Keys may hold the id() of statements and elements of this ruleset (or of matches
    # built from them, kept in the memo too): the memo lives no longer than they do.
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)


def index_ruleset(ruleset: nftjson.Json, text: str | None = None) -> Ruleset:
    """Tables, chains with their rules in order, and sets/maps of `nft -j list ruleset`."""
    try:
        document = read_document(ruleset)
    except NotNftJson:
        raise NftfwdError("the ruleset is not the output of `nft -j list ruleset`.") from None
    texts = rule_texts(text or "")
    rs = Ruleset(set(), {}, {}, owned_tables(text or ""))
    for obj in document.objects:
        if isinstance(obj, Table):
            rs.tables.add((obj.family, obj.name))
        elif isinstance(obj, nftjson.Chain):
            key = (obj.family, obj.table, obj.name)
            chain = rs.chains.setdefault(key, Chain(*key, "", None, 0, "accept"))
            chain.type, chain.hook = obj.type, obj.hook
            chain.prio, chain.policy = obj.priority, obj.policy
        elif isinstance(obj, nftjson.Rule):
            key = (obj.family, obj.table, obj.chain)
            chain = rs.chains.setdefault(key, Chain(*key, "", None, 0, "accept"))
            shown = texts.get((*key, obj.handle)) if obj.handle is not None else None
            chain.rules.append(
                Rule(len(chain.rules) + 1, obj.handle, obj.statements, shown or rule_text(obj))
            )
        elif isinstance(obj, NamedSet):
            rs.sets[(obj.family, obj.table, obj.name)] = obj
    return rs


# --- the text listing: rules as nft shows them, and what xt matches translate to ------

_HANDLE = re.compile(r"\s*# handle (\d+)\s*$")
# an anonymous counter, with its values (`nft -a`) or without (a stateless listing)
_COUNTER = re.compile(r"\bcounter(?: packets \d+ bytes \d+)?(?= |$)(?! name\b)")
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|!=|[{},]|[^\s{},]+')


def rule_texts(text: str) -> dict[tuple[str, str, str, int | None], str]:
    """(family, table, chain, handle) -> the rule as `nft -a list ruleset` prints it."""
    out: dict[tuple[str, str, str, int | None], str] = {}
    depth, family, table, chain = 0, "", "", ""
    for raw in text.splitlines():
        found = _HANDLE.search(raw)
        code = raw[: found.start()] if found else raw.split("#", 1)[0]
        words = code.split()
        if depth == 0 and len(words) >= 3 and words[0] == "table":
            family, table = words[1], words[2].strip('"')
        elif depth == 1 and len(words) >= 2 and words[0] == "chain":
            chain = words[1].strip('"')
        elif depth == 2 and chain and found and words and words[0] not in ("type", "policy"):
            body = _COUNTER.sub("", code)
            out[(family, table, chain, int(found.group(1)))] = " ".join(body.split())
        depth += code.count("{") - code.count("}")
        chain = chain if depth >= 2 else ""
    return out


def owned_tables(text: str) -> set[tuple[str, str]]:
    """Tables with `flags owner` (firewalld >= 2.0 holds its table so): only the program
    that made one may change it. The JSON listing of nft 1.0.6 garbles these flags."""
    out: set[tuple[str, str]] = set()
    depth, family, table = 0, "", ""
    for raw in text.splitlines():
        code = raw.split("#", 1)[0]
        words = code.split()
        if depth == 0 and len(words) >= 3 and words[0] == "table":
            family, table = words[1], words[2].strip('"')
        elif depth == 1 and words[:1] == ["flags"] and "owner" in "".join(words[1:]).split(","):
            out.add((family, table))
        depth += code.count("{") - code.count("}")
    return out


def _value(tokens: list[str], i: int) -> tuple[Compared, int]:
    """One value (with commas: a list; in braces: a set) starting at tokens[i]."""
    items: list[Listed] = []
    if i < len(tokens) and tokens[i] == "{":
        i += 1
        while i < len(tokens) and tokens[i] != "}":
            if tokens[i] != ",":
                items.append(_atom(tokens[i]))
            i += 1
        return SetOf(tuple(items)), i + 1
    while i < len(tokens):
        items.append(_atom(tokens[i]))
        if i + 2 < len(tokens) and tokens[i + 1] == ",":
            i += 2
            continue
        return (items[0] if len(items) == 1 else SetOf(tuple(items))), i + 1
    return Unknown(None), i  # nothing: what no element equals


def _atom(token: str) -> Listed:
    if token.isdigit():
        return int(token)
    first, dash, last = token.partition("-")
    if dash and first.isdigit() and last.isdigit():
        return Range(int(first), int(last))
    return token.strip('"')


def xt_conditions(name: str, text: str) -> list[Match] | None:
    """What an xt match of this name tests, as native matches read from the rule's text.

    None: the text does not say (nft without xtables translation, or a match this
    reader does not know); the match is then judged "maybe".
    """
    if name == "comment":
        return []
    if f"xt match {name}" in text or f'xt match "{name}"' in text:
        return None
    tokens = _TOKEN.findall(text)
    conds: list[Match] = []
    i = 0
    while i < len(tokens):
        tok, nxt = tokens[i], tokens[i + 1] if i + 1 < len(tokens) else ""
        if name in ("conntrack", "state") and tok == "ct":
            if nxt not in ("state", "status", "direction"):
                return None
            left: Operand = Ct(nxt)
            i += 2
        elif name == "addrtype" and tok == "fib":
            flags: list[str] = []
            i += 1
            while i < len(tokens) and tokens[i] != "type":
                flags.append(tokens[i])
                i += 1
            left = Fib(tuple(flags), "type")
            i += 1
        elif name == "multiport" and (tok in L4 or tok == "th") and nxt in ("sport", "dport"):
            left = Payload(tok, nxt)
            i += 2
        else:
            i += 1
            continue
        op = "=="
        if i < len(tokens) and tokens[i] in ("!=", "!", "=="):
            op = "!=" if tokens[i] != "==" else "=="
            i += 1
        right, i = _value(tokens, i)
        conds.append(Match(left, right, op))
    return conds or None
