"""doctor as one call: read the host, judge the ruleset, print the findings."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from nftfwd.doctor.findings import Finding, sorted_findings
from nftfwd.doctor.hostprobe import ProbeError, Runner, probe_host, read_state, run_command
from nftfwd.doctor.ruleset import analyse_ruleset
from nftfwd.model import Host


def read_live_ruleset(run: Runner = run_command) -> tuple[dict[str, Any], str]:
    """The kernel's ruleset of this network namespace: `nft -j list ruleset` (parsed) and
    `nft -a list ruleset` (text, where iptables-nft's xt matches show what they match)."""
    text = run(["nft", "-j", "list", "ruleset"])
    try:
        ruleset = json.loads(text)
    except ValueError as err:
        raise ProbeError(f"`nft -j list ruleset` printed no JSON: {err}") from None
    if not isinstance(ruleset, dict):
        raise ProbeError("`nft -j list ruleset` printed no ruleset.")
    return ruleset, run(["nft", "-a", "list", "ruleset"])


def diagnose(
    host: Host,
    own_table: str,
    ruleset: dict[str, Any],
    *,
    sys_root: str = "/",
    nftables_conf: str = "/etc/nftables.conf",
    ruleset_text: str | None = None,
    run: Runner = run_command,
) -> list[Finding]:
    """Every finding for this host, in a deterministic order (empty: healthy).

    ruleset: parsed `nft -j list ruleset`; ruleset_text: `nft -a list ruleset`, optional
    but needed to judge iptables-nft's xt matches (without it they count as "maybe").
    sys_root and run let tests stand in for /proc, /etc, /run and iproute2.
    """
    state = read_state(host, sys_root=sys_root, run=run)
    found = probe_host(host, sys_root=sys_root, nftables_conf=nftables_conf, state=state)
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


def exit_code(findings: Iterable[Finding]) -> int:
    """0 healthy, 1 findings (2, an error, is raised as NftfwdError)."""
    return 1 if any(True for _ in findings) else 0


def format_findings(findings: Iterable[Finding], color: bool = False) -> str:
    """Plain stable text: one block per finding, or the single line 'no findings'."""
    items = sorted_findings(findings)
    if not items:
        return "no findings\n"
    bold, dim, off = ("\033[1;33m", "\033[2m", "\033[0m") if color else ("", "", "")
    out: list[str] = []
    for f in items:
        out.append(f"{bold}FINDING {f.id}{off}: {f.subject}")
        out.append(f"  {f.message}")
        for i, line in enumerate(f.fix.splitlines()):
            lead = "  fix: " if i == 0 else "       "
            out.append(f"{lead}{dim}{line}{off}" if line.startswith("#") else f"{lead}{line}")
    return "\n".join(out) + "\n"
