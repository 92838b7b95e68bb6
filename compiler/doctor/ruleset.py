"""Would another table drop, reject or take over nftfwd's traffic? A pure reading of the ruleset.

Input is the parsed `nft -j list ruleset` and, optionally, the text of `nft -a list
ruleset`: the only place where iptables-nft's `xt` matches show what they match (the
JSON says `{"xt": {"type": "match", "name": "conntrack"}}` and nothing more).

The traffic nftfwd produces for a host is described as flows: DNATed connections from
each uplink to each guest, guests' outbound connections, hairpin, the replies. Each
flow is walked through every base chain of every other table on the hooks it passes,
following jumps and gotos, and every match is judged three-valued: it matches all the
flow's packets, none, or maybe (some of them, or a match this reader cannot evaluate).
A drop, reject or drop policy that is reached is a finding: "drops" when certain, "may
drop" otherwise. Unspecified clients, destinations, protocols and ports stand for
arbitrary traffic: a rule naming particular ones does not match them, a rule naming all
does. Rules are judged by what they match; names only choose the wording of a fix.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from ipaddress import ip_address, ip_network, summarize_address_range
from itertools import product
from typing import Any

from nftfwd.doctor.findings import (
    AcceptSpec,
    Finding,
    iptables_insert_fix,
    libvirt_open_fix,
    nft_insert_fix,
    sorted_findings,
)
from nftfwd.errors import NftfwdError
from nftfwd.model import Bridge, Family, Forward, Guest, Host, IPAddress, IPNetwork, PortRange

Json = Any
DSTNAT, SRCNAT, MAX_DEPTH, MAX_ATOMS = -100, 100, 32, 4096
IPTABLES_TABLES = {"filter", "nat", "mangle", "raw", "security"}
IPTABLES_CHAINS = {"INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"}
L4 = {"tcp", "udp", "sctp", "dccp", "udplite"}
PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 33: "dccp", 58: "ipv6-icmp", 132: "sctp"}
NONTERMINAL_XT = {
    "LOG", "NFLOG", "CHECKSUM", "MARK", "CONNMARK", "TCPMSS", "CT", "NOTRACK", "TRACE",
    "DSCP", "TOS", "TTL", "HL", "CLASSIFY", "SECMARK", "CONNSECMARK", "AUDIT", "SET",
    "IDLETIMER", "LED", "RATEEST", "HMARK", "TEE",
}  # fmt: skip
NOOP_STATEMENTS = {
    "counter", "log", "mangle", "notrack", "set", "map", "flow", "last", "dup", "secmark",
    "ct helper", "ct timeout", "ct expectation", "synproxy", "meter", "reset",
}  # fmt: skip


# --- three-valued logic -------------------------------------------------------------


class Tri(Enum):
    NO = 0
    MAYBE = 1
    YES = 2


def t_and(*values: Tri) -> Tri:
    return min(values, key=lambda t: t.value, default=Tri.YES)


def t_not(value: Tri) -> Tri:
    return {Tri.NO: Tri.YES, Tri.YES: Tri.NO, Tri.MAYBE: Tri.MAYBE}[value]


def t_any(values: Iterable[Tri]) -> Tri:
    """Matches if some element does (elements of a set are alternatives)."""
    return max(values, key=lambda t: t.value, default=Tri.NO)


def t_every(values: Iterable[Tri]) -> Tri:
    """The flow's possible values (atoms) all match, none match, or some."""
    seen = set(values)
    return seen.pop() if len(seen) == 1 else Tri.MAYBE if seen else Tri.NO


def t_merge(a: Tri, b: Tri) -> Tri:
    return a if a is b else Tri.MAYBE


# --- the ruleset ----------------------------------------------------------------------


@dataclass
class Rule:
    index: int
    handle: int | None
    expr: list[Json]
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
    sets: dict[tuple[str, str, str], list[Json]]


