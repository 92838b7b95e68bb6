"""Whether nftfwd's table survives what nftables.service does with /etc/nftables.conf.

Debian's /etc/nftables.conf starts with `flush ruleset`, which deletes every table, and
nftables.service runs it at start, restart and reload (`nft -f /etc/nftables.conf`).
How much that weighs depends on what comes after it: the unit of `nftfwd install` loads
nftfwd's table after nftables.service at boot, again after a restart (PartOf=) and a
reload (ReloadPropagatedFrom=) of it. Pure: nftfwd.kernel.hoststate reads the units.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nftfwd.doctor.findings import Finding, Severity

NFTABLES_SERVICE = "nftables.service"
_FLUSH = re.compile(r"^\s*flush\s+ruleset\b")
_TABLE = re.compile(r"^\s*table\s+(ip|ip6|inet|arp|bridge|netdev)\s+([A-Za-z][\w.-]*)", re.M)


@dataclass(frozen=True)
class BootUnits:
    """What systemd on this host runs of nftables and nftfwd, as its unit files say.

    nftfwd_unit: the text of nftfwd.service followed by its drop-ins (None: not installed
    or masked); the *_enabled flags: a .wants/ or .requires/ link pulls the unit in at boot.
    """

    nftables_enabled: bool = False
    nftfwd_unit: str | None = None
    nftfwd_enabled: bool = False

    def nftfwd_follows(self, setting: str) -> bool:
        """Does nftfwd.service name nftables.service in this [Unit] setting?"""
        return self.nftfwd_unit is not None and NFTABLES_SERVICE in unit_setting(
            self.nftfwd_unit, "Unit", setting
        )


def unit_setting(text: str, section: str, key: str) -> list[str]:
    """The words a unit file (and its drop-ins, appended) assigns to `key` in `section`,
    read as systemd reads a list setting: assignments add up, an empty one resets."""
    words: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
        elif current == section and "=" in line and not line.startswith(("#", ";")):
            name, _, value = line.partition("=")
            if name.strip() == key:
                words = [*words, *value.split()] if value.strip() else []
    return words


def flushes(text: str | None) -> bool:
    return text is not None and any(_FLUSH.match(line.split("#")[0]) for line in text.splitlines())


def _sed_fix(path: str, text: str) -> str:
    """Replace `flush ruleset` by a flush of each table the file defines, or comment it out."""
    flush = "^[[:space:]]*flush[[:space:]]\\+ruleset"
    tables = list(dict.fromkeys(_TABLE.findall(text)))
    if tables:
        lines = "\\n".join(f"table {f} {n}\\ndelete table {f} {n}" for f, n in tables)
        fix = f"sed -i 's/{flush}.*$/{lines}/' {path}\nnft -c -f {path}"
        return fix + "\n# each table the file defines is now replaced on its own; other tables stay"
    return f"sed -i 's/{flush}/# &/' {path}\nnft -c -f {path}"


def check_nftables_conf(
    path: str, text: str | None, boot: BootUnits | None = None
) -> list[Finding]:
    """`flush ruleset` in the file nftables.service loads, weighed by what brings nftfwd's
    table back after it: an error only where the next boot leaves the host without it."""
    if text is None or not flushes(text):
        return []
    boot = boot or BootUnits()
    loads_at_boot = boot.nftfwd_unit is not None and boot.nftfwd_enabled
    follows = boot.nftfwd_follows("PartOf") and boot.nftfwd_follows("ReloadPropagatedFrom")
    flush = f"{path} runs `flush ruleset`, which deletes every table, nftfwd's included"
    severity: Severity
    if boot.nftables_enabled and not loads_at_boot:
        severity = "error"
        message = (
            f"{flush}, and nftables.service is enabled, so it runs at the next boot; no enabled "
            "nftfwd unit loads nftfwd's table after it, so none of this host's forwards exists "
            "after the next boot."
        )
    elif loads_at_boot and follows:
        severity = "note"
        message = (
            f"{flush}; nftfwd.service follows nftables.service (PartOf=, ReloadPropagatedFrom=) "
            "and loads nftfwd's table again after its start, restart or reload, but "
            f"`nft -f {path}` run by hand deletes it until `systemctl reload nftfwd`."
        )
    else:
        severity = "warning"
        enabled = "is enabled" if boot.nftables_enabled else "is not enabled"
        if boot.nftfwd_unit is None:
            why = "no nftfwd unit is installed to load nftfwd's table again after it"
        elif not loads_at_boot:
            why = "nftfwd.service is not enabled"
        else:
            why = (
                "nftfwd.service does not follow nftables.service (it needs PartOf= and "
                "ReloadPropagatedFrom=nftables.service; older installs lack the second)"
            )
        message = (
            f"{flush}; nftables.service {enabled}, and {why}: a start, restart or reload of "
            "nftables.service would remove every forward."
        )
    fix = _sed_fix(path, text)
    if severity != "note":
        fix = f"nftfwd install\n# the unit loads nftfwd's table after nftables.service; or:\n{fix}"
    return [Finding("flush-ruleset-on-boot", path, message, fix, severity)]
