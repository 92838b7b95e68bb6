"""nft's syntax for the IR: its values, operands, statements, rules and elements.

The one printer of rules in nft's text: the ruleset's template (render_nft) and doctor's
fixes (rules to insert in another tool's chain) write through it. libnftables JSON as
read back from the kernel is printed by nftjson.expr_text. No jinja2 here: doctor and
`load` import this.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from nftfwd.ir import (
    Concat,
    Ct,
    Dnat,
    Element,
    Fib,
    Flags,
    IfName,
    Jump,
    MapLookup,
    Masquerade,
    Match,
    Meta,
    Payload,
    Rule,
    SetOf,
    SetRef,
    Statement,
    Symbol,
    Value,
    Verdict,
    VerdictMapLookup,
    ipv6_text,
)
from nftfwd.model import PortRange


def value_text(value: Value | SetOf | SetRef | Flags | Jump) -> str:
    match value:
        # The parts of map elements first: nearly all the values of a big table.
        case int():
            return str(value)
        case Symbol(name):
            return name
        case IPv4Address():
            return str(value)
        case IPv6Address():
            return ipv6_text(value)
        case IfName(name):
            # Validated to [A-Za-z0-9_.-]; quoting keeps it from being read as a keyword.
            return json.dumps(name)
        case Jump(target):
            return f"jump {target}"
        case SetOf(items):
            return "{ " + ", ".join(value_text(v) for v in items) + " }"
        case SetRef(name):
            return f"@{name}"
        case Flags(names):
            return ",".join(names)
        case PortRange(first, last):
            return str(first) if first == last else f"{first}-{last}"
        case IPv4Network() | IPv6Network():
            return str(value)
    raise TypeError(f"no nft text for {value!r}")


def operand_text(operand: Meta | Payload | Fib | Ct | Concat) -> str:
    match operand:
        case Meta("iifname" | "oifname" as key):
            return key
        case Meta(key):
            return f"meta {key}"
        case Payload(protocol, field):
            return f"{protocol} {field}"
        case Fib(flags, result):
            return f"fib {' . '.join(flags)} {result}"
        case Ct(key):
            return f"ct {key}"
        case Concat(parts):
            return " . ".join(operand_text(p) for p in parts)
    raise TypeError(f"no nft text for {operand!r}")


def _lookup(lookup: MapLookup) -> str:
    return f"{operand_text(lookup.key)} map @{lookup.map}"


def statement_text(statement: Statement) -> str:
    match statement:
        case Match(left, right, "!="):
            return f"{operand_text(left)} != {value_text(right)}"
        case Match(left, right, _):
            return f"{operand_text(left)} {value_text(right)}"
        case Verdict(kind):
            return kind
        case Masquerade():
            return "masquerade"
        case Dnat(family, addr, port):
            return f"dnat {family} to {_lookup(addr)} : {_lookup(port)}"
        case VerdictMapLookup(key, name):
            return f"{operand_text(key)} vmap @{name}"
    raise TypeError(f"no nft text for {statement!r}")


def rule_text(rule: Rule) -> str:
    return " ".join(statement_text(s) for s in rule.statements)


def element_text(element: Element) -> str:
    key = " . ".join([value_text(v) for v in element.key])
    return key if element.data is None else f"{key} : {value_text(element.data)}"
