"""`nftfwd diff --format markdown`: a review block for a pull request.

Per host that changes: its changed forwards as a Mermaid flowchart (GitHub and GitLab draw it), the
same as a table, then the rules and elements as a diff."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping

from nftfwd.diffview import FAMILY, describe, element_lines, port_text
from nftfwd.plan import ForwardChange, HostDiff, Target

WORD = {"+": "added", "-": "removed", "~": "changed"}
# Told apart three ways: colour, a dashed line for what goes, and the links' words.
CLASSES = (
    "classDef added fill:#dafbe1,stroke:#1a7f37,color:#0f5323",
    "classDef removed fill:#ffebe9,stroke:#cf222e,color:#82071e,stroke-dasharray:5 5",
)
LINK = {"added": "-->", "removed": "-.->", "kept": "-->"}
ENTITIES = {
    "#": "#35;", '"': "#quot;", "&": "#amp;", "<": "#lt;", ">": "#gt;", "`": "#96;",
    "%": "#37;",  # %% starts a comment
}  # fmt: skip


def markdown_text(text: str) -> str:
    """Text for a table cell or a line of Markdown: every ASCII punctuation mark escaped
    (CommonMark lets any be), so nothing in it is markup, a link, HTML or a cell's end."""
    return "".join(f"\\{c}" if c in string.punctuation else c for c in text)


def fence(lines: list[str], info: str) -> list[str]:
    """`lines` as a fenced code block whose fence no backtick run inside can close."""
    longest = max((len(run) for line in lines for run in re.findall("`+", line)), default=0)
    ticks = "`" * max(3, longest + 1)
    return [f"{ticks}{info}", *lines, ticks]


def mermaid_text(text: str) -> str:
    """Text for inside a quoted Mermaid label: nothing in it can end the label, the
    diagram or the code fence around it (quotes, #, HTML, backticks, %%, line breaks)."""
    return "".join(ENTITIES.get(c, c) if c.isprintable() else " " for c in text)


class _Chart:
    """Nodes made once per label; links, each added or removed, made once."""

    def __init__(self) -> None:
        self.nodes: dict[str, str] = {}  # label -> node id
        self.links: dict[tuple[str, str, str], str] = {}  # (from, to, word) -> a LINK kind
        self.seen: dict[str, set[str]] = {}  # node id -> the kinds of its links

    def node(self, *lines: str) -> str:
        label = "<br>".join(mermaid_text(line) for line in lines)
        return self.nodes.setdefault(label, f"n{len(self.nodes)}")

    def link(self, start: str, end: str, kind: str, word: str = "") -> None:
        self.links.setdefault((start, end, word), kind)
        for node in (start, end):
            self.seen.setdefault(node, set()).add(kind)

    def lines(self) -> list[str]:
        out = ["flowchart LR", *(f"  {c}" for c in CLASSES)]
        out += [f'  {node}["{label}"]' for label, node in self.nodes.items()]
        for (start, end, word), kind in self.links.items():
            arrow = f"{LINK[kind]}|{word}|" if word else LINK[kind]
            out.append(f"  {start} {arrow} {end}")
        for kind in ("added", "removed"):
            only = [node for node, kinds in self.seen.items() if kinds == {kind}]
            if only:
                out.append(f"  class {','.join(only)} {kind}")
        return out


def _guest(chart: _Chart, target: Target, change: ForwardChange, names: Mapping[str, str]) -> str:
    name = names.get(target.address)
    first = f"{name} {target.address}" if name else target.address
    return chart.node(first, f"port {port_text(*change.guest_ports(target))}")


def flowchart(changes: list[ForwardChange], names: Mapping[str, str]) -> list[str]:
    """Client side -> host port -> guest and its port, per changed forward; a changed
    forward keeps its host side and links to its old guest side (removed) and new one."""
    chart = _Chart()
    for change in changes:
        key = change.key
        where = f"any {FAMILY[key.family]} host address" if key.listen == "any" else key.listen
        clients = chart.node("any client" if key.source == "any" else f"from {key.source}")
        host = chart.node(f"{key.proto} {port_text(key.port, change.last_port)}", f"on {where}")
        side = {"+": "added", "-": "removed", "~": "kept"}[change.change]  # the host side
        chart.link(clients, host, side)
        if change.old is not None:
            old = _guest(chart, change.old, change, names)
            chart.link(host, old, "removed", "was" if change.new else "removed")
        if change.new is not None:
            new = _guest(chart, change.new, change, names)
            chart.link(host, new, "added", "now" if change.old else "added")
    return chart.lines()


def format_markdown(diffs: list[HostDiff]) -> str:
    out = ["## nftfwd: what this change does to the firewall", ""]
    for diff in diffs:
        out.append(f"### host `{diff.host}` (table `inet {diff.table}`)")
        out.append("")
        if not diff.changed:
            out += ["No change.", ""]
            continue
        if diff.forwards:
            out += ["```mermaid", *flowchart(diff.forwards, diff.guest_names), "```", ""]
            out += ["| | forward |", "|---|---|"]
            out += [
                f"| {WORD[c.change]} | {describe(c, diff.guest_names, markdown_text)} |"
                for c in diff.forwards
            ]
            out.append("")
        if diff.rules or diff.elements:
            changes = [*diff.rules, *(line.strip() for line in element_lines(diff.elements))]
            out += [
                "<details><summary>rules diff</summary>",
                "",
                *fence(changes, "diff"),
                "",
                "</details>",
                "",
            ]
    return "\n".join(out) + "\n"
