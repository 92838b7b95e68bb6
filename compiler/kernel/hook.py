"""What the libvirt network hook does: reload nftfwd, and say what would still block it.

libvirt waits for its hooks, and a failing hook aborts the network's start, so this
never raises, never asks, never waits for another nftfwd run, and never calls back into
libvirt (that would deadlock). libvirt gives a hook only a few environment variables
(PATH, HOME, LC_ALL...): the model and the state directory are the fixed paths the hook
script passes, written into it by `nftfwd install`. Messages go to stderr and the
journal (or syslog, or a file in the state directory): see hooklog.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

from nftfwd.errors import NftfwdError
from nftfwd.kernel.hooklog import HookLog, Priority
from nftfwd.model import Host

FALLBACK_LOG = "hook.log"
_SHOWN_LINES = 40  # of load's output (its diff) in a message: enough to see what changed


def reload_for_libvirt(args: list[str], *, model_file: Path, state: Path) -> None:
    # Every stage below finds the state directory through NFTFWD_STATE_DIR: set it to
    # the hook's fixed path, whatever the environment held.
    os.environ["NFTFWD_STATE_DIR"] = str(state)
    log = HookLog(fallback=state / FALLBACK_LOG)
    what = f"libvirt network {args[0] if args else '?'} {' '.join(args[1:3])}".rstrip()
    shown = io.StringIO()
    try:
        from nftfwd.compiler import compile_host, load_model
        from nftfwd.config import select_host
        from nftfwd.kernel.load import LoadOptions, load
        from nftfwd.kernel.state import LockBusy

        model = load_model(model_file)
        host = select_host(model, None)
        table = compile_host(model, host)
        try:
            with contextlib.redirect_stdout(shown), contextlib.redirect_stderr(shown):
                code = load(host, table, LoadOptions(yes=True, wait_for_lock=False))
        except LockBusy as err:
            log.write(
                Priority.WARNING,
                f"{what}: not reloaded: {err} It may be a `nftfwd load --confirm` waiting "
                "for confirmation; the hook does not wait (libvirt waits for it). Once "
                "that run has finished: systemctl reload nftfwd (or nftfwd load --atomic "
                f"{model_file}).",
            )
            return
        log.write(Priority.INFO, f"{what}: reloaded {model_file} (exit {code})\n{_tail(shown)}")
        _log_findings(log, host, model.table)
    except NftfwdError as err:
        log.write(
            Priority.ERR, f"{what}: reload of {model_file} failed: {err}\n{_tail(shown)}".rstrip()
        )
    except Exception as err:  # a hook must never break libvirt's network start
        log.write(Priority.ERR, f"{what}: unexpected error: {err!r}")


def _tail(shown: io.StringIO) -> str:
    lines = shown.getvalue().rstrip("\n").splitlines()
    if len(lines) > _SHOWN_LINES:
        cut = len(lines) - _SHOWN_LINES
        lines = [*lines[: _SHOWN_LINES // 2], f"... ({cut} lines)", *lines[-_SHOWN_LINES // 2 :]]
    return "\n".join(lines)


def _log_findings(log: HookLog, host: Host, table: str) -> None:
    from nftfwd.kernel.examine import examine

    for finding in examine(host, table):
        if finding.severity == "note":  # as load: errors and warnings, what needs a hand
            continue
        priority = Priority.ERR if finding.severity == "error" else Priority.WARNING
        log.write(
            priority,
            f"doctor {finding.severity} {finding.id}: {finding.subject}: {finding.message}"
            f"\nFix:\n{finding.fix}",
        )
