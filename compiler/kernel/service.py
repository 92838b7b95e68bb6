"""`install` and `uninstall` on the live host: nftfwd.service and nftfwd's table.

install enables and starts the unit; uninstall stops and disables it and removes the
table. The files they write and remove are nftfwd.install's."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

from nftfwd.compiler import load_model
from nftfwd.errors import NftfwdError
from nftfwd.kernel.state import OWNED, owned_table, state_dir, state_path
from nftfwd.kernel.system import delete_table, systemctl, systemd_running

UNIT = "nftfwd.service"


@dataclass(frozen=True)
class PartlyDone:
    """A step that failed after the files were in place (exit 1, "done in part")."""

    what: str
    still_to_do: list[str]


def start_service(load_now: str) -> PartlyDone | None:
    """Enable nftfwd.service and start it, which loads the model. load_now is the command
    that loads it by hand, for the steps left to the admin when that cannot be done."""
    if not systemd_running():
        # A chroot, an image being built, or another init: systemctl enables offline
        # where it exists (then systemd loads the model at boot); nothing loads now.
        try:
            systemctl("enable", UNIT)
        except NftfwdError:
            return PartlyDone(
                "this host does not run systemd (no /run/systemd/system): nftfwd.service is "
                "in place but not enabled, and nothing was loaded.",
                [
                    f"load the rules now: {load_now}",
                    "load them at every boot, after the network is up and after "
                    f"/etc/nftables.conf: have your init system run {load_now} --yes",
                    "(or, once systemd runs this host: systemctl daemon-reload && "
                    "systemctl enable --now nftfwd.service)",
                ],
            )
        return PartlyDone(
            "systemd is not running here (no /run/systemd/system: a chroot, or an image "
            "being built): nftfwd.service is enabled and loads the model at boot, but "
            "nothing was loaded now.",
            [f"load the rules now, on the system that forwards: {load_now}"],
        )
    try:
        systemctl("daemon-reload")
        systemctl("enable", "--now", UNIT)
    except NftfwdError as err:
        return PartlyDone(
            f"the files are in place, but {err}",
            [
                "see why: systemctl status nftfwd.service; journalctl -u nftfwd.service",
                "then: systemctl daemon-reload && systemctl enable --now nftfwd.service",
            ],
        )
    return None


def stop_service(table: str) -> list[str]:
    """Disable and stop nftfwd.service, then remove its table (installed_table says
    which); what systemd could not do."""
    failed: list[str] = []
    if systemd_running():
        try:
            systemctl("disable", "--now", UNIT)
        except NftfwdError as err:
            failed.append(str(err))
    else:  # a chroot: disabling works offline; not installed is fine too
        with contextlib.suppress(NftfwdError):
            systemctl("disable", UNIT)
    delete_table("inet", table)
    return failed


def reload_units() -> list[str]:
    """systemd rereads its units (the unit file is gone); what failed, if it did."""
    if not systemd_running():
        return []
    try:
        systemctl("daemon-reload")
    except NftfwdError as err:
        return [str(err)]
    return []


# `table: NAME` on a line of its own, as a model says it (quoted or not, maybe a comment).
_TABLE_LINE = re.compile(
    r"""^table:[ \t]*(["']?)([A-Za-z][A-Za-z0-9_]{0,31})\1[ \t]*(?:#.*)?$""", re.MULTILINE
)


def installed_table(model: Path, *, use_state: bool = True) -> tuple[str, str | None]:
    """The table `uninstall` removes, and a note when the installed model could not say
    it properly. Only the name is needed, so a broken model does not stop an uninstall:
    its `table:` line is read on its own, else nftfwd's state says which table it owns,
    else it is the default."""
    recorded = owned_table(state_path()) if use_state and state_path().is_dir() else None
    if not (model.exists() or model.is_symlink()):
        return recorded or "nftfwd", None
    try:
        return load_model(model).table, None
    except NftfwdError as err:
        first = str(err).splitlines()[0]
    try:
        found = _TABLE_LINE.search(model.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        found = None
    if found is not None:
        where = "its `table:` line"
        name = found.group(2)
    elif use_state and (recorded := owned_table(state_dir())) is not None:
        where, name = f"nftfwd's state ({state_path() / OWNED})", recorded
    else:
        where, name = "no `table:` in it: the default", "nftfwd"
    return name, (
        f"warning: the installed model {model} is broken ({first}); removing table inet "
        f"{name}, from {where}."
    )
