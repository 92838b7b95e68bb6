"""`nftfwd load --atomic`: show the plan, apply it in one transaction, prove it, keep a way back.

Exit codes (model.md): 0 applied or nothing to change; 1 declined, or --dry-run with
changes; 2 error, host unchanged; 3 rolled back because nobody confirmed in time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nftfwd.diffview import format_text
from nftfwd.errors import NftfwdError
from nftfwd.files import write_atomically
from nftfwd.ir import Table
from nftfwd.kernel.conntrack import forget_flows
from nftfwd.kernel.libnft import KernelRefused, Nft
from nftfwd.kernel.live import (
    batch_file,
    compiled_side,
    holds,
    live_diff,
    read_live,
    restore_batch,
)
from nftfwd.kernel.state import exclusive_lock, state_dir
from nftfwd.model import Host

APPLIED, DECLINED, ROLLED_BACK = 0, 1, 3  # 2: an NftfwdError, raised
PENDING = "pending-confirm.json"
# Restore either with `nft -j -f FILE`.
PREVIOUS, LAST_GOOD = "previous.json", "last-good.json"
CONFIRMED = "confirmed"


@dataclass(frozen=True)
class LoadOptions:
    yes: bool = False
    dry_run: bool = False
    confirm_seconds: int | None = None
    color: bool = False
    interactive: bool = False  # stdin is a terminal: ask before applying
    wait_for_lock: bool = True  # False: LockBusy when another run holds the lock


def say(message: str) -> None:
    """Progress for the person watching; a lost terminal must not stop a rollback."""
    with contextlib.suppress(OSError):
        print(message, file=sys.stderr, flush=True)


def load(host: Host, table: Table, options: LoadOptions) -> int:
    with exclusive_lock(wait=options.wait_for_lock):
        nft = Nft()
        live = read_live(nft, table)
        with _refusal_reported(table):
            compiled = compiled_side(table)
        diff = live_diff(host, table, live, compiled)
        sys.stdout.write(format_text(diff, options.color))
        sys.stdout.flush()
        if not diff.changed:
            say("nothing to change.")
            return APPLIED
        if options.dry_run:
            return DECLINED
        if options.interactive and not options.yes and not _ask("Apply these changes?"):
            say("declined; nothing was changed.")
            return DECLINED
        previous = restore_batch(table, live)
        directory = state_dir()
        write_atomically(directory / PREVIOUS, batch_file(previous))
        say(f"applying table inet {table.name} in one transaction...")
        with _refusal_reported(table):
            nft.apply_json(compiled.batch, f"the new table inet {table.name}")
        if not holds(read_live(nft, table), compiled, table):
            nft.apply_json(previous, "restoring the previous table")
            raise NftfwdError(
                "the table read back differs from the compiled one; "
                "the previous table was restored."
            )
        runs, warning = forget_flows(diff.forwards)
        if warning:
            say(f"warning: {warning}")
        elif runs:
            say("closed tracked connections of removed or changed forwards.")
        if options.confirm_seconds is not None and not _confirmed(options):
            nft.apply_json(previous, "rolling back")
            say(
                f"not confirmed within {options.confirm_seconds} s: rolled back to the "
                "previous table."
            )
            return ROLLED_BACK
        write_atomically(directory / LAST_GOOD, batch_file(compiled.batch))
        say(f"applied; the last good ruleset is kept in {directory / LAST_GOOD}.")
        return APPLIED


@contextlib.contextmanager
def _refusal_reported(table: Table) -> Iterator[None]:
    """A refused batch is kept on disk and the error names the rule the kernel refused;
    the host stays as it was."""
    try:
        yield
    except KernelRefused as err:
        refused = state_dir() / "refused.json"
        write_atomically(refused, err.refused)
        raise NftfwdError(
            f"{err}{_refused_rule(table)}; nothing was changed (the refused batch is in {refused})."
        ) from None


def _refused_rule(table: Table) -> str:
    """libnftables locates errors only in text input: dry-run the same table as nft text
    against this kernel, so the message can quote the line it refused."""
    from nftfwd.render_nft import render_nft  # jinja2: only on this rare path

    script = render_nft(table)
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".nft") as file:
            file.write(script)
            file.flush()
            Nft(dry_run=True).apply_file(file.name)
    except KernelRefused as err:
        lines = script.splitlines()
        numbers = [int(n) for n in re.findall(r":(\d+):\d+(?:-\d+)?: Error", str(err))]
        quoted = [lines[n - 1].strip() for n in numbers if 0 < n <= len(lines)]
        if quoted:
            return "; the refused part: " + " | ".join(dict.fromkeys(quoted))
    except NftfwdError:
        pass
    return ""


def _ask(question: str) -> bool:
    say(f"{question} [y/N] ")
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _confirmed(options: LoadOptions) -> bool:
    """Wait for a 'yes' here or `nftfwd confirm` elsewhere; survive a dropped SSH session."""
    assert options.confirm_seconds is not None
    directory = state_dir()
    marker, pending = directory / CONFIRMED, directory / PENDING
    marker.unlink(missing_ok=True)
    deadline = time.monotonic() + options.confirm_seconds
    write_atomically(pending, json.dumps({"pid": os.getpid(), "deadline_s": deadline}))
    # If the new rules cut the person off, their terminal goes away: keep counting down.
    old_hup = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    say(
        f"keep these rules? confirm within {options.confirm_seconds} s "
        + ("by answering y, or " if options.interactive else "")
        + "by running `nftfwd confirm` in another shell; otherwise they are rolled back."
    )
    try:
        return _wait(marker, deadline, options.interactive)
    finally:
        signal.signal(signal.SIGHUP, old_hup)
        pending.unlink(missing_ok=True)
        marker.unlink(missing_ok=True)


def _wait(marker: Path, deadline: float, interactive: bool) -> bool:
    if interactive:
        say("Keep these rules? [y/N] ")
    while (left := deadline - time.monotonic()) > 0:
        if marker.exists():
            return True
        if not interactive:
            time.sleep(min(0.2, left))
            continue
        try:
            ready, _, _ = select.select([sys.stdin], [], [], min(0.2, left))
            if ready:
                answer = sys.stdin.readline()
                if answer:
                    return answer.strip().lower() in ("y", "yes")
                interactive = False  # end of input: the terminal is gone
        except (OSError, ValueError):
            interactive = False
    return marker.exists()


def confirm_pending() -> None:
    """`nftfwd confirm`: keep the rules of a load that waits for confirmation."""
    directory = state_dir()
    pending = directory / PENDING
    try:
        pid = int(json.loads(pending.read_text())["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError):
        raise NftfwdError("no `nftfwd load --confirm` is waiting for confirmation.") from None
    (directory / CONFIRMED).write_text(str(pid))
