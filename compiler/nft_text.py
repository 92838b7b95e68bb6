"""nft's syntax for rules and their parts: the one printer of nft text.

It writes the IR (the ruleset's template, render_nft; doctor's fixes, rules to insert in
another tool's chain) and what nftjson reads back from libnftables JSON (the kernel's
listings, nftfwd's batches): the same typed values, operands and statements, with the
few kinds only other tools write (Xt, Counter, Log, Reject, Nat, Vmap, Unknown...).
`rule_text(rule)` prints an `ir.Rule` or an `nftjson.Rule` alike. No jinja2 here: doctor
and `load` import this.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, Protocol

from nftfwd.errors import printable
from nftfwd.ir import (
    AnyVerdict,
    Compared,
    Concat,
    Counter,
    Ct,
    Dnat,
    Fib,
    Flags,
    Goto,
    IfName,
    Jump,
    Listed,
    Log,
    Lookup,
    MapLookup,
    MapOf,
    Masquerade,
    Match,
    Meta,
    Nat,
    Operand,
    Payload,
    Prefix,
    Range,
    Reject,
    SetOf,
    SetRef,
    Statement,
    Symbol,
    Unknown,
    Verdict,
    VerdictMapLookup,
    Vmap,
    Xt,
    ipv6_text,
)
from nftfwd.model import PortRange

# Interface names: nft writes these operands bare (not `meta iifname`) and the strings
# they are compared with in double quotes.
IFNAME_KEYS = ("iifname", "oifname", "iif", "oif")


def value_text(value: Compared | AnyVerdict, quote: bool = False) -> str:
    """A value as nft writes it; `quote`: strings in double quotes (interface names)."""
    match value:
        # The parts of map elements first: nearly all the values of a big table.
        case int():
            return str(value)
        case str():
            return f'"{value}"' if quote else value
        case tuple():
            return " . ".join([value_text(v, quote) for v in value])
        case Symbol(name):
            return name
        case IPv4Address():
            return str(value)
        case IPv6Address():
            return ipv6_text(value)
        case IfName(name):
            # Validated to [A-Za-z0-9_.-]; quoting keeps it from being read as a keyword.
            return f'"{name}"'
        case Jump(target):
            return f"jump {target}"
        case Goto(target):
            return f"goto {target}"
        case Verdict(kind):
            return kind
        case SetOf(items):
            return "{ " + ", ".join(value_text(v, quote) for v in items) + " }"
        case MapOf(pairs):
            return "{ " + ", ".join(f"{value_text(k)} : {value_text(d)}" for k, d in pairs) + " }"
        case SetRef(name):
            return f"@{name}"
        case Flags(names):
            return ",".join(names)
        case PortRange(first, last):
            return str(first) if first == last else f"{first}-{last}"
        case IPv4Network() | IPv6Network():
            return str(value)
        case Prefix(addr, length):
            return f"{addr}/{length}"
        case Range(first, last):
            return f"{value_text(first)}-{value_text(last)}"
        case Unknown(raw):
            return _unknown_text(raw)
        case Meta() | Payload() | Fib() | Ct() | Concat():
            return operand_text(value)
    raise TypeError(f"no nft text for {value!r}")


def _unknown_text(raw: Any) -> str:
    """What no type was read for: an object by its one key (`&`, `queue`), as nft names
    the expression; other JSON as it is."""
    if type(raw) is dict and len(raw) == 1:
        return str(next(iter(raw)))
    if isinstance(raw, dict):
        return json.dumps(raw, sort_keys=True)
    if isinstance(raw, list):
        return ",".join(_unknown_text(v) for v in raw)
    return str(raw)


def operand_text(operand: Operand) -> str:
    match operand:
        case Meta(key) if key in IFNAME_KEYS:
            return key
        case Meta(key):
            return f"meta {key}"
        case Payload(protocol, field):
            return f"{protocol} {field}"
        case Fib(flags, result):
            return f"fib {' . '.join(flags)} {result}"
        case Ct(key, None):
            return f"ct {key}"
        case Ct(key, direction):
            return f"ct {direction} {key}"
        case Concat(parts):
            return " . ".join(operand_text(p) for p in parts)
        case Unknown(raw):
            return _unknown_text(raw)
    raise TypeError(f"no nft text for {operand!r}")


def _lookup(lookup: MapLookup | Lookup) -> str:
    if isinstance(lookup, MapLookup):
        return f"{operand_text(lookup.key)} map @{lookup.map}"
    return f"{operand_text(lookup.key)} map {value_text(lookup.data)}"


def _nat(nat: Nat) -> str:
    words = [nat.kind]
    if nat.addr is not None or nat.port is not None:
        if nat.family is not None:
            words.append(nat.family)
        words.append("to")
    addr, port = nat.addr, nat.port
    to = "" if addr is None else _lookup(addr) if isinstance(addr, Lookup) else value_text(addr)
    if port is not None:  # as nft lists it: `to 10.0.0.2:22`, `to :22`, `to ... @a:... @p`
        to += f":{_lookup(port) if isinstance(port, Lookup) else value_text(port)}"
    return " ".join([*words, to] if to else words)


def _reject(kind: str | None, code: str | None) -> str:
    if kind in (None, "icmp", "icmpv6", "icmpx") and code in (None, "port-unreachable"):
        return "reject"  # the default: nft leaves it unsaid
    return " ".join(["reject with", *(word for word in (kind, code) if word is not None)])


def statement_text(statement: Statement) -> str:
    """A statement as nft writes it; "" for one nft's listing shows apart from the rule
    (an anonymous counter) or that has no text (what the reader could not type)."""
    match statement:
        case Match(left, right, op):
            quote = isinstance(left, Meta) and left.key in IFNAME_KEYS
            shown = "" if op in ("==", "in") else f"{op} "
            return f"{operand_text(left)} {shown}{value_text(right, quote)}"
        case Verdict(kind):
            return kind
        case Jump(target):
            return f"jump {target}"
        case Goto(target):
            return f"goto {target}"
        case Masquerade():
            return "masquerade"
        case Dnat(family, addr, port):
            return f"dnat {family} to {_lookup(addr)} : {_lookup(port)}"
        case VerdictMapLookup(key, name):
            return f"{operand_text(key)} vmap @{name}"
        case Vmap(lookup):
            return f"{operand_text(lookup.key)} vmap {value_text(lookup.data)}"
        case Nat():
            return _nat(statement)
        case Xt(kind, name):
            return f"xt {kind} {name}"
        case Counter():
            return ""
        case Log(None):
            return "log"
        case Log(prefix):
            return f'log prefix "{prefix}"'
        case Reject(kind, code):
            return _reject(kind, code)
        case Unknown(raw):
            return _unknown_text(raw) if type(raw) is dict and len(raw) == 1 else ""
    raise TypeError(f"no nft text for {statement!r}")


class _Rule(Protocol):
    @property
    def statements(self) -> tuple[Statement, ...]: ...


def rule_text(rule: _Rule) -> str:
    """A rule as nft writes it: an `ir.Rule` (its note is the template's), or an
    `nftjson.Rule` read from a listing, with its comment (without its handle, and without
    an anonymous counter, which a listing shows with its values)."""
    text = " ".join(text for s in rule.statements if (text := statement_text(s)))
    comment = getattr(rule, "comment", None)
    return text if comment is None else f'{text} comment "{comment}"'


class _Element(Protocol):
    @property
    def key(self) -> Listed: ...  # an ir.Element's: a tuple of its parts

    @property
    def data(self) -> Listed | AnyVerdict | Unknown | None: ...

    @property
    def comment(self) -> str | None: ...


def element_text(element: _Element) -> str:
    """A set's element, or a map's `key : data`: an `ir.Element` or an `nftjson.Element`,
    with its comment."""
    key = value_text(element.key)
    if element.comment is not None:
        key += f' comment "{shown_comment(element.comment)}"'
    return key if element.data is None else f"{key} : {value_text(element.data)}"


def shown_comment(comment: str) -> str:
    """A comment as nft's text or a report writes it. nftfwd's own are printable text
    without a double quote (semantic's values.comment), so they are written as they are;
    one read from the kernel may hold anything (nft's JSON input takes any string), so
    what could rewrite a terminal is escaped."""
    return printable(comment)