def _int(value: Json, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def index_ruleset(ruleset: Json, text: str | None = None) -> Ruleset:
    """Tables, chains with their rules in order, and sets/maps of `nft -j list ruleset`."""
    items = ruleset.get("nftables") if isinstance(ruleset, dict) else None
    if not isinstance(items, list):
        raise NftfwdError("the ruleset is not the output of `nft -j list ruleset`.")
    texts = rule_texts(text or "")
    rs = Ruleset(set(), {}, {})
    for item in items:
        if not isinstance(item, dict) or len(item) != 1:
            continue
        kind, obj = next(iter(item.items()))
        if not isinstance(obj, dict):
            continue
        fam, table = str(obj.get("family", "")), str(obj.get("table", obj.get("name", "")))
        if kind == "table":
            rs.tables.add((fam, table))
        elif kind == "chain":
            key = (fam, table, str(obj.get("name", "")))
            chain = rs.chains.setdefault(key, Chain(*key, "", None, 0, "accept"))
            chain.type, chain.hook = str(obj.get("type", "")), obj.get("hook")
            chain.prio, chain.policy = _int(obj.get("prio"), 0), str(obj.get("policy", "accept"))
        elif kind == "rule":
            key = (fam, table, str(obj.get("chain", "")))
            chain = rs.chains.setdefault(key, Chain(*key, "", None, 0, "accept"))
            handle = obj.get("handle") if isinstance(obj.get("handle"), int) else None
            raw = obj.get("expr")
            expr: list[Json] = raw if isinstance(raw, list) else []
            shown = texts.get((*key, handle)) if handle is not None else None
            chain.rules.append(Rule(len(chain.rules) + 1, handle, expr, shown or render(expr)))
        elif kind in ("set", "map"):
            elems = obj.get("elem", [])
            rs.sets[(fam, table, str(obj.get("name", "")))] = (
                elems if isinstance(elems, list) else []
            )
    return rs


# --- the text listing: rules as nft shows them, and what xt matches translate to ------

_HANDLE = re.compile(r"\s*# handle (\d+)\s*$")
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
            body = re.sub(r"\bcounter packets \d+ bytes \d+", "", code)
            out[(family, table, chain, int(found.group(1)))] = " ".join(body.split())
        depth += code.count("{") - code.count("}")
        chain = chain if depth >= 2 else ""
    return out


def _value(tokens: list[str], i: int) -> tuple[Json, int]:
    """One value (with commas: a list; in braces: a set) starting at tokens[i]."""
    items: list[Json] = []
    if i < len(tokens) and tokens[i] == "{":
        i += 1
        while i < len(tokens) and tokens[i] != "}":
            if tokens[i] != ",":
                items.append(_atom(tokens[i]))
            i += 1
        return {"set": items}, i + 1
    while i < len(tokens):
        items.append(_atom(tokens[i]))
        if i + 2 < len(tokens) and tokens[i + 1] == ",":
            i += 2
            continue
        return (items[0] if len(items) == 1 else {"set": items}), i + 1
    return None, i


def _atom(token: str) -> Json:
    if token.isdigit():
        return int(token)
    first, dash, last = token.partition("-")
    if dash and first.isdigit() and last.isdigit():
        return {"range": [int(first), int(last)]}
    return token.strip('"')


def xt_conditions(name: str, text: str) -> list[Json] | None:
    """What an xt match of this name tests, as native matches read from the rule's text.

    None: the text does not say (nft without xtables translation, or a match this
    reader does not know); the match is then judged "maybe".
    """
    if name == "comment":
        return []
    if f"xt match {name}" in text or f'xt match "{name}"' in text:
        return None
    tokens = _TOKEN.findall(text)
    conds: list[Json] = []
    i = 0
    while i < len(tokens):
        tok, nxt = tokens[i], tokens[i + 1] if i + 1 < len(tokens) else ""
        if name in ("conntrack", "state") and tok == "ct":
            if nxt not in ("state", "status", "direction"):
                return None
            left: Json = {"ct": {"key": nxt}}
            i += 2
        elif name == "addrtype" and tok == "fib":
            flags: list[str] = []
            i += 1
            while i < len(tokens) and tokens[i] != "type":
                flags.append(tokens[i])
                i += 1
            left = {"fib": {"result": "type", "flags": flags}}
            i += 1
        elif name == "multiport" and (tok in L4 or tok == "th") and nxt in ("sport", "dport"):
            left = {"payload": {"protocol": tok, "field": nxt}}
            i += 2
        else:
            i += 1
            continue
        op = "=="
        if i < len(tokens) and tokens[i] in ("!=", "!", "=="):
            op = "!=" if tokens[i] != "==" else "=="
            i += 1
        right, i = _value(tokens, i)
        conds.append({"match": {"op": op, "left": left, "right": right}})
    return conds or None


def render(expr: list[Json]) -> str:
    """A short nft-like rendering of a rule's expressions (when no text listing is given)."""
    words: list[str] = []
    for item in expr:
        if not isinstance(item, dict) or len(item) != 1:
            continue
        key, val = next(iter(item.items()))
        if key == "counter":
            continue
        if key == "match" and isinstance(val, dict):
            op = "" if val.get("op") in ("==", "in", None) else f"{val.get('op')} "
            left = _render_value(val.get("left"))
            quote = left in ("iifname", "oifname", "iif", "oif")
            words.append(f"{left} {op}{_render_value(val.get('right'), quote)}")
        elif key == "xt" and isinstance(val, dict):
            words.append(f"xt {val.get('type')} {val.get('name')}")
        elif key in ("jump", "goto") and isinstance(val, dict):
            words.append(f"{key} {val.get('target')}")
        else:
            words.append(key)
    return " ".join(words)


def _render_value(value: Json, quote: bool = False) -> str:
    if isinstance(value, dict) and len(value) == 1:
        key, val = next(iter(value.items()))
        if key in ("meta", "ct") and isinstance(val, dict):
            name = str(val.get("key"))
            return name if name in ("iifname", "oifname", "iif", "oif") else f"{key} {name}"
        if key == "payload" and isinstance(val, dict):
            return f"{val.get('protocol')} {val.get('field')}"
        if key == "prefix" and isinstance(val, dict):
            return f"{val.get('addr')}/{val.get('len')}"
        if key == "range" and isinstance(val, list):
            return "-".join(_render_value(v) for v in val)
        if key in ("set", "concat") and isinstance(val, list):
            parts = [_render_value(v, quote) for v in val]
            return "{ " + ", ".join(parts) + " }" if key == "set" else " . ".join(parts)
        if key == "fib" and isinstance(val, dict):
            return f"fib {' . '.join(map(str, val.get('flags', [])))} {val.get('result')}"
        return str(key)
    if isinstance(value, list):
        return ",".join(_render_value(v, quote) for v in value)
    return f'"{value}"' if quote and isinstance(value, str) else str(value)


# --- the traffic nftfwd produces: flows ------------------------------------------------

ANYWHERE = "anywhere"  # an arbitrary outside address: a rule naming particular ones misses it
HOST_ADDRESS = "host address"  # some address of this host, not known which one
Addr = IPNetwork | str


@dataclass(frozen=True)
class Packet:
    """What a chain can see of a flow's packets; tuples hold the possible values."""

    family: Family
    iif: tuple[str, ...]
    oif: tuple[str, ...]
    saddr: tuple[Addr, ...]
    daddr: tuple[Addr, ...]
    protos: tuple[str, ...] | None  # None: any protocol
    sport: tuple[PortRange, ...] | None  # None: any port
    dport: tuple[PortRange, ...] | None
    state: str  # new | established
    direction: str  # original | reply
    dnat: Tri  # ct status dnat
    local: Tri  # daddr is an address of this host (fib daddr type local)


@dataclass(frozen=True)
class Flow:
    """Packets of one kind: as the forward hook sees them (mid), before nftfwd's dstnat
    (early) and after its srcnat (late), where those differ."""

    kind: str  # forward | hairpin | local | outbound | bridged
    label: str
    bridge: Bridge
    hooks: tuple[str, ...]
    mid: Packet
    early: Packet | None = None
    late: Packet | None = None
    forward: Forward | None = None
    guest: Guest | None = None

    @property
    def dnated(self) -> bool:
        return self.kind in ("forward", "hairpin", "local")


ROUTED = ("prerouting", "forward", "postrouting")


def _merge(a: Packet, b: Packet) -> Packet:
    def union(x: tuple[Any, ...] | None, y: tuple[Any, ...] | None) -> Any:
        return None if x is None or y is None else tuple(dict.fromkeys(x + y))

    return replace(
        a,
        iif=union(a.iif, b.iif),
        oif=union(a.oif, b.oif),
        saddr=union(a.saddr, b.saddr),
        daddr=union(a.daddr, b.daddr),
        protos=union(a.protos, b.protos),
        sport=union(a.sport, b.sport),
        dport=union(a.dport, b.dport),
        dnat=t_merge(a.dnat, b.dnat),
        local=t_merge(a.local, b.local),
    )


def view(flow: Flow, hook: str, prio: int, dstnat: int = DSTNAT, srcnat: int = SRCNAT) -> Packet:
    """The flow's packets as a base chain on this hook and priority sees them."""
    pkt = flow.mid
    if hook in ("prerouting", "output") and flow.early is not None:
        pkt = flow.early if prio < dstnat else _merge(flow.early, pkt) if prio == dstnat else pkt
    if hook == "postrouting" and flow.late is not None:
        pkt = flow.late if prio > srcnat else _merge(pkt, flow.late) if prio == srcnat else pkt
    if hook == "prerouting":
        pkt = replace(pkt, oif=("",))
    if hook == "output":
        pkt = replace(pkt, iif=("",))
    return pkt


def _host_addresses(
    host: Host, fam: Family, addrs: Mapping[str, Sequence[IPAddress]] | None
) -> tuple[Addr, ...]:
    """Where a forward listens that names no address (model.md, "Where a forward listens")."""
    if host.addresses:
        return tuple(ip_network(a) for a in host.addresses_in(fam))
    if addrs is None:
        return (HOST_ADDRESS,)
    skip = {b.name for b in host.bridges} | {"lo"}
    found = {
        a
        for dev, lst in addrs.items()
        if dev not in skip
        for a in lst
        if (a.version == 4) == (fam == "ip") and not (a.is_loopback or a.is_link_local)
    }
    return tuple(ip_network(a) for a in sorted(found, key=str)) or (HOST_ADDRESS,)


def _own(
    addresses: Mapping[str, Sequence[IPAddress]] | None, dev: str, fam: Family
) -> tuple[Addr, ...]:
    """The addresses of one of this host's interfaces, where known."""
    found = [a for a in (addresses or {}).get(dev, ()) if (a.version == 4) == (fam == "ip")]
    return tuple(ip_network(a) for a in found) or (HOST_ADDRESS,)


def _forward_flows(
    host: Host,
    bridge: Bridge,
    guest: Guest,
    fw: Forward,
    fam: Family,
    listen: tuple[Addr, ...],
    addresses: Mapping[str, Sequence[IPAddress]] | None,
) -> list[Flow]:
    address = guest.address_in(fam)
    if address is None:
        return []
    sources = tuple(s for s in fw.sources if (s.version == 4) == (fam == "ip"))
    if fw.sources and not sources:
        return []  # a family that sources does not name is closed
    g, protos, to = ip_network(address), fw.protos, (fw.to,)
    what = f"{'/'.join(protos)} port {fw.port}, forwarded to {guest.name} {address} port {fw.to}"
    clients: tuple[Addr, ...] = sources or (ANYWHERE,)
    new = Packet(
        fam, (), (bridge.name,), (), (g,), protos, None, to, "new", "original", Tri.YES, Tri.NO
    )
    reply = Packet(fam, (bridge.name,), (), (g,), clients, protos, to, None, "established", "reply",
                   Tri.YES, Tri.NO)  # fmt: skip

    def pair(kind: str, iif: str, saddr: tuple[Addr, ...], label: str, masq: bool) -> list[Flow]:
        first = replace(new, iif=(iif,), saddr=saddr)
        early = replace(
            first, oif=("lo",), daddr=listen, dport=(fw.port,), dnat=Tri.NO, local=Tri.YES
        )
        late = replace(first, saddr=_own(addresses, bridge.name, fam)) if masq else None
        back = replace(reply, oif=(iif,), daddr=saddr)
        hooks = ("output", "postrouting") if kind == "local" else ROUTED
        back_hooks = ("prerouting",) if kind == "local" else ROUTED
        est = replace(first, state="established")
        return [
            Flow(kind, f"new {label}", bridge, hooks, first, early, late, fw, guest),
            Flow(kind, f"established {label}", bridge, hooks, est,
                 replace(early, state="established", dnat=Tri.YES), late, fw, guest),
            Flow(kind, f"replies to {label}", bridge, back_hooks, back, None,
                 replace(back, saddr=listen), fw, guest),
        ]  # fmt: skip

    flows: list[Flow] = []
    for uplink in host.uplinks:
        flows += pair("forward", uplink, clients, f"connections from {uplink} to {what}", fw.snat)
    if not host.hairpin:
        return flows
    for other in host.bridges:
        subnet = other.subnet_in(fam)
        if subnet is None or (sources and not any(subnet.overlaps(s) for s in sources)):
            continue
        label = f"hairpin connections from guests on {other.name} to {what}"
        flows += pair("hairpin", other.name, (subnet,), label, fw.snat or other is bridge)
    if not sources:
        label = f"this host's own connections to {what}"
        flows += pair("local", "", _own(addresses, bridge.name, fam), label, fw.snat)
    return flows


def _bridge_flows(
    host: Host,
    bridge: Bridge,
    fam: Family,
    bridged: bool,
    addresses: Mapping[str, Sequence[IPAddress]] | None,
) -> list[Flow]:
    subnet = bridge.subnet_in(fam)
    if subnet is None:
        return []
    flows: list[Flow] = []
    out = Packet(fam, (bridge.name,), (), (subnet,), (ANYWHERE,), None, None, None, "new",
                 "original", Tri.NO, Tri.NO)  # fmt: skip
    for uplink in host.uplinks:
        new = replace(out, oif=(uplink,))
        mine = _own(addresses, uplink, fam)
        late = replace(new, saddr=mine) if bridge.masquerade else None
        back = replace(new, iif=(uplink,), oif=(bridge.name,), saddr=(ANYWHERE,), daddr=(subnet,),
                       state="established", direction="reply")  # fmt: skip
        early = replace(back, daddr=mine, local=Tri.YES) if bridge.masquerade else None
        what = f"connections from guests on {bridge.name} ({subnet}) out through {uplink}"
        flows += [
            Flow("outbound", f"new {what}", bridge, ROUTED, new, None, late),
            Flow("outbound", f"established {what}", bridge, ROUTED,
                 replace(new, state="established"), None,
                 late and replace(late, state="established")),
            Flow("outbound", f"replies to {what}", bridge, ROUTED, back, early),
        ]  # fmt: skip
    if bridged:
        within = replace(out, oif=(bridge.name,), daddr=(subnet,))
        label = f"traffic between guests on {bridge.name} (br_netfilter: bridged traffic)"
        est = replace(within, state="established")
        flows += [
            Flow("bridged", f"new {label}", bridge, ROUTED, within),
            Flow("bridged", f"established {label}", bridge, ROUTED, est),
        ]
    return flows


def build_flows(
    host: Host,
    bridged: Collection[Family] = (),
    addresses: Mapping[str, Sequence[IPAddress]] | None = None,
) -> list[Flow]:
    """Every kind of packet nftfwd's rules for this host let through, in a stable order."""
    flows: list[Flow] = []
    for fam in ("ip", "ip6"):
        fam_t: Family = "ip" if fam == "ip" else "ip6"
        for bridge in host.bridges:
            flows += _bridge_flows(host, bridge, fam_t, fam_t in bridged, addresses)
        for bridge in host.bridges:
            for guest in bridge.guests:
                for fw in guest.forwards:
                    if fw.address is not None:
                        if (fw.address.version == 4) != (fam == "ip"):
                            continue
                        listen: tuple[Addr, ...] = (ip_network(fw.address),)
                    else:
                        listen = _host_addresses(host, fam_t, addresses)
                    if listen:
                        flows += _forward_flows(host, bridge, guest, fw, fam_t, listen, addresses)
    return flows


def spec_for(flow: Flow, pkt: Packet) -> list[AcceptSpec]:
    """What to accept in another tool's chain so that this flow passes it."""
    iif, oif = pkt.iif[0] if len(pkt.iif) == 1 else "", pkt.oif[0] if len(pkt.oif) == 1 else ""
    iif, oif = ("" if iif == "lo" else iif), ("" if oif == "lo" else oif)
    fam, subnet = pkt.family, str(flow.bridge.subnet_in(pkt.family))
    if flow.dnated and flow.forward is not None and pkt.dnat is not Tri.YES:
        port = str(flow.forward.port)
        return [AcceptSpec(fam, iif, oif, "dport", proto=p, port=port) for p in flow.forward.protos]
    if flow.dnated:
        return [AcceptSpec(fam, iif, oif, "dnat")]
    if flow.kind == "outbound" and pkt.direction == "reply":
        local = pkt.local is not Tri.NO
        return [AcceptSpec(fam, iif, oif, "established" if local else "daddr-reply", net=subnet)]
    if flow.kind == "outbound" and flow.bridge.subnet_in(fam) in pkt.saddr:
        return [AcceptSpec(fam, iif, oif, "saddr", net=subnet)]
    return [AcceptSpec(fam, iif, oif, "")]


# --- judging one table's matches against a packet view ----------------------------------

Test = Callable[[Any, Json], Tri]
Dep = Callable[[Any], Tri]


def _always(_: Any) -> Tri:
    return Tri.YES


def _unknown(_: Any, __: Json) -> Tri:
    return Tri.MAYBE


def _equal(atom: Any, elem: Json) -> Tri:
    return Tri.YES if atom == elem else Tri.NO


def _ifname(atom: str, elem: Json) -> Tri:
    if not isinstance(elem, str):
        return Tri.MAYBE  # iif/oif of an interface that no longer exists: an index
    if elem.endswith("*") and not elem.endswith("\\*"):
        return Tri.YES if atom.startswith(elem[:-1]) else Tri.NO
    return Tri.YES if atom == elem.replace("\\*", "*") else Tri.NO


def _nets(elem: Json) -> list[IPNetwork] | None:
    try:
        if isinstance(elem, str):
            return [ip_network(elem, strict=False)]
        if isinstance(elem, dict) and isinstance(elem.get("prefix"), dict):
            p = elem["prefix"]
            return [ip_network(f"{p['addr']}/{p['len']}", strict=False)]
        if isinstance(elem, dict) and isinstance(elem.get("range"), list):
            first, last = (ip_address(v) for v in elem["range"])
            return list(summarize_address_range(first, last))
    except (ValueError, TypeError, KeyError):
        return None
    return None


def _address(version: int) -> Test:
    def test(atom: Addr, elem: Json) -> Tri:
        found = _nets(elem)
        if found is None:
            return Tri.MAYBE
        nets = [n for n in found if n.version == version]
        if isinstance(atom, str):  # ANYWHERE or HOST_ADDRESS
            if any(n.prefixlen == 0 for n in nets):
                return Tri.YES
            usable = [n for n in nets if not (n.is_loopback or n.is_link_local)]
            return Tri.MAYBE if atom == HOST_ADDRESS and usable else Tri.NO
        if atom.version != version:
            return Tri.NO
        return t_any(
            Tri.YES if atom.subnet_of(n) else Tri.MAYBE if atom.overlaps(n) else Tri.NO  # type: ignore[arg-type]
            for n in nets
        )

    return test


def _port_range(elem: Json) -> tuple[int, int] | None:
    if isinstance(elem, int) and not isinstance(elem, bool):
        return elem, elem
    if isinstance(elem, str) and elem.isdigit():
        return int(elem), int(elem)
    if isinstance(elem, dict) and isinstance(elem.get("range"), list) and len(elem["range"]) == 2:
        bounds = [_port_range(v) for v in elem["range"]]
        if bounds[0] is not None and bounds[1] is not None:
            return bounds[0][0], bounds[1][1]
    return None


def _port(atom: tuple[str | None, PortRange | None], elem: Json) -> Tri:
    bounds, rng = _port_range(elem), atom[1]
    if bounds is None:
        return Tri.MAYBE
    if rng is None:  # an arbitrary port: only a match on every port covers it
        return Tri.YES if bounds == (0, 65535) else Tri.NO
    if bounds[0] <= rng.first and rng.last <= bounds[1]:
        return Tri.YES
    return Tri.NO if rng.last < bounds[0] or bounds[1] < rng.first else Tri.MAYBE


def _proto(atom: str | None, elem: Json) -> Tri:
    if atom is None:
        return Tri.NO  # arbitrary traffic is not one particular protocol
    name = PROTO_NAMES.get(elem, str(elem)) if isinstance(elem, int) else str(elem)
    return Tri.YES if {"icmpv6": "ipv6-icmp"}.get(name, name) == atom else Tri.NO


def _fib_type(atom: Tri, elem: Json) -> Tri:
    if elem == "local":
        return atom
    return Tri.NO if atom is Tri.YES else Tri.MAYBE


def _ct_status(atom: Tri, elem: Json) -> Tri:
    return atom if elem == "dnat" else Tri.MAYBE


class Judge:
    """Judges the matches of one table's rules against one packet view."""

    def __init__(self, rs: Ruleset, family: str, table: str, pkt: Packet) -> None:
        self.rs, self.family, self.table, self.pkt = rs, family, table, pkt

    def elements(self, right: Json) -> list[Json] | None:
        if isinstance(right, str) and right.startswith("@"):
            found = self.rs.sets.get((self.family, self.table, right[1:]))
            items: list[Json] | None = found
        elif isinstance(right, dict) and "set" in right:
            items = right["set"] if isinstance(right["set"], list) else [right["set"]]
        else:
            items = right if isinstance(right, list) else [right]
        if items is None:
            return None
        out = []
        for item in items:
            if isinstance(item, list) and len(item) == 2:  # a map's [key, data]
                item = item[0]
            if isinstance(item, dict) and isinstance(item.get("elem"), dict):
                item = item["elem"].get("val")
            out.append(item)
        return out

    def attribute(self, left: Json) -> tuple[list[Any], Test, Dep] | None:
        """The packet's possible values for an expression, how to test one against an
        element, and whether the expression exists for it (tcp dport needs tcp)."""
        pkt = self.pkt
        if not isinstance(left, dict) or len(left) != 1:
            return None
        kind, val = next(iter(left.items()))
        protos: list[str | None] = list(pkt.protos) if pkt.protos is not None else [None]
        if kind == "meta" and isinstance(val, dict):
            key = val.get("key")
            if key in ("iifname", "iif", "oifname", "oif"):
                return list(pkt.iif if key in ("iifname", "iif") else pkt.oif), _ifname, _always
            if key == "l4proto":
                return protos, _proto, _always
            if key in ("nfproto", "protocol"):
                names = {"nfproto": {"ip": "ipv4", "ip6": "ipv6"}, "protocol": {}}[key]
                return [names.get(pkt.family, pkt.family)], _equal, _always
            return None
        if kind == "payload" and isinstance(val, dict):
            proto, fld = val.get("protocol"), val.get("field")
            if proto in ("ip", "ip6"):
                same = Tri.YES if proto == pkt.family else Tri.NO

                def fam_dep(_: Any) -> Tri:
                    return same

                if fld in ("saddr", "daddr"):
                    addrs = pkt.saddr if fld == "saddr" else pkt.daddr
                    return list(addrs), _address(4 if proto == "ip" else 6), fam_dep
                if fld in ("protocol", "nexthdr"):
                    return protos, _proto, fam_dep
                return [None], _unknown, fam_dep
            allowed = L4 if proto == "th" else {proto} if proto in L4 else None
            if allowed is None:
                allowed = (
                    {"icmp"} if proto == "icmp" else {"ipv6-icmp"} if proto == "icmpv6" else None
                )
                if allowed is None:
                    return None

            def l4_dep(atom: Any) -> Tri:
                return Tri.YES if atom[0] in allowed else Tri.NO

            ports = (
                (pkt.sport if fld == "sport" else pkt.dport) if fld in ("sport", "dport") else None
            )
            atoms = list(product(protos, ports if ports is not None else [None]))
            return atoms, (_port if fld in ("sport", "dport") else _unknown), l4_dep
        if kind == "ct" and isinstance(val, dict) and set(val) == {"key"}:
            key = val["key"]
            if key in ("state", "direction"):
                return [pkt.state if key == "state" else pkt.direction], _equal, _always
            if key == "status":
                return [pkt.dnat], _ct_status, _always
            return None
        if kind == "fib" and isinstance(val, dict):
            if val.get("result") == "type" and val.get("flags") == ["daddr"]:
                return [pkt.local], _fib_type, _always
            return None
        if kind == "concat" and isinstance(val, list):
            return self._concat(val)
        return None

    def _concat(self, parts: list[Json]) -> tuple[list[Any], Test, Dep] | None:
        subs = [self.attribute(p) for p in parts]
        if any(s is None for s in subs):
            return None
        known = [s for s in subs if s is not None]
        size = 1
        for atoms, _, _ in known:
            size *= len(atoms)
        if size > MAX_ATOMS:
            return None

        def test(atom: tuple[Any, ...], elem: Json) -> Tri:
            values = elem.get("concat") if isinstance(elem, dict) else None
            if not isinstance(values, list) or len(values) != len(known):
                return Tri.MAYBE
            return t_and(*(s[1](a, v) for s, a, v in zip(known, atom, values, strict=True)))

        def dep(atom: tuple[Any, ...]) -> Tri:
            return t_and(*(s[2](a) for s, a in zip(known, atom, strict=True)))

        return list(product(*(s[0] for s in known))), test, dep

    def match(self, m: Json) -> Tri:
        if not isinstance(m, dict):
            return Tri.MAYBE
        op, attr = m.get("op", "=="), self.attribute(m.get("left"))
        elems = self.elements(m.get("right"))
        if attr is None or op not in ("==", "in", "!="):
            return Tri.MAYBE
        atoms, test, dep = attr
        results = []
        for atom in atoms:
            exists = dep(atom)
            if exists is Tri.NO:  # tcp dport on a udp packet: neither == nor != matches
                results.append(Tri.NO)
                continue
            found = Tri.MAYBE if elems is None else t_any(test(atom, e) for e in elems)
            results.append(t_and(exists, t_not(found) if op == "!=" else found))
        return t_every(results)


# --- walking a base chain -----------------------------------------------------------------


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
            conds = xt_conditions(str(val.get("name", "")), rule.text)
            return (
                Tri.MAYBE
                if conds is None
                else t_and(*(self.judge.match(c["match"]) for c in conds))
            )
        return Tri.MAYBE

    def rule(self, chain: Chain, rule: Rule, certain: bool, depth: int) -> tuple[str, bool, bool]:
        m = Tri.YES
        for item in rule.expr:
            if not isinstance(item, dict) or len(item) != 1:
                m = t_and(m, Tri.MAYBE)
                continue
            key, val = next(iter(item.items()))
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
                result = t_and(result, self.judge.match(match))
        return result

    def vmap(
        self, chain: Chain, rule: Rule, val: Json, m: Tri, certain: bool, depth: int
    ) -> tuple[str, bool, bool]:
        data = val.get("data")
        if isinstance(data, str) and data.startswith("@"):
            entries = self.rs.sets.get((chain.family, chain.table, data[1:]))
        else:
            entries = data.get("set") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            return "continue", False, False
        for entry in entries:
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], dict)):
                certain = False
                continue
            cond = t_and(
                m, self.judge.match({"op": "==", "left": val.get("key"), "right": entry[0]})
            )
            verdict = _verdict(*next(iter(entry[1].items()))) if len(entry[1]) == 1 else None
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


