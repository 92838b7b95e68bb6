"""doctor's verdict: the host checks and the ruleset analysis together, and their printing.

Pure: the live host is read by nftfwd.kernel.hoststate."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from nftfwd.doctor.findings import SEVERITIES, Finding, Severity, sorted_findings
from nftfwd.doctor.hostchecks import HostState, check_host
from nftfwd.doctor.ruleset import analyse_ruleset
from nftfwd.model import Host


def diagnose(
    host: Host,
    own_table: str,
    ruleset: dict[str, Any],
    state: HostState,
    *,
    ruleset_text: str | None = None,
) -> list[Finding]:
    """Every finding for this host, in a deterministic order (empty: healthy).

    ruleset: parsed `nft -j list ruleset`; ruleset_text: `nft -a list ruleset`, optional
    but needed to judge iptables-nft's xt matches (without it they count as "maybe");
    state: what was read of the host (nftfwd.kernel.hoststate.read_state).
    """
    found = check_host(host, state)
    found += analyse_ruleset(
        ruleset,
        own_table,
        host,
        ruleset_text=ruleset_text,
        bridged=state.bridged,
        addresses={name: link.addresses for name, link in state.links.items()},
        libvirt_networks=state.libvirt_networks,
    )
    return sorted_findings(found)


def exit_code(findings: Iterable[Finding], *, strict: bool = False) -> int:
    """0 healthy, 1 an error (with strict: also a warning); 2, an error of nftfwd's own,
    is raised as NftfwdError. Notes never fail."""
    failing = {"error", "warning"} if strict else {"error"}
    return 1 if any(f.severity in failing for f in findings) else 0


def counts(findings: Iterable[Finding]) -> dict[Severity, int]:
    """How many findings of each severity, every severity named (in SEVERITIES' order)."""
    found = [f.severity for f in findings]
    return {severity: found.count(severity) for severity in SEVERITIES}


_SHADE: dict[Severity, str] = {"error": "\033[1;31m", "warning": "\033[1;33m", "note": "\033[1;36m"}


def format_findings(findings: Iterable[Finding], color: bool = False) -> str:
    """Plain stable text: one block per finding, its severity labelling its message, and a
    count of each severity; or the single line 'no findings'."""
    items = sorted_findings(findings)
    if not items:
        return "no findings\n"
    bold, dim, off = ("\033[1m", "\033[2m", "\033[0m") if color else ("", "", "")
    out: list[str] = []
    for f in items:
        shade = _SHADE[f.severity] if color else ""
        out.append(f"{bold}FINDING {f.id}{off}: {f.subject}")
        out.append(f"  {shade}{f.severity}:{off} {f.message}")
        for i, line in enumerate(f.fix.splitlines()):
            lead = "  fix: " if i == 0 else "       "
            out.append(f"{lead}{dim}{line}{off}" if line.startswith("#") else f"{lead}{line}")
    tally = counts(items)
    plural = {"error": "errors", "warning": "warnings", "note": "notes"}
    out.append(", ".join(f"{n} {s if n == 1 else plural[s]}" for s, n in tally.items()))
    return "\n".join(out) + "\n"
