"""Closing what a removed forward still carries: conntrack keeps a flow's NAT until it ends."""

from __future__ import annotations

import shutil
import subprocess

from nftfwd.plan import ForwardChange

FAMILY = {"ip": "ipv4", "ip6": "ipv6"}


def forget_flows(changes: list[ForwardChange]) -> tuple[int, str | None]:
    """Delete the tracked flows of removed or retargeted forwards.

    Returns (commands run, a warning or None). A flow is matched by what it was
    DNATed to, so connections of forwards that stay are left alone.
    """
    gone = [c for c in changes if c.change in ("-", "~") and c.old is not None]
    if not gone:
        return 0, None
    tool = shutil.which("conntrack")
    if tool is None:
        return 0, (
            "`conntrack` is not installed: connections already open through removed "
            "forwards keep working until they end (apt-get install conntrack)."
        )
    runs = 0
    for change in gone:
        assert change.old is not None
        for host_port in range(change.key.port, change.last_port + 1):
            argv = [
                tool,
                "-D",
                "-f",
                FAMILY[change.key.family],
                "-p",
                change.key.proto,
                "--orig-port-dst",
                str(host_port),
                "--reply-src",
                change.old.address,
                "--reply-port-src",
                str(change.old_port(host_port)),
            ]
            # Exit 1 with "0 flow entries" is the normal answer when nothing matched.
            subprocess.run(argv, capture_output=True, check=False, timeout=10)
            runs += 1
    return runs, None
