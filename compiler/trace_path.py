"""`nftfwd trace`'s reading of the kernel's trace events: the path of one connection
through every table, its DNAT, its route, and how it ended (delivered, stopped by a named
rule or chain policy, no reply, or nothing seen).

Pure: the events (nftfwd.trace_events) and the base chains with their hooks (nftjson's
chains, as `nft -j list chains` lists them) come in, a Trace goes out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from nftfwd.nftjson import Chain
from nftfwd.trace_events import PacketInfo, TraceEvent

ChainKey = tuple[str, str, str]  # family, table, chain


def base_chains(chains: Iterable[Chain]) -> dict[ChainKey, Chain]:
    """The base chains (those on a hook), by family, table and name."""
    return {(c.family, c.table, c.name): c for c in chains if c.hook}


# --- one packet's path ---------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One rule a packet matched, or the policy of a base chain, with its verdict."""

    hook: str | None  # the hook of the base chain it was reached from
    family: str
    table: str
    chain: str
    rule: str | None  # as nft prints it; None: a chain's policy, or a rule nft did not know
    handle: int | None
    verdict: str  # accept, drop, continue, return, jump X, goto X...
    policy: bool  # the base chain's policy decided, no rule
    packet: PacketInfo | None  # the packet as this base chain saw it

    @property
    def where(self) -> str:
        return f"{self.family} {self.table} {self.chain}"

    @property
    def drops(self) -> bool:
        return self.verdict == "drop"

    @property
    def rejects(self) -> bool:
        return self.drops and self.rule is not None and bool(re.search(r"\breject\b", self.rule))


Direction = Literal["original", "reply"]


@dataclass(frozen=True)
class PacketPath:
    """One traced packet: how it came in, and every step of it in every table."""

    direction: Direction
    packet: PacketInfo  # as it entered (the trace table saw it)
    hook: str  # prerouting (it came in) or output (the host sent it)
    steps: tuple[Step, ...]

    def drop(self) -> Step | None:
        return next((s for s in self.steps if s.drops), None)


def packet_paths(
    events: Iterable[TraceEvent], trace_table: tuple[str, str], chains: dict[ChainKey, Chain]
) -> list[PacketPath]:
    """The traced packets in the order they came, each with its steps. Every traced
    packet starts in the trace table (it sets nftrace there); the kernel reuses trace ids,
    so a new `packet:` line of the trace table starts a new packet for that id."""
    open_paths: dict[str, int] = {}
    starts: list[tuple[PacketInfo, str]] = []
    steps: list[list[Step]] = []
    seen: list[PacketInfo | None] = []  # per packet: the packet as the last chain saw it
    hooks: list[str | None] = []  # per packet: the hook of the last base chain
    for event in events:
        own = (event.family, event.table) == trace_table
        if own and event.kind == "packet" and event.packet is not None:
            base = chains.get((event.family, event.table, event.chain))
            open_paths[event.trace_id] = len(starts)
            starts.append((event.packet, base.hook if base and base.hook else "prerouting"))
            steps.append([])
            seen.append(event.packet)
            hooks.append(base.hook if base else None)
            continue
        if own:
            continue
        index = open_paths.get(event.trace_id)
        if event.kind == "packet" and event.packet is not None:
            # the id is the buffer's: a bridge or veth may give a packet a new one, and a
            # later packet the old one again; its addresses say which packet it is
            index = _same_packet(event.packet, [start for start, _ in starts], index)
            if index is not None:
                open_paths[event.trace_id] = index
        if index is None:
            continue
        base = chains.get((event.family, event.table, event.chain))
        if base is not None:
            hooks[index] = base.hook
        if event.kind == "packet":
            seen[index] = event.packet
            continue
        if event.kind == "verdict" and event.verdict in ("continue", "return"):
            continue  # the end of a jumped-to chain: the rules around it say it all
        steps[index].append(
            Step(
                hook=hooks[index],
                family=event.family,
                table=event.table,
                chain=event.chain,
                rule=event.rule,
                handle=event.handle,
                verdict=event.verdict or "",
                policy=event.kind == "policy",
                packet=seen[index],
            )
        )
    if not starts:
        return []
    client = starts[0][0]
    return [
        PacketPath(_direction(packet, client), packet, hook, tuple(path))
        for (packet, hook), path in zip(starts, steps, strict=True)
    ]


def _same_packet(packet: PacketInfo, starts: list[PacketInfo], known: int | None) -> int | None:
    """The traced packet that a base chain's `packet:` line is about. The kernel derives
    the trace id from the packet's buffer, which a bridge or veth may replace on the way
    (a guest's replies change id between prerouting and forward, and the next reply may
    get the first one's id back). The latest traced packet from the same source address
    and port (NAT changes the destination first) is the one; else the id's."""
    for index in range(len(starts) - 1, -1, -1):
        start = starts[index]
        same = (start.saddr, start.sport, start.proto) == (packet.saddr, packet.sport, packet.proto)
        if same and (packet.sport is not None or start.daddr == packet.daddr):
            return index
    return known


