"""A throwaway network namespace with an empty ruleset, for the kernel's view of a script.

`unshare -Urn` needs no root where unprivileged user namespaces are allowed. The
child process is this module; it loads what it reads on stdin and prints the result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Literal

from nftfwd.errors import NftfwdError
from nftfwd.kernel.libnft import KernelRefused, Nft

ScriptFormat = Literal["nft", "json"]
TIMEOUT_S = 60


@dataclass(frozen=True)
class Listing:
    """What the kernel holds after a load: its JSON and its text of one table."""

    json: dict[str, object]
    text: str


def kernel_listing(script: str, fmt: ScriptFormat, family: str, table: str) -> Listing:
    """Load `script` into an empty namespace; return the kernel's listing of `table`."""
    data = json.loads(_run(["load", fmt, family, table, "json+text"], script))
    return Listing(data["json"], data["text"])


def kernel_text(script: str, fmt: ScriptFormat, family: str, table: str) -> str:
    """Only the kernel's text of `table` after loading `script` (half the listing work)."""
    return str(json.loads(_run(["load", fmt, family, table, "text"], script))["text"])


def kernel_check(script: str, fmt: ScriptFormat) -> None:
    """Have the kernel accept `script` in an empty namespace, then throw it away."""
    _run(["load", fmt, "-", "-", "none"], script)


def _run(args: list[str], stdin: str) -> str:
    # Root needs no user namespace; inside one, nft cannot enlarge its netlink buffer
    # and batches of a few thousand elements fail with "Message too long".
    isolation = ["--net"] if os.geteuid() == 0 else ["--user", "--map-root-user", "--net"]
    argv = ["unshare", *isolation, sys.executable, "-m", "nftfwd.kernel.sandbox", *args]
    try:
        proc = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
    except FileNotFoundError:
        raise NftfwdError("`unshare` (util-linux) is needed to check rules safely.") from None
    except subprocess.TimeoutExpired:
        raise NftfwdError(f"the kernel check took longer than {TIMEOUT_S} s.") from None
    if proc.returncode == 3:
        message = proc.stderr.strip().replace("the transaction", "the compiled rules")
        raise KernelRefused(message, stdin)
    if proc.returncode != 0:
        raise NftfwdError(
            "cannot make a throwaway network namespace to check the rules "
            f"({proc.stderr.strip() or 'unshare failed'}); run as root, or allow "
            "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)."
        )
    return proc.stdout


def _child(argv: list[str]) -> int:
    _, fmt, family, table, listing_kind = argv
    script = sys.stdin.read()
    nft = Nft()
    try:
        if fmt == "json":
            nft.apply_json(json.loads(script))
        else:
            nft.apply_text(script)
    except KernelRefused as err:
        print(str(err), file=sys.stderr)
        return 3
    if listing_kind != "none":
        listing: dict[str, object] = {"text": nft.list_table_text(family, table) or ""}
        if listing_kind == "json+text":
            listing["json"] = nft.list_ruleset()  # only this table exists here
        json.dump(listing, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
