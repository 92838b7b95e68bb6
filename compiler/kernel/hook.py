"""What the libvirt network hook does: reload nftfwd, and say what would still block it.

libvirt waits for its hooks, and a failing hook aborts the network's start, so this
never raises, never asks, and never calls back into libvirt (that would deadlock).
"""

from __future__ import annotations

import contextlib
import io

from nftfwd.errors import NftfwdError
from nftfwd.kernel.system import log
from nftfwd.model import Host


def reload_for_libvirt(args: list[str]) -> None:
    network = args[0] if args else "?"
    try:
        from nftfwd.compiler import compile_host
        from nftfwd.config import load_model, model_path, select_host
        from nftfwd.kernel.load import LoadOptions, load

        model = load_model(model_path(None))
        host = select_host(model, None)
        table = compile_host(model, host)
        shown = io.StringIO()
        with contextlib.redirect_stdout(shown), contextlib.redirect_stderr(shown):
            code = load(host, table, LoadOptions(yes=True))
        log(f"libvirt network {network} {args[1:2]}: reload exit {code}")
        _log_findings(host, model.table)
    except NftfwdError as err:
        log(f"libvirt network {network}: reload failed: {err}")
    except Exception as err:  # a hook must never break libvirt's network start
        log(f"libvirt network {network}: unexpected error: {err!r}")


def _log_findings(host: Host, table: str) -> None:
    from nftfwd.kernel.hoststate import examine

    for finding in examine(host, table):
        if finding.severity != "note":  # as load: errors and warnings, what needs a hand
            log(f"doctor {finding.severity} {finding.id}: {finding.subject}: "
                f"{finding.message} Fix: {finding.fix}")  # fmt: skip
