"""The kernel's trace events, as `nft -a monitor trace` prints them, read into typed events.

nft 1.0.6 prints trace events only as text (`nft -j monitor trace` prints the same text),
so the text is the one format read here; nft 1.1.3 prints it the same way. One line each:

    trace id ID FAMILY TABLE CHAIN packet: iif "eno1" ... ip saddr A ip daddr B ...
    trace id ID FAMILY TABLE CHAIN rule RULE # handle N (verdict VERDICT)
    trace id ID FAMILY TABLE CHAIN policy accept|drop
    trace id ID FAMILY TABLE CHAIN verdict continue|return|...
    trace id ID FAMILY TABLE CHAIN unknown rule handle N (verdict VERDICT)

Lines of other kinds (a ruleset change printed by `nft monitor`) are not trace events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

EventKind = Literal["packet", "rule", "policy", "verdict"]

_HEADER = re.compile(
    r'trace id (?P<id>[0-9a-f]+) (?P<family>\S+) (?P<table>"[^"]*"|\S+) '
    r'(?P<chain>"[^"]*"|\S+) (?P<rest>.*)$'
)
_RULE_END = re.compile(r"\s*(?:# handle (?P<handle>\d+) )?\(verdict (?P<verdict>[^)]*)\)\s*$")
_UNKNOWN = re.compile(r"unknown rule handle (?P<handle>\d+)")
# "counter packets 3 bytes 180" is state of the rule, not the rule: shown as `counter`.
_COUNTER = re.compile(r"\bcounter packets \d+ bytes \d+")


@dataclass(frozen=True)
class PacketInfo:
    """What a `packet:` event says of the packet as this chain saw it."""

    iif: str | None
    oif: str | None
    saddr: str | None
    daddr: str | None
    proto: str | None  # tcp, udp, icmp, ipv6-icmp...
    sport: int | None
    dport: int | None
    flags: str | None  # tcp flags, as nft prints them
    icmp: str | None  # icmp type and code, for an error the host sent
    text: str  # the whole description, as nft printed it


@dataclass(frozen=True)
class TraceEvent:
    """One line of `nft -a monitor trace`."""

    trace_id: str
    family: str
    table: str
    chain: str
    kind: EventKind
    packet: PacketInfo | None = None
    rule: str | None = None  # the rule as nft prints it (None: the handle was unknown)
    handle: int | None = None
    verdict: str | None = None  # accept, drop, continue, return, jump X, goto X, queue


def _unquote(name: str) -> str:
    return name[1:-1] if len(name) >= 2 and name[0] == name[-1] == '"' else name


def _word_after(words: list[str], *keys: str) -> str | None:
    """The word after the sequence `keys` in `words` (the last such sequence)."""
    n = len(keys)
    found = None
    for i in range(len(words) - n):
        if tuple(words[i : i + n]) == keys:
            found = words[i + n]
    return found


def _number(word: str | None) -> int | None:
    return int(word) if word is not None and word.isdigit() else None


# nft's names of the destination-unreachable codes (its icmp_code and icmpv6_code types):
# nft 1.0.6 prints them in a trace, 1.1.3 the number.
UNREACHABLE_CODES = {
    "icmp": {
        "0": "net-unreachable",
        "1": "host-unreachable",
        "2": "prot-unreachable",
        "3": "port-unreachable",
        "4": "frag-needed",
        "9": "net-prohibited",
        "10": "host-prohibited",
        "13": "admin-prohibited",
    },
    "icmpv6": {
        "0": "no-route",
        "1": "admin-prohibited",
        "3": "addr-unreachable",
        "4": "port-unreachable",
        "5": "policy-fail",
        "6": "reject-route",
    },
}


def parse_packet(text: str) -> PacketInfo:
    words = text.split()
    proto = _word_after(words, "ip", "protocol") or _word_after(words, "ip6", "nexthdr")
    l4 = next((p for p in ("tcp", "udp", "icmp", "icmpv6") if p in words), None)
    proto = proto or l4
    sport = dport = None
    if l4 in ("tcp", "udp"):
        sport = _number(_word_after(words, l4, "sport"))
        dport = _number(_word_after(words, l4, "dport"))
    flags = None
    match = re.search(r"tcp flags == (\S+)", text)
    if match:
        flags = match.group(1)
    icmp = None
    match = re.search(r"(icmp|icmpv6) type (\S+)(?: icmp(?:v6)? code (\S+))?", text)
    if match:
        family, kind, code = match.groups()
        if code is not None and kind == "destination-unreachable":
            code = UNREACHABLE_CODES[family].get(code, code)
        icmp = " ".join(part for part in (kind, code) if part)
    saddr = _word_after(words, "ip", "saddr") or _word_after(words, "ip6", "saddr")
    daddr = _word_after(words, "ip", "daddr") or _word_after(words, "ip6", "daddr")
    iif, oif = _word_after(words, "iif"), _word_after(words, "oif")
    return PacketInfo(
        iif=_unquote(iif) if iif else None,
        oif=_unquote(oif) if oif else None,
        saddr=saddr,
        daddr=daddr,
        proto=proto,
        sport=sport,
        dport=dport,
        flags=flags,
        icmp=icmp,
        text=text.strip(),
    )


def parse_event(line: str) -> TraceEvent | None:
    """One trace event, or None for a line that is not one."""
    match = _HEADER.match(line.strip())
    if match is None:
        return None
    head = (
        match["id"],
        match["family"],
        _unquote(match["table"]),
        _unquote(match["chain"]),
    )
    rest = match["rest"]
    if rest.startswith("packet:"):
        return TraceEvent(*head, "packet", packet=parse_packet(rest.removeprefix("packet:")))
    if rest.startswith("policy "):
        return TraceEvent(*head, "policy", verdict=rest.removeprefix("policy ").split()[0])
    if rest.startswith("verdict "):
        return TraceEvent(*head, "verdict", verdict=rest.removeprefix("verdict ").strip())
    unknown = _UNKNOWN.match(rest)
    end = _RULE_END.search(rest)
    if unknown is not None:
        verdict = end["verdict"] if end else None
        return TraceEvent(*head, "rule", handle=int(unknown["handle"]), verdict=verdict)
    if rest.startswith("rule ") and end is not None:
        rule = _COUNTER.sub("counter", rest[len("rule ") : end.start()]).strip()
        return TraceEvent(*head, "rule", rule=rule, handle=_number(end["handle"]),
                          verdict=end["verdict"].strip())  # fmt: skip
    return None


def parse_events(lines: list[str]) -> list[TraceEvent]:
    return [event for event in map(parse_event, lines) if event is not None]
