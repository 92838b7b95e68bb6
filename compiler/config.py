"""Which model file and which host of it a command works on; nftfwd's other fixed paths.

model.md, "Commands"."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from nftfwd.errors import NftfwdError, echo
from nftfwd.model import Host, Model

SYSTEM_MODEL = Path("/etc/nftfwd/nftfwd.yaml")
# Where `load --enable-forwarding` keeps the sysctls it sets (relative: under a root).
SYSCTL_FILE = Path("etc/sysctl.d/90-nftfwd.conf")


def model_path(given: Path | None) -> Path:
    """The MODEL argument, else $NFTFWD_CONFIG, else ./nftfwd.yaml, else the system one."""
    if given is not None:
        return given
    if env := os.environ.get("NFTFWD_CONFIG"):
        return Path(env)
    for candidate in (Path("nftfwd.yaml"), SYSTEM_MODEL):
        if candidate.exists():
            return candidate
    raise NftfwdError(
        "no model file given: pass MODEL, set NFTFWD_CONFIG, or create ./nftfwd.yaml "
        f"or {SYSTEM_MODEL}."
    )


def host_list(names: list[str], shown: int = 10) -> str:
    """Host names for a message: the first `shown` of a fleet, then how many more."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def find_host(model: Model, name: str) -> Host | None:
    """The host called `name`: the one spelled exactly so, else the only one whose name
    differs only in case (host names, like hostnames, are not case-sensitive)."""
    folded = name.casefold()
    exact = [host for host in model.hosts if host.name == name]
    loose = [host for host in model.hosts if host.name.casefold() == folded]
    if exact:
        return exact[0]
    if len(loose) > 1:
        names = ", ".join(host.name for host in loose)
        raise NftfwdError(
            f"{model.source}: hosts {names} differ only in case, and '{echo(name)}' is none "
            "of them exactly; give --host exactly as the model spells it."
        )
    return loose[0] if loose else None


def select_host(model: Model, name: str | None, hostname: str | None = None) -> Host:
    """--host NAME, else the only host, else the one named like this machine (its full
    name before its short name, so web1.example.com picks host web1.example.com over web1)."""
    names = host_list([h.name for h in model.hosts])
    if name is not None:
        host = find_host(model, name)
        if host is None:
            raise NftfwdError(
                f"{model.source}: no host '{echo(name)}' in the model; its hosts are {names}."
            )
        return host
    if len(model.hosts) == 1:
        return model.hosts[0]
    full = hostname if hostname is not None else socket.gethostname()
    for candidate in (full, full.split(".")[0]):
        host = find_host(model, candidate)
        if host is not None:
            return host
    raise NftfwdError(
        f"{model.source} describes several hosts ({names}) and none is named like this "
        f"machine ('{echo(full.lower())}'); choose one with --host."
    )
