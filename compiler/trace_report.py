"""`nftfwd trace`'s report: the path of the traced connection, its DNAT, its route and how
it ended, as text or as one JSON document (`"format": 1`). Pure.

The rules are shown as nft's monitor printed them (counters as `counter`): the one place
trace prints a rule."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nftfwd.doctor.findings import Finding
from nftfwd.errors import printable
from nftfwd.trace_events import PacketInfo
from nftfwd.trace_path import PacketPath, Step, Trace
from nftfwd.trace_plan import Target

FORMAT = 1


@dataclass(frozen=True)
class Report:
    host: str
    table: str  # nftfwd's own table
    target: Target
    trace: Trace
    timeout: float
    findings: tuple[Finding, ...]  # doctor's findings that match the end


def _endpoint(address: str | None, port: int | None) -> str:
    if address is None:
        return "?"
    shown = f"[{address}]" if ":" in address and port is not None else address
    return f"{shown}:{port}" if port is not None else shown


def _packet_line(path: PacketPath) -> str:
    pkt = path.packet
    what = "reply" if path.direction == "reply" else "packet"
    via = (
        f"in on {pkt.iif}"
        if pkt.iif
        else (f"sent by the host, out on {pkt.oif}" if pkt.oif else "sent by the host")
    )
    detail = []
    if pkt.flags:
        detail.append(f"tcp flags {pkt.flags}")
    if pkt.icmp:
        detail.append(f"{pkt.proto} {pkt.icmp}")
    extra = f", {', '.join(detail)}" if detail else ""
    return (
        f"{what} {_endpoint(pkt.saddr, pkt.sport)} -> {_endpoint(pkt.daddr, pkt.dport)} "
        f"({pkt.proto}), {via}{extra}"
    )


def step_ref(step: Step) -> str:
    """`inet nftfwd prerouting, rule RULE (handle 7)`, or `..., policy drop`."""
    if step.policy:
        return f"{step.where}, policy {step.verdict}"
    handle = f" (handle {step.handle})" if step.handle is not None else ""
    rule = f"rule {step.rule}" if step.rule is not None else "a rule nft did not know"
    return f"{step.where}, {rule}{handle}"


def step_text(step: Step) -> str:
    """A step of the path with its verdict."""
    return step_ref(step) if step.policy else f"{step_ref(step)}: {step.verdict}"


def _path_lines(path: PacketPath) -> list[str]:
    lines = [_packet_line(path)]
    width = max((len(s.hook or "?") for s in path.steps), default=0)
    for step in path.steps:
        lines.append(f"  {(step.hook or '?').ljust(width)}  {step_text(step)}")
    if not path.steps:
        lines.append("  (no chain of another table on its way)")
    return lines


def end_text(report: Report) -> str:
    trace, target = report.trace, report.target
    reach = target.first
    guest = f"{reach.guest.name} {reach.target} port {target.guest_port}"
    if trace.result == "nothing":
        return (
            f"nothing arrived: no new {target.proto} connection to port {target.port} within "
            f"{report.timeout:g} s (nothing reached this host's prerouting, or it came from "
            "another address than --from)."
        )
    if trace.result == "delivered":
        assert trace.reply is not None
        answer = trace.reply.packet
        how = (
            " (a reset: the guest's port is closed)"
            if answer.flags and "rst" in answer.flags
            else ""
        )
        return f"delivered: DNATed to {guest}, and the guest answered{how}."
    if trace.result == "no-reply":
        return (
            f"no rule stopped it, but no reply came from {guest} within {report.timeout:g} s"
            "; likely causes: the guest is down or its firewall drops it, the guest's "
            "route back does not go through this host, strict rp_filter."
        )
    if trace.dnat is None and trace.stop is None:
        if trace.own_no_dnat is not None:
            return (
                "stopped: nftfwd's own rules leave it without DNAT "
                f"({step_ref(trace.own_no_dnat)}), so the forward is closed to this client "
                "(the forward's `sources`, "
                "`address`, or `hairpin: false`)."
            )
        return (
            f"stopped: nothing DNATed it, and nftfwd's table {report.table} is not on its "
            "path (is it loaded? `nftfwd load`)."
        )
    assert trace.stop is not None
    verb = "rejected" if trace.stop.rejects else "dropped"
    return f"stopped: {verb} by {step_ref(trace.stop)}."


def format_text(report: Report) -> str:
    trace, target = report.trace, report.target
    out = [f"trace of {target.describe()}, host {report.host}"]
    for path in trace.paths:
        out += _path_lines(path)
    if trace.dnat is not None:
        step = trace.dnat.step
        handle = f", handle {step.handle}" if step is not None and step.handle is not None else ""
        by = f" ({step.where}{handle})" if step is not None else ""
        to = _endpoint(trace.dnat.address or None, trace.dnat.port)
        out.append(f"DNAT: to {to}{by}")
    if trace.route is not None:
        out.append(f"route: leaves by {trace.route}")
    elif trace.local or (trace.dnat is None and trace.result != "nothing"):
        out.append("route: to the host itself (no DNAT), not forwarded")
    elif trace.result != "nothing":
        out.append("route: not seen: DNATed but never forwarded (is forwarding on?)")
    out.append(end_text(report))
    for finding in report.findings:
        out.append(f"doctor: {finding.id}: {finding.subject}; run `nftfwd doctor` for the fix")
    # Rules, comments and names come from other tools' tables: nothing may rewrite the
    # terminal (errors.printable), line by line.
    return "".join(printable(line) + "\n" for line in "\n".join(out).split("\n"))


def _packet_json(pkt: PacketInfo | None) -> dict[str, Any] | None:
    if pkt is None:
        return None
    keys = ("iif", "oif", "saddr", "daddr", "proto", "sport", "dport", "flags", "icmp")
    return {k: getattr(pkt, k) for k in keys}


def _step_json(step: Step | None) -> dict[str, Any] | None:
    if step is None:
        return None
    return {
        "hook": step.hook,
        "family": step.family,
        "table": step.table,
        "chain": step.chain,
        "rule": step.rule,
        "handle": step.handle,
        "policy": step.policy,
        "verdict": step.verdict,
    }


def _paths_json(paths: Sequence[PacketPath]) -> list[dict[str, Any]]:
    return [
        {
            "direction": p.direction,
            "hook": p.hook,
            "packet": _packet_json(p.packet),
            "steps": [_step_json(s) for s in p.steps],
        }
        for p in paths
    ]


def format_json(report: Report) -> str:
    trace, target = report.trace, report.target
    reach = target.first
    document = {
        "format": FORMAT,
        "host": report.host,
        "table": report.table,
        "forward": {
            "proto": target.proto,
            "port": target.port,
            "guest": reach.guest.name,
            "address": str(reach.target),
            "guest_port": target.guest_port,
        },
        "result": trace.result,
        "exit_code": trace.exit_code,
        "message": end_text(report),
        "paths": _paths_json(trace.paths),
        "dnat": None
        if trace.dnat is None
        else {
            "address": trace.dnat.address or None,
            "port": trace.dnat.port,
            "rule": _step_json(trace.dnat.step),
        },
        "route": trace.route,
        "local": trace.local,
        "stopped_by": _step_json(trace.stop or trace.own_no_dnat),
        "own_rules": trace.own_no_dnat is not None,
        "findings": [
            {"id": f.id, "subject": f.subject, "severity": f.severity} for f in report.findings
        ],
    }
    return json.dumps(document, indent=2) + "\n"


# doctor's findings that may explain a connection that no rule stopped and no guest
# answered (or that never arrived).
NO_REPLY_CAUSES = frozenset({
    "ipv4-forwarding-off", "ipv6-forwarding-off", "bridge-missing", "link-down",
    "guest-absent", "neighbour-elsewhere", "hairpin-mode-off", "rp-filter-strict",
    "br-netfilter", "local-listener",
})  # fmt: skip
NOTHING_CAUSES = frozenset({"uplink-missing", "link-down", "table-not-loaded", "dnat-conflict"})


def matching_findings(trace: Trace, findings: Sequence[Finding]) -> tuple[Finding, ...]:
    """doctor's findings about what ended the trace: the chain that stopped it, or the
    likely causes of no reply (or of nothing arriving)."""
    if trace.result == "stopped" and trace.stop is not None:
        where = f"table {trace.stop.family} {trace.stop.table}, chain {trace.stop.chain}"
        return tuple(f for f in findings if f.subject.startswith(where))
    if trace.result == "stopped" and trace.dnat is None and trace.own_no_dnat is None:
        return tuple(f for f in findings if f.id == "table-not-loaded")
    causes = {"no-reply": NO_REPLY_CAUSES, "nothing": NOTHING_CAUSES}.get(trace.result)
    if causes is None:
        return ()
    return tuple(f for f in findings if f.id in causes and f.severity != "note")