# --- from events to findings ------------------------------------------------------------


@dataclass
class Hit:
    kind: str
    chain: Chain
    rule: Rule | None
    base: Chain
    certain: bool = False
    flows: list[Flow] = field(default_factory=list)
    specs: set[AcceptSpec] = field(default_factory=set)

    def add(self, flow: Flow, certain: bool, specs: Iterable[AcceptSpec] = ()) -> None:
        self.certain |= certain
        if flow not in self.flows:
            self.flows.append(flow)
        self.specs.update(specs)

    @property
    def subject(self) -> str:
        if self.rule is None:
            return f"{self.chain.where}, policy drop"
        handle = f" (handle {self.rule.handle})" if self.rule.handle is not None else ""
        return f"{self.chain.where}, rule {self.rule.index}{handle}"

    def what(self) -> str:
        if self.rule is None:
            return f"The drop policy of base chain {self.base.name}"
        return f"Rule `{self.rule.text}`"

    def summary(self) -> str:
        labels = list(dict.fromkeys(f.label for f in self.flows))
        more = f"; and {len(labels) - 3} more" if len(labels) > 3 else ""
        return "; ".join(labels[:3]) + more


def _iptables_made(chain: Chain) -> bool:
    return (
        chain.family in ("ip", "ip6")
        and chain.table in IPTABLES_TABLES
        and chain.name in IPTABLES_CHAINS
    )