def _direction(packet: PacketInfo, client: PacketInfo) -> Direction:
    """A packet to the client's address and port (or an ICMP error to it) is a reply."""
    if packet.daddr == client.saddr and (packet.dport in (None, client.sport)):
        return "reply"
    return "original"


# --- the verdict -----------------------------------------------------------------------------

Result = Literal["delivered", "stopped", "no-reply", "nothing"]
# trace's exit codes (README): 0 delivered, 1 stopped, 4 nothing came within the timeout
# (no connection, or no answer from the guest); 2 is an error, decided before any trace.
EXIT_CODES: dict[Result, int] = {"delivered": 0, "stopped": 1, "no-reply": 4, "nothing": 4}


@dataclass(frozen=True)
class Dnat:
    address: str
    port: int | None
    step: Step | None  # the rule that did it, when the trace shows it


@dataclass(frozen=True)
class Trace:
    """The first traced connection, read."""

    result: Result
    paths: tuple[PacketPath, ...]  # the packets shown: the first original, its replies
    dnat: Dnat | None
    route: str | None  # the interface the connection leaves by (None: not routed out)
    local: bool  # it went to the host itself (input hook), not forwarded
    stop: Step | None  # the rule or policy that dropped or rejected it
    own_no_dnat: Step | None  # nftfwd's rule (or chain policy) that left it without DNAT
    reply: PacketPath | None  # the first answer from the guest

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.result]


def _dnat(path: PacketPath) -> Dnat | None:
    """Where the first packet was DNATed: the first chain that saw it with another
    destination, and the rule before that which DNATs."""
    start = path.packet
    for i, step in enumerate(path.steps):
        pkt = step.packet
        if pkt is None or (pkt.daddr, pkt.dport) == (start.daddr, start.dport):
            continue
        before = [s for s in path.steps[:i] if s.rule and re.search(r"\b(dnat|redirect)\b", s.rule)]
        return Dnat(pkt.daddr or "", pkt.dport, before[-1] if before else None)
    # a DNAT in the last chain the packet passed shows in no later chain: only its rule
    last = [s for s in path.steps if s.rule and re.search(r"\bdnat\b", s.rule)]
    if last and last[-1].verdict == "accept":
        return Dnat("", None, last[-1])
    return None


def _route(path: PacketPath) -> tuple[str | None, bool]:
    """The interface the connection leaves by (forwarded, or sent by the host and routed
    again after its DNAT, as postrouting sees it), or that it went to the host itself."""
    for step in path.steps:
        if step.hook in ("forward", "postrouting") and step.packet is not None:
            return step.packet.oif, False
        if step.hook == "input":
            return None, True
    return None, False


def _own_no_dnat(path: PacketPath, own_table: str) -> Step | None:
    """The step of nftfwd's nat chain that let the packet go on without DNAT: the rule
    that accepted it (a `sources` chain), else the chain's policy."""
    own = [s for s in path.steps if s.table == own_table and s.hook in ("prerouting", "output")]
    return own[-1] if own else None


def fold(
    events: Sequence[TraceEvent],
    *,
    trace_table: tuple[str, str],
    own_table: str,
    chains: dict[ChainKey, Chain],
    guest_address: str | None = None,
) -> Trace:
    """The first traced connection's path and how it ended."""
    paths = packet_paths(events, trace_table, chains)
    if not paths:
        return Trace("nothing", (), None, None, False, None, None, None)
    first = paths[0]
    replies = [p for p in paths if p.direction == "reply"]
    dnat = _dnat(first)
    route, local = _route(first)
    target = dnat.address if dnat and dnat.address else guest_address
    from_guest = [p for p in replies if target is not None and p.packet.saddr == target]
    reply = from_guest[0] if from_guest else None
    stop = next((d for p in paths if (d := p.drop()) is not None), None)
    shown = (first, *([reply] if reply else [r for r in replies[:1]]))
    if stop is not None and not any(stop in p.steps for p in shown):
        shown = (*shown, next(p for p in paths if stop in p.steps))
    own_step = None
    if dnat is None:  # a drop on the way names the rule; else nftfwd's own rules did it
        own_step = None if stop is not None else _own_no_dnat(first, own_table)
        result: Result = "stopped"
    elif stop is not None:
        result = "stopped"
    elif reply is not None:
        result = "delivered"
    else:
        result = "no-reply"
    return Trace(result, shown, dnat, route, local, stop, own_step, reply)


def settled(trace: Trace) -> bool:
    """Nothing more to wait for: the guest answered, a rule dropped the connection, or it
    was not DNATed and the host itself answered or took it."""
    if trace.result == "delivered" or trace.stop is not None:
        return True
    return trace.result == "stopped" and (trace.local or len(trace.paths) > 1)
