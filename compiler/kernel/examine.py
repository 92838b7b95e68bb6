"""`nftfwd doctor` on this host: read it, then judge what was read.

The readers are nftfwd.kernel.hoststate; the judging is nftfwd.doctor, pure."""

from __future__ import annotations

from pathlib import Path

from nftfwd.doctor.findings import Finding
from nftfwd.doctor.hostchecks import NFTABLES_CONF
from nftfwd.doctor.run import diagnose
from nftfwd.kernel.hoststate import read_live_ruleset, read_state
from nftfwd.model import Host


def examine(
    host: Host, own_table: str, *, nftables_conf: str | None = None, boot_root: str = "/"
) -> list[Finding]:
    """doctor on this host: read the live ruleset and host state, then judge them. The
    systemd units and (unless given) nftables.conf are read under boot_root."""
    ruleset, text = read_live_ruleset(own_table=own_table)
    conf = nftables_conf or str(Path(boot_root, NFTABLES_CONF.lstrip("/")))
    state = read_state(host, nftables_conf=conf, boot_root=boot_root)
    return diagnose(host, own_table, ruleset, state, ruleset_text=text)