def _libvirt(chain: Chain) -> bool:
    return chain.name.startswith("LIBVIRT_") or chain.table == "libvirt_network"


def _where(base: Chain) -> str:
    return f"hook {base.hook}, priority {base.prio}"


def _drop_finding(hit: Hit, rs: Ruleset, networks: Mapping[str, str]) -> Finding:
    verb = {"reject": "rejects", "policy": "drops"}.get(hit.kind, "drops")
    if not hit.certain:
        verb = "may " + verb[:-1]
    via = f"base chain {hit.base.name}, " if hit.chain is not hit.base else ""
    bridges = sorted({f.bridge.name for f in hit.flows})
    if _libvirt(hit.chain):
        fix = "\n".join(libvirt_open_fix(b, networks.get(b)) for b in bridges)
        why = (
            f"; this is libvirt's NAT mode for {', '.join(bridges)}, "
            "and an accept in nftfwd's table cannot overrule another table's verdict"
        )
    else:
        why = "; an accept in nftfwd's table cannot overrule another table's drop"
        if hit.kind == "reject":
            why = "; an accept in nftfwd's table cannot overrule another table's reject"
        fam, table, base = hit.base.family, hit.base.table, hit.base.name
        docker = (fam, table, "DOCKER-USER") in rs.chains and base == "FORWARD"
        if _iptables_made(hit.base):
            fix = iptables_insert_fix(fam, table, "DOCKER-USER" if docker else base, hit.specs,
                                      docker=docker)  # fmt: skip
        else:
            fix = nft_insert_fix(fam, table, base, hit.specs)
        if table == "firewalld":
            fix += (
                "\n# firewalld rewrites its table when it reloads: add the same with firewall-cmd"
            )
    ident = {"reject": "foreign-chain-rejects", "policy": "foreign-policy-drop"}
    if all(f.kind == "bridged" for f in hit.flows):
        fix += "\n# or keep bridged traffic out of the forward hook (Docker needs it for its own"
        fix += " bridges): sysctl -w net.bridge.bridge-nf-call-iptables=0"
        key = "br-netfilter"
    else:
        key = ident.get(hit.kind, "foreign-chain-drops")
    message = f"{hit.what()} ({via}{_where(hit.base)}) {verb} {hit.summary()}{why}."
    return Finding(key, hit.subject, message, fix)


