"""The traffic nftfwd produces for a host, as flows, and how a base chain sees each.

The flows: DNATed connections from each uplink to each guest, guests' outbound
connections, hairpin, the replies; each as a base chain on a given hook and priority
sees it.

Unspecified clients, destinations, protocols and ports stand for arbitrary traffic: a
rule naming particular ones does not match them, a rule naming all does.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from ipaddress import ip_network
from typing import Any

from nftfwd.claims import Reach, host_reaches
from nftfwd.doctor.findings import AcceptSpec, with_comment
from nftfwd.doctor.tri import Tri, t_merge
from nftfwd.model import (
    FAMILIES,
    Bridge,
    Family,
    Forward,
    Guest,
    Host,
    IPAddress,
    IPNetwork,
    PortRange,
    family_of,
)

DSTNAT, SRCNAT = -100, 100  # nftfwd's nat priorities, unless its table says otherwise
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

    def __hash__(self) -> int:
        # The generated hash would hash the bridge, hence all its guests: linear in the
        # host's size for every flow. The label tells flows apart as well (equal flows
        # have equal labels), in constant time.
        return hash((self.kind, self.label))


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


def _listen(
    host: Host, reach: Reach, addrs: Mapping[str, Sequence[IPAddress]] | None
) -> tuple[Addr, ...]:
    """Where a forward listens: the host addresses of its claims, or, where it listens on
    any host address, those this host has now (model.md, "Where a forward listens")."""
    if reach.listen:
        return tuple(ip_network(a) for a in reach.listen)
    if addrs is None:
        return (HOST_ADDRESS,)
    skip = {b.name for b in host.bridges} | {"lo"}
    found = {
        a
        for dev, lst in addrs.items()
        if dev not in skip
        for a in lst
        if family_of(a) == reach.family and not (a.is_loopback or a.is_link_local)
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
    reach: Reach,
    addresses: Mapping[str, Sequence[IPAddress]] | None,
) -> list[Flow]:
    bridge, guest, fw, fam = reach.bridge, reach.guest, reach.forward, reach.family
    address, sources, listen = reach.target, reach.sources, _listen(host, reach, addresses)
    g, protos, to = ip_network(address), fw.protos, (fw.to,)
    what = with_comment(
        f"{'/'.join(protos)} port {fw.port}, forwarded to {guest.name} {address} port {fw.to}",
        reach.comment,
    )
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
    found = host_reaches(host)
    flows: list[Flow] = []
    for fam in FAMILIES:
        for bridge in host.bridges:
            flows += _bridge_flows(host, bridge, fam, fam in bridged, addresses)
        for reach in found:
            if reach.family == fam:
                flows += _forward_flows(host, reach, addresses)
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
