"""`nftfwd trace` on this host: check the port is a forward, put the trace table in place,
run the monitor, wait for the first connection, fold its events into a path; always
remove the table and end the monitor (success, timeout, Ctrl-C, SIGTERM, an error)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from nftfwd.doctor.findings import Finding
from nftfwd.errors import NftfwdError
from nftfwd.kernel.libnft import Nft
from nftfwd.kernel.tracer import (
    Monitor,
    Probe,
    add_trace_table,
    remove_trace_table,
    uplink_addresses,
)
from nftfwd.model import Family, Host, Proto
from nftfwd.trace_events import TraceEvent, parse_event
from nftfwd.trace_path import Trace, base_chains, fold, settled
from nftfwd.trace_plan import (
    TRACE_FAMILY,
    TRACE_TABLE,
    Target,
    find_target,
    probe_address,
    trace_chains,
    trace_script,
)
from nftfwd.trace_report import Report, matching_findings

# After the end is known, events of the same packets may still be on their way (the
# host's ICMP error, the rest of a reply's path): read them this much longer.
SETTLE_GRACE = 0.05


@dataclass(frozen=True)
class TraceOptions:
    port: int
    proto: Proto = "tcp"
    client: str | None = None  # --from
    family: Family | None = None
    timeout: float = 60.0
    probe: bool = False


class Interrupted(NftfwdError):
    """SIGINT, SIGTERM or SIGHUP during the trace (the table is removed all the same)."""


STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP end the wait with Interrupted, so that the cleanup runs;
    the cleanup blocks them (_hold_signals), and one that came meanwhile is delivered
    once the usual handlers are back."""

    def interrupt(number: int, _frame: FrameType | None) -> None:
        raise Interrupted(
            f"interrupted by {signal.Signals(number).name}; the trace table is removed."
        )

    previous = {number: signal.signal(number, interrupt) for number in STOPPING}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPPING)


def _hold_signals() -> None:
    """A second Ctrl-C must not cut the cleanup short."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOPPING)


def run_trace(
    host: Host,
    own_table: str,
    options: TraceOptions,
    say: Callable[[str], None],
    *,
    doctor: Callable[[Host, str], list[Finding]] | None = None,
) -> Report:
    """Trace the first connection to a forward; `say` tells the user what to do now."""
    target = find_target(host, options.port, options.proto, options.family, options.client)
    probe_to = None
    if options.probe:
        probe_to = probe_address(target, uplink_addresses(host.uplinks))
        if probe_to is None:
            raise NftfwdError(
                f"--probe: host {host.name} has no address of this family on its uplinks "
                f"({', '.join(host.uplinks)}) to connect to; give `addresses` in the model."
            )
    nft = Nft()
    outline = nft.outline()
    chains = {**base_chains(nft.chains()), **trace_chains()}
    trace_table = (TRACE_FAMILY, TRACE_TABLE)
    events: list[TraceEvent] = []
    guest = str(target.first.target)

    def folded() -> Trace:
        return fold(events, trace_table=trace_table, own_table=own_table, chains=chains,
                    guest_address=guest)  # fmt: skip

    monitor: Monitor | None = None
    probe: Probe | None = None
    added = False  # only a table this trace added is removed: never another trace's
    with _signals_interrupt():
        try:
            stale = add_trace_table(nft, trace_script(target, os.getpid()), outline)
            added = True
            if stale:
                say("removed the trace table of an earlier trace that did not end.")
            monitor = Monitor()
            monitor.wait_ready(nft)
            where = _listen_text(target)
            if probe_to is not None:
                say(f"connecting to {probe_to} port {target.port} from this host; "
                    f"waiting up to {options.timeout:g} s")  # fmt: skip
                probe = Probe(target.proto, probe_to, target.port)
            else:
                source = f" from {target.client}" if target.client else " from outside"
                say(f"connect to {where} port {target.port} ({target.proto}){source} now; "
                    f"waiting up to {options.timeout:g} s")  # fmt: skip
            deadline = time.monotonic() + options.timeout
            for line in monitor.lines(deadline):
                event = parse_event(line)
                if event is None:
                    continue
                events.append(event)
                if event.kind != "packet" and settled(folded()):
                    deadline = min(deadline, time.monotonic() + SETTLE_GRACE)
                    for rest in monitor.lines(deadline):
                        if (late := parse_event(rest)) is not None:
                            events.append(late)
                    break
        finally:
            _hold_signals()
            if probe is not None:
                probe.close()
            if monitor is not None:
                monitor.stop()
            if added:
                remove_trace_table(nft)
    trace = folded()
    findings: tuple[Finding, ...] = ()
    if doctor is not None and trace.result != "delivered" and trace.own_no_dnat is None:
        try:
            findings = matching_findings(trace, doctor(host, own_table))
        except NftfwdError as err:
            say(f"doctor could not check the host: {err}")
    return Report(host.name, own_table, target, trace, options.timeout, findings)


def _listen_text(target: Target) -> str:
    reach = target.first
    if reach.listen:
        return " or ".join(str(a) for a in reach.listen)
    return f"any IPv{4 if reach.family == 'ip' else 6} address of this host"


def trace_doctor(host: Host, own_table: str) -> list[Finding]:
    """doctor's findings on this host, for the end of a trace (its ruleset checks and host
    checks; nftables.conf and the units are for doctor itself)."""
    from nftfwd.kernel.examine import examine

    return examine(host, own_table)