def _forward_names(hit: Hit) -> str:
    names = []
    for flow in hit.flows:
        fw = flow.forward
        if fw is not None:
            names.append(f"{'/'.join(fw.protos)} port {fw.port} of forward {fw.path}")
    return "; ".join(dict.fromkeys(names))


def _dnat_finding(hit: Hit, dstnat: int) -> Finding:
    chain, rule = hit.chain, hit.rule
    assert rule is not None
    verb = "also DNATs" if hit.certain else "may also DNAT"
    if hit.base.prio < dstnat:
        order = f"its chain runs before nftfwd's ({hit.base.prio} < {dstnat}), so it takes them"
    else:
        order = f"its chain has nftfwd's priority ({dstnat}): which one takes them is undefined"
    fw = hit.flows[0].forward
    assert fw is not None
    move = f"# or give the forward {fw.path} another port in the model"
    if _iptables_made(hit.base) and chain.name.startswith("DOCKER"):
        fix = "# Docker publishes this port; find the container:\n"
        fix += (
            f"docker ps --filter publish={fw.port.first}\n# and publish it on another host port\n"
        )
        fix += move
    elif _iptables_made(hit.base):
        tool = "iptables" if chain.family == "ip" else "ip6tables"
        fix = f"{tool} -t {chain.table} -D {chain.name} {rule.index}\n{move}"
    else:
        fix = f"nft delete rule {chain.family} {chain.table} {chain.name} handle {rule.handle}"
        fix += "\n# (better: change the configuration of the tool that owns that table)\n" + move
    message = f"Rule `{rule.text}` ({_where(hit.base)}) {verb} {_forward_names(hit)}; {order}."
    return Finding("dnat-conflict", hit.subject, message, fix)


