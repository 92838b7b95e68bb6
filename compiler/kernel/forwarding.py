"""`load --enable-forwarding`: turn on IP forwarding now and at boot, without losing SLAAC.

With forwarding on, Linux ignores router advertisements on interfaces whose accept_ra
is 1, so an uplink that configures itself by SLAAC would lose its IPv6 address and
default route; such uplinks get accept_ra=2 (accept them even when forwarding).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nftfwd.config import SYSCTL_FILE
from nftfwd.errors import NftfwdError
from nftfwd.files import write_atomically
from nftfwd.model import Host


@dataclass(frozen=True)
class Setting:
    key: str  # slash form, as under /proc/sys: net/ipv6/conf/eth0.100/accept_ra
    value: str
    why: str


def _read(root: Path, key: str) -> str | None:
    try:
        return (root / "proc/sys" / key).read_text().strip()
    except OSError:
        return None


def _uses_slaac(root: Path, uplink: str) -> bool:
    conf = f"net/ipv6/conf/{uplink}"
    return _read(root, f"{conf}/accept_ra") in ("1", "2") and _read(root, f"{conf}/autoconf") == "1"


def forwarding_settings(host: Host, root: Path = Path("/")) -> list[Setting]:
    """What this host needs, given which families its bridges use."""
    settings = []
    if host.subnets_in("ip"):
        settings.append(Setting("net/ipv4/ip_forward", "1", "forward IPv4 to the guests"))
    if host.subnets_in("ip6"):
        settings.append(Setting("net/ipv6/conf/all/forwarding", "1", "forward IPv6 to the guests"))
        for uplink in host.uplinks:
            if _uses_slaac(root, uplink):
                settings.append(
                    Setting(
                        f"net/ipv6/conf/{uplink}/accept_ra",
                        "2",
                        f"{uplink} uses SLAAC: keep accepting router advertisements",
                    )
                )
    return settings


def enable_forwarding(host: Host, root: Path = Path("/")) -> list[Setting]:
    """Persist the settings in /etc/sysctl.d, then apply them now; return what changed.

    The file comes first: where it cannot be written (a read-only /etc, say) nothing
    is changed, rather than sysctls that the next boot would forget."""
    settings = forwarding_settings(host, root)
    if not settings:
        return []
    lines = [
        "# Written by nftfwd load --enable-forwarding.",
        *(f"# {s.why}\n{s.key} = {s.value}" for s in settings),
    ]
    _persist(root / SYSCTL_FILE, "\n".join(lines) + "\n")
    changed = []
    for setting in settings:
        if _read(root, setting.key) == setting.value:
            continue
        try:
            (root / "proc/sys" / setting.key).write_text(setting.value + "\n")
        except OSError as err:
            raise NftfwdError(
                f"cannot set {setting.key.replace('/', '.')}: {err.strerror}"
                + (" (nftfwd needs root for this)." if os.geteuid() != 0 else ".")
            ) from None
        changed.append(setting)
    return changed


def _persist(path: Path, content: str) -> None:
    try:
        if path.read_text() == content:
            return  # already there: nothing to write, also on a read-only /etc
    except (OSError, UnicodeDecodeError):
        pass
    try:
        write_atomically(path, content)
    except OSError as err:
        raise NftfwdError(
            f"cannot write {path} ({err.strerror}), so forwarding would be off again after "
            "a reboot; nothing was changed. Make it writable, or set the sysctls by hand."
        ) from None
