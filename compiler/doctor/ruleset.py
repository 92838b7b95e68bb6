"""Whether another table drops, rejects or takes over nftfwd's traffic (a pure reading).

Input is the parsed `nft -j list ruleset` and, optionally, the text of `nft -a list
ruleset` (listing.py). The traffic nftfwd produces for a host is described as flows
(flows.py). Each flow is walked through every base chain of every other table on the
hooks it passes, following jumps and gotos (walk.py), and every match is judged
three-valued: it matches all the flow's packets, none, or maybe (judge.py). A drop,
reject or drop policy that is reached is a finding: "drops" when certain, "may drop"
otherwise. Rules are judged by what they match; names only choose the wording of a fix.
This module turns what the walks reached into findings.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from nftfwd.doctor.findings import (
    AcceptSpec,
    Finding,
    iptables_insert_fix,
    libvirt_open_fix,
    nft_insert_fix,
    owned_insert_fix,
    owned_table_fix,
    sorted_findings,
    with_comment,
)
from nftfwd.doctor.flows import DSTNAT, SRCNAT, Flow, build_flows, spec_for, view
from nftfwd.doctor.listing import Chain, Rule, Ruleset, index_ruleset
from nftfwd.doctor.walk import walk
from nftfwd.model import Family, Host, IPAddress
from nftfwd.nftjson import Json

IPTABLES_TABLES = {"filter", "nat", "mangle", "raw", "security"}
IPTABLES_CHAINS = {"INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"}


@dataclass
class Hit:
    kind: str
    chain: Chain
    rule: Rule | None
    base: Chain
    certain: bool = False
    flows: list[Flow] = field(default_factory=list)  # in the order they were first added
    specs: set[AcceptSpec] = field(default_factory=set)
    seen: set[Flow] = field(default_factory=set, repr=False)  # flows, for a constant-time test

    def add(self, flow: Flow, certain: bool, specs: Iterable[AcceptSpec] = ()) -> None:
        self.certain |= certain
        if flow not in self.seen:
            self.seen.add(flow)
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
        elif (fam, table) in rs.owned:
            fix = owned_insert_fix(fam, table, base, hit.specs)
        else:
            fix = nft_insert_fix(fam, table, base, hit.specs)
        if table == "firewalld" and (fam, table) not in rs.owned:
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
    return Finding(key, hit.subject, message, fix, "error")


def _forward_names(hit: Hit) -> str:
    names = []
    for flow in hit.flows:
        fw = flow.forward
        if fw is not None:
            comment = flow.guest.comment_of(fw) if flow.guest is not None else None
            name = f"{'/'.join(fw.protos)} port {fw.port} of forward {fw.path}"
            names.append(with_comment(name, comment))
    return "; ".join(dict.fromkeys(names))


def _delete_fix(chain: Chain, rule: Rule, owned: bool) -> str:
    """How to remove another tool's rule from an nft table (not one of iptables')."""
    change = f"delete rule {chain.family} {chain.table} {chain.name} handle {rule.handle}"
    if owned:
        return owned_table_fix(chain.family, chain.table, [change])
    return f"nft {change}\n# (better: change the configuration of the tool that owns that table)"


def _dnat_finding(hit: Hit, dstnat: int, owned: bool) -> Finding:
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
        fix = _delete_fix(chain, rule, owned) + "\n" + move
    message = f"Rule `{rule.text}` ({_where(hit.base)}) {verb} {_forward_names(hit)}; {order}."
    return Finding("dnat-conflict", hit.subject, message, fix, "error")


def _masq_finding(hit: Hit, networks: Mapping[str, str], owned: bool) -> Finding:
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
        # reported only where libvirt's rejects hit no forward (those are errors of their
        # own): the forwards work, but libvirt keeps a setup nftfwd does not support
        return Finding("libvirt-nat-network", hit.subject, message,
                       libvirt_open_fix(bridge.name, networks.get(bridge.name)),
                       "warning")  # fmt: skip
    message = f"{what}, although the model says masquerade: false for {bridge.name}."
    chain, rule = hit.chain, hit.rule
    if _iptables_made(hit.base):
        tool = "iptables" if chain.family == "ip" else "ip6tables"
        fix = f"{tool} -t {chain.table} -D {chain.name} {rule.index}"
        fix += "\n# (better: change the configuration of the tool that owns that table)"
    else:
        fix = _delete_fix(chain, rule, owned)
    # the forwards work; the guests' outbound connections are not what the model says
    return Finding("foreign-masquerade", hit.subject, message, fix, "warning")


def _own_prio(rs: Ruleset, own_table: str, hook: str, default: int) -> int:
    for chain in rs.chains.values():
        if (chain.family, chain.table, chain.type, chain.hook) == ("inet", own_table, "nat", hook):
            return chain.prio
    return default


def analyse_ruleset(
    ruleset: Json,  # `nft -j list ruleset`
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
            "error",
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
    # No other table hooks in where nftfwd's traffic passes: nothing to judge, and no
    # need to describe every forward's flows (the cost of this function at scale).
    flows = build_flows(host, bridged, addresses) if bases else []
    for flow in flows:
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
            for ev in walk(rs, base, pkt):
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
    findings += [
        _dnat_finding(hit, dstnat, (hit.chain.family, hit.chain.table) in rs.owned)
        for hit in dnats.values()
    ]
    for (_, _, bridge), hit in masqs.items():
        libvirt = _libvirt(hit.chain)
        if bridge not in rejected_by_libvirt if libvirt else not hit.flows[0].bridge.masquerade:
            owned = (hit.chain.family, hit.chain.table) in rs.owned
            findings.append(_masq_finding(hit, networks, owned))
    return sorted_findings(findings)
