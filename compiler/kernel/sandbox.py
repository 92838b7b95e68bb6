"""A throwaway network namespace with an empty ruleset, for the kernel's view of a script.

A forked child enters a new network namespace (and, without root, a new user namespace
mapping it to root there, as `unshare -Urn` does), loads the script through
libnftables, sends back what was asked, and exits; the namespace goes with it. Forking
costs no second interpreter start. As root no user namespace is made: inside one, nft
cannot enlarge its netlink buffer and batches of a few thousand elements fail with
"Message too long".
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
from dataclasses import dataclass
from typing import Any, Literal

from nftfwd.errors import NftfwdError
from nftfwd.kernel.libnft import KernelRefused, Nft

ScriptFormat = Literal["nft", "json"]
Wanted = Literal["nothing", "outline", "listing"]
TIMEOUT_S = 60
CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
REFUSED, FAILED = 3, 4


@dataclass(frozen=True)
class Listing:
    """What the kernel holds after a load: its JSON and its text of one table."""

    json: dict[str, object]
    text: str


def kernel_listing(script: str, fmt: ScriptFormat, family: str, table: str) -> Listing:
    """Load `script` into an empty namespace; return the kernel's listing of `table`."""
    data = _in_sandbox(script, fmt, family, table, "listing")
    return Listing(data["json"], data["text"])


def kernel_outline(script: str, fmt: ScriptFormat, family: str, table: str) -> str:
    """The kernel's outline of `table` after loading `script` (Nft.table_outline)."""
    return str(_in_sandbox(script, fmt, family, table, "outline")["text"])


def kernel_check(script: str, fmt: ScriptFormat) -> None:
    """Have the kernel accept `script` in an empty namespace, then throw it away."""
    _in_sandbox(script, fmt, None, None, "nothing")


def _in_sandbox(
    script: str, fmt: ScriptFormat, family: str | None, table: str | None, wanted: Wanted
) -> dict[str, Any]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_end)
        _child(write_end, script, fmt, family, table, wanted)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    message = payload.decode("utf-8", "replace")
    if code == REFUSED:
        raise KernelRefused(message.replace("the transaction", "the compiled rules"), script)
    if code != 0:
        raise NftfwdError(
            "cannot make a throwaway network namespace to check the rules "
            f"({message or f'exit {code}'}); run as root, or allow unprivileged user "
            "namespaces (sysctl kernel.unprivileged_userns_clone=1)."
        )
    result: dict[str, Any] = json.loads(payload) if payload else {}
    return result


def _child(
    out: int, script: str, fmt: ScriptFormat, family: str | None, table: str | None,
    wanted: Wanted,
) -> None:  # fmt: skip
    code = FAILED
    reply = b""
    try:
        signal.alarm(TIMEOUT_S)
        _enter_empty_netns()
        nft = Nft()
        if fmt == "json":
            nft.apply_json(json.loads(script))
        else:
            nft.apply_text(script)
        listing: dict[str, object] = {}
        if family is not None and table is not None and wanted == "outline":
            listing["text"] = nft.table_outline(family, table) or ""
        elif family is not None and table is not None and wanted == "listing":
            listing["text"] = nft.list_table_text(family, table) or ""
            listing["json"] = nft.list_ruleset()  # only this table exists here
        reply, code = json.dumps(listing).encode(), 0
    except KernelRefused as err:
        reply, code = str(err).encode(), REFUSED
    except BaseException as err:  # the parent reports it; a child must never return
        reply = str(err).encode()
    finally:
        with os.fdopen(out, "wb") as pipe:
            pipe.write(reply)
        os._exit(code)


def _enter_empty_netns() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.geteuid(), os.getegid()
    flags = CLONE_NEWNET if uid == 0 else CLONE_NEWUSER | CLONE_NEWNET
    if libc.unshare(flags) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    if uid != 0:  # become root of the new user namespace, as `unshare -r` does
        for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"),
                           ("gid_map", f"0 {gid} 1")):  # fmt: skip
            with open(f"/proc/self/{name}", "w") as file:
                file.write(text)