def _masq_finding(hit: Hit, networks: Mapping[str, str]) -> Finding:
    assert hit.rule is not None
    bridge = hit.flows[0].bridge
    subnets = ", ".join(str(s) for s in (bridge.subnet, bridge.subnet6) if s is not None)
    verb = "masquerades" if hit.certain else "may masquerade"
    what = f"Rule `{hit.rule.text}` ({_where(hit.base)}) {verb} connections"
    what += f" from guests on {bridge.name} ({subnets})"
    if _libvirt(hit.chain):
        message = (
            f"{what}: the libvirt network on {bridge.name} is in NAT mode, whose own rules "
            "reject new connections into it and whose NAT would do nftfwd's."
        )
        return Finding("libvirt-nat-network", hit.subject, message,
                       libvirt_open_fix(bridge.name, networks.get(bridge.name)))  # fmt: skip
    message = f"{what}, although the model says masquerade: false for {bridge.name}."
    chain, rule = hit.chain, hit.rule
    if _iptables_made(hit.base):
        tool = "iptables" if chain.family == "ip" else "ip6tables"
        fix = f"{tool} -t {chain.table} -D {chain.name} {rule.index}"
    else:
        fix = f"nft delete rule {chain.family} {chain.table} {chain.name} handle {rule.handle}"
    fix += "\n# (better: change the configuration of the tool that owns that table)"
    return Finding("foreign-masquerade", hit.subject, message, fix)


