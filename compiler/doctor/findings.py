"""What doctor reports, and how its fixes are written as commands a person can run."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import ip_network
from typing import Literal

from nftfwd.ir import Ct, Flags, IfName, Match, Meta, Payload, Rule, Statement, Symbol, Verdict
from nftfwd.libvirt import open_mode_steps
from nftfwd.model import PortRange
from nftfwd.nft_text import rule_text

# error: a forward fails now, or will after the next boot; warning: a risk that depends
# on what an admin does later; note: worth knowing, nothing fails. Only errors fail
# doctor (exit 1); --strict fails on warnings too.
Severity = Literal["error", "warning", "note"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "note")

# Most fundamental first: a host without forwarding or without nftfwd's table fails
# before anything else matters.
ORDER: tuple[str, ...] = (
    "ipv4-forwarding-off",
    "ipv6-forwarding-off",
    "table-not-loaded",
    "uplink-missing",
    "bridge-missing",
    "link-down",
    "foreign-chain-rejects",
    "foreign-chain-drops",
    "foreign-policy-drop",
    "br-netfilter",
    "dnat-conflict",
    "libvirt-nat-network",
    "foreign-masquerade",
    "local-listener",
    "neighbour-elsewhere",
    "guest-absent",
    "hairpin-mode-off",
    "rp-filter-strict",
    "flush-ruleset-on-boot",
)


@dataclass(frozen=True)
class Finding:
    """One thing on the live host that defeats nftfwd's rules, and how to fix it.

    id: stable kebab-case identifier; subject: where (a table, chain and rule, an
    interface, a file); message: one sentence, what fails and why; fix: the exact
    commands or config change (several lines; lines starting with # explain);
    severity: how much it weighs (see Severity), decided where the finding is made.
    """

    id: str
    subject: str
    message: str
    fix: str
    severity: Severity


def with_comment(name: str, comment: str | None) -> str:
    """A forward's name in a message, with what its elements say it is for (model.md's
    `comment`), so that the message and `nft list ruleset` name it alike."""
    return name if comment is None else f'{name} "{comment}"'


def sort_key(finding: Finding) -> tuple[int, str, str, str, str, str]:
    rank = ORDER.index(finding.id) if finding.id in ORDER else len(ORDER)
    return (rank, finding.id, finding.subject, finding.message, finding.fix, finding.severity)


def sorted_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Deterministic order, duplicates removed."""
    return sorted(set(findings), key=sort_key)


@dataclass(frozen=True, order=True)
class AcceptSpec:
    """Traffic to accept in another tool's chain, independent of its syntax.

    match is one of: "dnat" (connections DNATed by a forward), "saddr" / "daddr-reply"
    (with net: a subnet's outbound connections / their replies), "established"
    (replies of any connection), "dport" (with proto and port: a host port before
    DNAT), "" (everything between the interfaces).
    """

    family: str
    iif: str
    oif: str
    match: str
    net: str = ""
    proto: str = ""
    port: str = ""


def nft_rule(spec: AcceptSpec) -> str:
    """The spec as an nft rule body, written by the renderer of nftfwd's own rules."""
    statements: list[Statement] = [Match(Meta("iifname"), IfName(spec.iif))] if spec.iif else []
    if spec.oif:
        statements.append(Match(Meta("oifname"), IfName(spec.oif)))
    if spec.match == "dnat":
        statements.append(Match(Ct("status"), Symbol("dnat")))
    elif spec.match == "saddr":
        statements.append(Match(Payload(spec.family, "saddr"), ip_network(spec.net)))
    elif spec.match == "daddr-reply":
        statements += [Match(Payload(spec.family, "daddr"), ip_network(spec.net)), ESTABLISHED]
    elif spec.match == "established":
        statements.append(ESTABLISHED)
    elif spec.match == "dport":
        first, _, last = spec.port.partition("-")
        statements += [
            Match(Meta("l4proto"), Symbol(spec.proto)),
            Match(Payload("th", "dport"), PortRange(int(first), int(last or first))),
        ]
    return rule_text(Rule((*statements, Verdict("accept")), ""))


ESTABLISHED = Match(Ct("state"), Flags(("established", "related")))


def iptables_rule(spec: AcceptSpec) -> str:
    """The spec as iptables arguments after the chain name."""
    words = [f"-i {spec.iif}"] if spec.iif else []
    if spec.oif:
        words.append(f"-o {spec.oif}")
    words.append(
        {
            "dnat": "-m conntrack --ctstate DNAT",
            "saddr": f"-s {spec.net}",
            "daddr-reply": f"-d {spec.net} -m conntrack --ctstate RELATED,ESTABLISHED",
            "established": "-m conntrack --ctstate RELATED,ESTABLISHED",
            "dport": f"-p {spec.proto} --dport {spec.port.replace('-', ':')}",
        }.get(spec.match, "")
    )
    return " ".join(w for w in [*words, "-j ACCEPT"] if w)


