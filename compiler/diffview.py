"""How a plan is shown as text: plain and stable for scripts, coloured on a terminal.

Markdown for a pull request is markdown.py's; JSON is plan_json.py's."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from nftfwd.nft_text import shown_comment
from nftfwd.plan import ElementChange, ForwardChange, HostDiff, Target

GREEN, RED, YELLOW, BOLD, RESET = "\033[32m", "\033[31m", "\033[33m", "\033[1m", "\033[0m"
FAMILY = {"ip": "IPv4", "ip6": "IPv6"}
COLOR_OF = {"+": GREEN, "-": RED, "~": YELLOW}
ELEMENTS_SHOWN = 10  # per set or map; the forwards above say the rest in the model's terms


def port_text(first: int, last: int) -> str:
    """A port, or a range of them, as the model writes it."""
    return str(first) if first == last else f"{first}-{last}"


def _target(
    target: Target, change: ForwardChange, names: Mapping[str, str], text: Callable[[str], str]
) -> str:
    name = names.get(target.address)
    port = port_text(*change.guest_ports(target))
    comment = "" if target.comment is None else f' "{text(shown_comment(target.comment))}"'
    return f"{name + ' ' if name else ''}{target.address} port {port}{comment}"


def describe(
    change: ForwardChange, names: Mapping[str, str], text: Callable[[str], str] = str
) -> str:
    """The change in the model's terms; `text` makes a comment fit the output format."""
    key = change.key
    where = f"any {FAMILY[key.family]} host address" if key.listen == "any" else key.listen
    line = f"{key.proto} {port_text(key.port, change.last_port)} on {where}"
    if key.source != "any":
        line += f" from {key.source}"
    if change.new is not None:
        line += f" -> {_target(change.new, change, names, text)}"
    if change.old is not None:
        old = _target(change.old, change, names, text)
        line += f" (was {old})" if change.new is not None else f" -> {old}"
    return line


def format_text(diff: HostDiff, color: bool) -> str:
    def paint(code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if color else text

    lines = [
        paint(
            BOLD,
            f"host {diff.host}, table inet {diff.table}: "
            + ("changes" if diff.changed else "no changes"),
        )
    ]
    if diff.forwards:
        lines.append("forwards:")
        lines += [
            paint(COLOR_OF[c.change], f"  {c.change} {describe(c, diff.guest_names)}")
            for c in diff.forwards
        ]
    if diff.rules:
        lines.append("rules:")
        for line in diff.rules:
            code = {"+": GREEN, "-": RED, "@": YELLOW}.get(line[:1], "")
            is_header = line.startswith(("+++", "---"))
            lines.append(paint(BOLD if is_header else code, line) if code or is_header else line)
    if diff.elements:
        lines.append("elements:")
        for line in element_lines(diff.elements):
            sign = line.lstrip()[:1]  # "+", "-", or "." of the count line
            lines.append(paint(COLOR_OF[sign], line) if sign in ("+", "-") else line)
    return "\n".join(lines) + "\n"


def element_lines(changes: list[ElementChange]) -> list[str]:
    """`+ NAME { ELEMENT }` per change, at most ELEMENTS_SHOWN of a set, then a count."""
    lines: list[str] = []
    by_owner: dict[str, list[ElementChange]] = {}
    for change in changes:
        by_owner.setdefault(change.owner, []).append(change)
    for owner, owned in by_owner.items():
        lines += [f"  {c.change} {owner} {{ {c.element} }}" for c in owned[:ELEMENTS_SHOWN]]
        if len(owned) > ELEMENTS_SHOWN:
            added = sum(1 for c in owned if c.change == "+")
            lines.append(f"  ... {owner}: {added} added and {len(owned) - added} removed in all")
    return lines