def _own_prio(rs: Ruleset, own_table: str, hook: str, default: int) -> int:
    for chain in rs.chains.values():
        if (chain.family, chain.table, chain.type, chain.hook) == ("inet", own_table, "nat", hook):
            return chain.prio
    return default


def analyse_ruleset(
    ruleset: Json,
    own_table: str,
    host: Host,
    *,
    ruleset_text: str | None = None,
    bridged: Collection[Family] = (),
    addresses: Mapping[str, Sequence[IPAddress]] | None = None,
    libvirt_networks: Mapping[str, str] | None = None,
) -> list[Finding]:
    """Findings about every other table that would drop, reject or take nftfwd's traffic.

    ruleset: parsed `nft -j list ruleset`; ruleset_text: `nft -a list ruleset` (lets
    iptables-nft's xt matches be judged); bridged: families where br_netfilter passes
    bridged traffic through the forward hook; addresses: interface -> its addresses
    (to know where forwards listen, when the host lists no addresses); libvirt_networks:
    bridge -> libvirt network name (for the fixes). Pure: reads nothing else.
    """
    rs = index_ruleset(ruleset, ruleset_text)
    networks = libvirt_networks or {}
    findings: list[Finding] = []
    if ("inet", own_table) not in rs.tables:
        findings.append(Finding(
            "table-not-loaded", f"table inet {own_table}",
            f"nftfwd's table inet {own_table} is not loaded, so none of this host's forwards, "
            "masquerade or hairpin exists.",
            "nftfwd load --atomic\n# and load it at every boot: nftfwd install",
        ))  # fmt: skip
    dstnat = _own_prio(rs, own_table, "prerouting", DSTNAT)
    srcnat = _own_prio(rs, own_table, "postrouting", SRCNAT)
    bases = sorted(
        (c for c in rs.chains.values()
         if c.hook in ("prerouting", "forward", "postrouting", "output")
         and c.family in ("ip", "ip6", "inet") and (c.family, c.table) != ("inet", own_table)),
        key=lambda c: (c.family, c.table, c.name),
    )  # fmt: skip
    drops: dict[tuple[str, str, str, int, str], Hit] = {}
    dnats: dict[tuple[str, str, str, int], Hit] = {}
    masqs: dict[tuple[str, str, str], Hit] = {}
    for flow in build_flows(host, bridged, addresses):
        for base in bases:
            if base.family not in (flow.mid.family, "inet") or base.hook not in flow.hooks:
                continue
            hook, prio = str(base.hook), base.prio
            if base.type == "nat":
                if flow.mid.state != "new" or flow.mid.direction != "original":
                    continue  # nat chains see a connection's first packet only
                if flow.dnated and hook in ("prerouting", "output"):
                    if prio > dstnat:
                        continue  # nftfwd's DNAT came first: later nat chains never see it
                    prio = min(prio, dstnat - 1)
                if hook == "postrouting" and flow.late is not None:
                    if prio > srcnat:
                        continue
                    prio = min(prio, srcnat - 1)
            pkt = view(flow, hook, prio, dstnat, srcnat)
            for ev in Walk(rs, base, pkt).run():
                index = ev.rule.index if ev.rule else 0
                if ev.kind in ("drop", "reject", "policy", "unknown"):
                    key = (ev.chain.family, ev.chain.table, ev.chain.name, index, base.name)
                    hit = drops.setdefault(key, Hit(ev.kind, ev.chain, ev.rule, base))
                    hit.add(flow, ev.certain, spec_for(flow, pkt))
                elif ev.kind == "dnat" and flow.dnated and hook in ("prerouting", "output"):
                    dkey = (ev.chain.family, ev.chain.table, ev.chain.name, index)
                    dnats.setdefault(dkey, Hit(ev.kind, ev.chain, ev.rule, base)).add(
                        flow, ev.certain
                    )
                elif ev.kind == "snat" and flow.kind == "outbound":
                    mkey = (ev.chain.family, ev.chain.table, flow.bridge.name)
                    masq = masqs.setdefault(mkey, Hit(ev.kind, ev.chain, ev.rule, base))
                    if ev.certain and not masq.certain:
                        masq.rule, masq.chain, masq.base = ev.rule, ev.chain, base
                    masq.add(flow, ev.certain)
    rejected_by_libvirt: set[str] = set()
    for hit in drops.values():
        findings.append(_drop_finding(hit, rs, networks))
        if _libvirt(hit.chain):
            rejected_by_libvirt.update(f.bridge.name for f in hit.flows)
    findings += [_dnat_finding(hit, dstnat) for hit in dnats.values()]
    for (_, _, bridge), hit in masqs.items():
        libvirt = _libvirt(hit.chain)
        if bridge not in rejected_by_libvirt if libvirt else not hit.flows[0].bridge.masquerade:
            findings.append(_masq_finding(hit, networks))
    return sorted_findings(findings)