def _rules(specs: Iterable[AcceptSpec], write: Callable[[AcceptSpec], str]) -> list[str]:
    """Rendered rules in a stable order, without those that an accept of everything
    between the same interfaces already covers."""
    unique = set(specs)
    wide = {(s.iif, s.oif) for s in unique if s.match == ""}
    kept = [s for s in unique if s.match == "" or (s.iif, s.oif) not in wide]
    return list(dict.fromkeys(write(s) for s in sorted(kept)))


def nft_quote(name: str) -> str:
    """A table or chain name as the nft command line reads it."""
    plain = name.replace("_", "").replace("-", "").replace(".", "").isalnum()
    return name if plain and name[:1].isalpha() else f'"{name}"'


def nft_insert_fix(family: str, table: str, chain: str, specs: Iterable[AcceptSpec]) -> str:
    """Accept rules to insert at the top of another table's base chain, with nft."""
    head = f"nft 'insert rule {family} {nft_quote(table)} {nft_quote(chain)}"
    lines = [f"{head} {rule}'" for rule in _rules(specs, nft_rule)]
    lines.append(
        f"# and add the same rules at the top of chain {chain} where table {family} {table} "
        "is defined (e.g. /etc/nftables.conf), so that they survive its next load"
    )
    return "\n".join(lines)


def owned_table_fix(family: str, table: str, changes: Iterable[str]) -> str:
    """The kernel refuses every change to a table with `flags owner` (firewalld >= 2.0
    holds its table so) but its owner's: the changes, as what to make that program do."""
    lines = [
        f"# table {family} {table} belongs to the program that made it (flags owner): "
        "nft cannot change it",
        "# make that program do this (firewalld: with firewall-cmd, e.g. a policy that "
        "accepts this traffic from the uplink's zone to the bridge's zone):",
    ]
    return "\n".join([*lines, *(f"#   {change}" for change in changes)])


def owned_insert_fix(family: str, table: str, chain: str, specs: Iterable[AcceptSpec]) -> str:
    """nft_insert_fix for a table that only its owner may change."""
    head = f"insert rule {family} {nft_quote(table)} {nft_quote(chain)}"
    return owned_table_fix(family, table, [f"{head} {rule}" for rule in _rules(specs, nft_rule)])


def iptables_insert_fix(
    family: str, table: str, chain: str, specs: Iterable[AcceptSpec], *, docker: bool = False
) -> str:
    """Accept rules to insert at the top of an iptables chain (iptables-nft's tables)."""
    tool = "iptables" if family == "ip" else "ip6tables"
    where = "" if table == "filter" else f"-t {table} "
    lines = [f"{tool} {where}-I {chain} {rule}" for rule in _rules(specs, iptables_rule)]
    keep = "# Docker keeps DOCKER-USER when it restarts, not across a reboot: " if docker else "# "
    suffix = "4" if family == "ip" else "6"
    lines.append(f"{keep}persist them, e.g. {tool}-save > /etc/iptables/rules.v{suffix}")
    return "\n".join(lines)


def libvirt_open_fix(bridge: str, network: str | None) -> str:
    """Switch the libvirt network of `bridge` to open mode: runnable commands, then the
    interactive way. `network` None (no libvirt XML names the bridge) prints NETWORK."""
    lines = []
    if network is None:
        lines.append(
            f"# NETWORK is the libvirt network whose bridge is {bridge} "
            "(virsh net-list --all; virsh net-info NETWORK)"
        )
    lines += [
        f"# switch libvirt network {network or 'NETWORK'} to open mode and let nftfwd do the "
        "NAT (masquerade: true, the default):",
        *open_mode_steps(network or "NETWORK"),
        "# restart or re-attach the guests on it (their interfaces left the bridge), "
        "then: nftfwd load",
    ]
    return "\n".join(lines)


def sysctl_key(*parts: str) -> str:
    """A sysctl name for `sysctl -w`: dotted, or with slashes where a part has a dot."""
    return "/".join(parts) if any("." in p for p in parts) else ".".join(parts)


def sysctl_fix(settings: Iterable[tuple[str, str]], conf: str, *, append: bool = False) -> str:
    """Set now with sysctl -w, and at boot in /etc/sysctl.d/CONF (appended to, or written)."""
    pairs = list(settings)
    lines = [f"sysctl -w {key}={value}" for key, value in pairs]
    body = "\\n".join(f"{key} = {value}" for key, value in pairs)
    lines.append(f"printf '{body}\\n' {'>>' if append else '>'} /etc/sysctl.d/{conf}")
    return "\n".join(lines)
