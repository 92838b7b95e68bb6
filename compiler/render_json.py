"""Stage 4b: the IR as a libnftables JSON batch (the same transaction as the nft text)."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from nftfwd.ir import (
    REPLACE_TABLE,
    AnyVerdict,
    Chain,
    Compared,
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
    NamedSet,
    Operand,
    Payload,
    Rule,
    SetOf,
    SetRef,
    Statement,
    Symbol,
    Table,
    Verdict,
    VerdictMapLookup,
    ipv6_text,
    load_order,
)
from nftfwd.model import PortRange
from nftfwd.nftjson import Json


def render_json(table: Table) -> str:
    return json.dumps(batch(table), indent=2) + "\n"


def batch(table: Table) -> dict[str, list[Json]]:
    """The commands of one transaction that replaces `table` whether or not it exists."""
    ident = {"family": table.family, "name": table.name}
    commands: list[Json] = [
        {"metainfo": {"json_schema_version": 1}},
        *({verb: {"table": dict(ident)}} for verb in REPLACE_TABLE),
    ]
    for item in load_order(table):
        if isinstance(item, Chain):
            commands.append({"add": _chain(table, item)})
            commands += [{"add": _rule(table, item, r)} for r in item.rules]
        else:
            commands.append({"add": _named_set(table, item)})
    return {"nftables": commands}


def _named_set(table: Table, named: NamedSet) -> Json:
    body: dict[str, Json] = {
        "family": table.family,
        "table": table.name,
        "name": named.name,
        "type": list(named.key_types) if len(named.key_types) > 1 else named.key_types[0],
    }
    if named.data_type is not None:
        body["map"] = named.data_type
    if named.elements:
        body["elem"] = [_element(e) for e in named.elements]
    return {named.kind: body}


def _element(element: Element) -> Json:
    parts = [value_json(v) for v in element.key]
    key = parts[0] if len(parts) == 1 else {"concat": parts}
    return key if element.data is None else [key, value_json(element.data)]


def _chain(table: Table, chain: Chain) -> Json:
    body: dict[str, Json] = {"family": table.family, "table": table.name, "name": chain.name}
    if chain.base is not None:
        body |= {
            "type": chain.base.type,
            "hook": chain.base.hook,
            "prio": chain.base.priority,
            "policy": chain.base.policy,
        }
    return {"chain": body}


def _rule(table: Table, chain: Chain, rule: Rule) -> Json:
    return {
        "rule": {
            "family": table.family,
            "table": table.name,
            "chain": chain.name,
            "expr": [statement_json(s) for s in rule.statements],
        }
    }


def value_json(value: Compared | AnyVerdict) -> Json:
    """The IR's values (not those only read back from listings: TypeError)."""
    match value:
        # The parts of map elements first: nearly all the values of a big table.
        case int():
            return value
        case IfName(name) | Symbol(name):
            return name
        case IPv4Address():
            return str(value)
        case IPv6Address():
            return ipv6_text(value)
        case Jump(target):
            return {"jump": {"target": target}}
        case SetOf(items):
            return {"set": [value_json(v) for v in items]}
        case SetRef(name):
            return f"@{name}"
        case Flags(names):
            return list(names) if len(names) > 1 else names[0]
        case PortRange(first, last):
            return first if first == last else {"range": [first, last]}
        case IPv4Network() | IPv6Network():
            return {"prefix": {"addr": str(value.network_address), "len": value.prefixlen}}
    raise TypeError(f"no JSON for {value!r}")


def operand_json(operand: Operand) -> Json:
    match operand:
        case Meta(key):
            return {"meta": {"key": key}}
        case Payload(protocol, field):
            return {"payload": {"protocol": protocol, "field": field}}
        case Fib(flags, result):
            return {"fib": {"result": result, "flags": list(flags)}}
        case Ct(key):
            return {"ct": {"key": key}}
        case Concat(parts):
            return {"concat": [operand_json(p) for p in parts]}
    raise TypeError(f"no JSON for {operand!r}")


def _lookup(lookup: MapLookup) -> Json:
    return {"map": {"key": operand_json(lookup.key), "data": f"@{lookup.map}"}}


def statement_json(statement: Statement) -> Json:
    match statement:
        case Match(left, right, op):
            return {"match": {"op": op, "left": operand_json(left), "right": value_json(right)}}
        case Verdict(kind):
            return {kind: None}
        case Masquerade():
            return {"masquerade": None}
        case Dnat(family, addr, port):
            return {"dnat": {"family": family, "addr": _lookup(addr), "port": _lookup(port)}}
        case VerdictMapLookup(key, name):
            return {"vmap": {"key": operand_json(key), "data": f"@{name}"}}
    raise TypeError(f"no JSON for {statement!r}")
