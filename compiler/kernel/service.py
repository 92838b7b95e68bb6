"""`install`, `uninstall` and `unload` on the live host: nftfwd.service and nftfwd's table.

install enables and starts the unit; uninstall stops and disables it and removes the
table; unload removes the table alone. The files install and uninstall write and remove
are nftfwd.install's. Both removals find the table one way (`installed_table`) and
remove it one way (`delete_table`)."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from nftfwd.compiler import load_model
from nftfwd.config import SYSTEM_MODEL, model_path
from nftfwd.errors import NftfwdError
from nftfwd.kernel.libnft import Nft
from nftfwd.kernel.pending import take_over
from nftfwd.kernel.state import OWNED, exclusive_lock, owned_table, state_dir, state_path
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


@dataclass(frozen=True)
class Unloaded:
    """What `unload` found: nftfwd's table, whether it was loaded (and so is removed,
    unless it was a dry run), and a note when the model could not say the table properly."""

    table: str
    loaded: bool
    note: str | None


def unload(model: Path | None, *, dry_run: bool = False) -> Unloaded:
    """`nftfwd unload`: remove nftfwd's table and nothing else (model.md, "Commands").

    The table is found as uninstall finds it (`installed_table`): the model's, also of a
    broken model, else the one nftfwd's state records, else the default; without a model
    file anywhere, from the state alone. A load that waits for confirmation is cancelled
    first, under the load lock, so that its guard cannot bring the table back later. The
    unit, the hook, the model and the state files stay: `nftfwd load` brings the table
    back, and so does the next boot where `nftfwd install` was run.
    """
    if model is not None and not (model.exists() or model.is_symlink()):
        raise NftfwdError(f"{model}: no such model file.")
    try:
        path = model_path(model)
    except NftfwdError:  # no model anywhere: the state (or the default) says which table
        path = SYSTEM_MODEL
    table, note = installed_table(path, use_state=True)
    if os.geteuid() != 0:
        raise NftfwdError(
            f"nftfwd unload needs root: it reads and changes the kernel's ruleset "
            f"(CAP_NET_ADMIN) and takes the load lock in {state_path()}."
        )
    if dry_run:
        return Unloaded(table, Nft().has_table("inet", table), note)
    with exclusive_lock():
        take_over(state_dir(), None)
        loaded = Nft().has_table("inet", table)
        if loaded:
            delete_table("inet", table)
    return Unloaded(table, loaded, note)
