"""`nftfwd load --atomic`: show the plan, apply it in one transaction, prove it, keep a way back.

Exit codes (model.md): 0 applied or nothing to change; 1 declined, or --dry-run with
changes; 2 error, host unchanged; 3 rolled back because nobody confirmed in time.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from nftfwd.diffview import format_text
from nftfwd.errors import NftfwdError
from nftfwd.ir import Table
from nftfwd.kernel.conntrack import Flow, forget_flows, gone_flows
from nftfwd.kernel.forwarding import enable_forwarding
from nftfwd.kernel.libnft import KernelRefused, Nft
from nftfwd.kernel.live import (
    Batch,
    Compiled,
    LiveTable,
    batch_file,
    compiled_side,
    holds,
    live_diff,
    read_live,
    restore_batch,
)
from nftfwd.kernel.pending import (
    CONFIRMED,
    PENDING,
    Outcome,
    Pending,
    boot_id,
    confirm,
    confirmed_generation,
    counting_down,
    load_is_running,
    new_generation,
    read_pending,
    settle,
    start_guard,
    take_over,
)
from nftfwd.kernel.state import (
    OWNED,
    commit_staged,
    exclusive_lock,
    expect_file_slot,
    owned_record,
    owned_table,
    stage,
    staged,
    state_dir,
    state_path,
    write_state,
)
from nftfwd.model import Host

APPLIED, DECLINED, ROLLED_BACK = 0, 1, 3  # 2: an NftfwdError, raised
# Restore either with `nft -j -f FILE`.
PREVIOUS, LAST_GOOD = "previous.json", "last-good.json"
# Where a file of nftfwd's must be able to go before a load changes anything.
STATE_FILES = (PREVIOUS, LAST_GOOD, OWNED, PENDING, CONFIRMED, "refused.json")


@dataclass(frozen=True)
class LoadOptions:
    yes: bool = False
    dry_run: bool = False
    confirm_seconds: int | None = None
    detach: bool = False  # with confirm_seconds: leave the countdown to the guard
    color: bool = False
    interactive: bool = False  # stdin is a terminal: ask before applying
    wait_for_lock: bool = True  # False: LockBusy when another run holds the lock
    enable_forwarding: bool = False  # turn on IP forwarding first (not with dry_run)


def say(message: str) -> None:
    """Progress for the person watching; a lost terminal must not stop a rollback."""
    with contextlib.suppress(OSError):
        print(message, file=sys.stderr, flush=True)


def require_root() -> None:
    if os.geteuid() != 0:
        raise NftfwdError(
            "nftfwd load needs root: it changes the kernel's ruleset (CAP_NET_ADMIN) and "
            f"writes its state in {state_path()}."
        )


@dataclass(frozen=True)
class Plan:
    """One load's transaction and its way back."""

    table: Table
    compiled: Compiled
    transaction: Batch
    previous: Batch
    flows: list[Flow]


def load(host: Host, table: Table, options: LoadOptions) -> int:
    if options.enable_forwarding and not options.dry_run:
        for setting in enable_forwarding(host):
            say(f"set {setting.key.replace('/', '.')} = {setting.value}: {setting.why}")
    require_root()
    with exclusive_lock(wait=options.wait_for_lock):
        directory = state_dir()
        for name in STATE_FILES:
            expect_file_slot(directory / name)
        nft = Nft()
        live = read_live(nft, table)
        with _refusal_reported(table):
            compiled = compiled_side(table)
        diff = live_diff(host, table, live, compiled)
        retired = _retired_table(nft, directory, table)
        sys.stdout.write(format_text(diff, options.color))
        if retired is not None:
            print(
                f"table inet {retired.name} (nftfwd's until now, as {directory / OWNED} "
                f"records) is removed in the same transaction: the model names table "
                f"inet {table.name}."
            )
        sys.stdout.flush()
        waiting = read_pending(directory)
        if not diff.changed and retired is None:
            say("nothing to change.")
            _record_owned(directory, table.name)
            if waiting is not None:
                say(
                    f"note: a load waits for confirmation ({max(0, int(waiting.left()))} s "
                    "left): run `nftfwd confirm` to keep its rules."
                )
            return APPLIED
        if options.dry_run:
            return DECLINED
        if options.interactive and not options.yes and not _ask("Apply these changes?"):
            say("declined; nothing was changed.")
            return DECLINED
        plan = _plan(nft, table, live, compiled, retired, gone_flows(diff.forwards))
        # Everything is written before the transaction: a state directory that is full,
        # read-only or not ours fails here, with nothing changed.
        write_state(directory / PREVIOUS, batch_file(plan.previous))
        stage(directory / LAST_GOOD, batch_file(compiled.batch))
        stage(directory / OWNED, owned_record(table.name))
        try:
            if options.confirm_seconds is None:
                return _load_now(nft, directory, plan)
            return _load_with_confirmation(nft, directory, plan, options)
        except NftfwdError:
            drop_new_rules_files(directory)
            raise


def _record_owned(directory: Path, name: str) -> None:
    """A host loaded before nftfwd kept table.json learns its table on the next run;
    nothing depends on it now, so a state fault here is not one for this run."""
    if owned_table(directory) != name:
        with contextlib.suppress(NftfwdError):
            write_state(directory / OWNED, owned_record(name))


def _retired_table(nft: Nft, directory: Path, table: Table) -> Table | None:
    """The table nftfwd owned until now under another name, if it is still there."""
    owned = owned_table(directory)
    if owned is None or owned == table.name or not nft.has_table(table.family, owned):
        return None
    return replace(table, name=owned)


def _plan(
    nft: Nft,
    table: Table,
    live: LiveTable,
    compiled: Compiled,
    retired: Table | None,
    flows: list[Flow],
) -> Plan:
    transaction, previous = compiled.batch, restore_batch(table, live)
    if retired is not None:
        old = LiveTable(nft.list_table_json(retired.family, retired.name), "")
        ident = {"family": retired.family, "name": retired.name}
        transaction = {"nftables": [*transaction["nftables"], {"delete": {"table": ident}}]}
        restore_old = restore_batch(retired, old)["nftables"][1:]  # less its metainfo
        previous = {"nftables": [*previous["nftables"], *restore_old]}
    return Plan(table, compiled, transaction, previous, flows)


def _apply(nft: Nft, plan: Plan) -> None:
    say(f"applying table inet {plan.table.name} in one transaction...")
    with _refusal_reported(plan.table):
        nft.apply_json(plan.transaction, f"the new table inet {plan.table.name}")


def _read_back(nft: Nft, plan: Plan) -> None:
    if not holds(read_live(nft, plan.table), plan.compiled, plan.table):
        raise NftfwdError("the table read back differs from the compiled one")


def _load_now(nft: Nft, directory: Path, plan: Plan) -> int:
    """No confirmation asked: the new rules stay as soon as the kernel holds them."""
    superseded = take_over(directory, None)
    if superseded is not None:
        say("note: this load replaces the rules of an earlier load that waited for confirmation.")
    _apply(nft, plan)
    try:
        _read_back(nft, plan)
    except NftfwdError as err:
        nft.apply_json(plan.previous, "restoring the previous table")
        raise NftfwdError(f"{err}; the previous table was restored.") from None
    for note in keep_new_rules(directory, plan.flows):
        say(note)
    return APPLIED


class Interrupted(BaseException):
    """SIGINT or SIGTERM while a load waits for confirmation (not an Exception, so that
    nothing on the way swallows it)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


@contextlib.contextmanager
def _signals_roll_back() -> Iterator[Callable[[], None]]:
    """From the transaction until the load is settled, SIGINT and SIGTERM roll back; a
    lost terminal (SIGHUP) does not stop the countdown. The context gives a function
    that ignores them all from then on: nothing interrupts a rollback once it starts."""

    def interrupt(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    names = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {signum: signal.getsignal(signum) for signum in names}
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def stop() -> None:
        for signum in names:
            signal.signal(signum, signal.SIG_IGN)

    try:
        yield stop
    finally:
        stop()
        for signum, handler in old.items():
            signal.signal(signum, handler)


def _load_with_confirmation(nft: Nft, directory: Path, plan: Plan, options: LoadOptions) -> int:
    """Apply, then keep the rules only if someone confirms in time. The guard is armed
    before the transaction; from then on every way out but a confirmation rolls back."""
    assert options.confirm_seconds is not None
    seconds = options.confirm_seconds
    generation = new_generation()
    guard = start_guard(directory, generation)
    pending = Pending(
        generation,
        boot_id(),
        os.getpid(),
        time.monotonic() + seconds,
        seconds,
        options.detach,
        plan.table.name,
        tuple(plan.flows),
    )
    try:
        superseded = take_over(directory, pending)
    except BaseException:
        guard.kill()
        raise
    if superseded is not None:
        say("note: this load replaces the rules of an earlier load that waited for confirmation.")
    applied, why = False, ""
    confirmed: bool | None = False
    with _signals_roll_back() as stop:
        try:
            _apply(nft, plan)
            applied = True
            pending = counting_down(directory, pending)
            _read_back(nft, plan)
            if options.detach:
                say(
                    f"applied; confirmation pending: run `nftfwd confirm` within {seconds} s "
                    "to keep these rules, otherwise a guard process (pid "
                    f"{guard.pid}) rolls them back to the previous table."
                )
                return APPLIED
            confirmed = _confirmed(directory, pending, options)
            why = "declined" if confirmed is None else f"not confirmed within {seconds} s"
        except Interrupted as sig:
            why = f"interrupted by {sig}"
        except NftfwdError as err:
            if not applied:  # the kernel refused it: nothing changed
                stop()
                settle(directory, generation)
                raise
            why = f"error: {err}"
        except Exception as err:
            why = f"error: {type(err).__name__}: {err}"
        stop()
        outcome, _ = settle(directory, generation, confirmed_here=confirmed is True)
        if outcome is Outcome.KEPT and not why.startswith(("error", "interrupted")):
            for note in keep_new_rules(directory, plan.flows):
                say(note)
            return APPLIED
        try:
            nft.apply_json(plan.previous, "rolling back")
        except NftfwdError as err:
            raise NftfwdError(
                f"{why}; the rollback failed too ({err}): restore the previous table with "
                f"`nft -j -f {directory / PREVIOUS}`."
            ) from None
        drop_new_rules_files(directory)
        say(f"{why.rstrip('.')}: rolled back to the previous table.")
        return ROLLED_BACK


def drop_new_rules_files(directory: Path) -> None:
    """Rolled back: the files staged for the new rules go."""
    for name in (LAST_GOOD, OWNED):
        with contextlib.suppress(OSError):
            staged(directory / name).unlink()


def keep_new_rules(directory: Path, flows: list[Flow]) -> list[str]:
    """The new rules stay: keep them as the last good ones and close the connections of
    removed forwards. Only renames of files staged before the transaction are left, and
    a fault here leaves the rules in place, with a warning that names what failed."""
    problems = [p for p in (commit_staged(directory / n) for n in (LAST_GOOD, OWNED)) if p]
    notes = [f"warning: the new rules stay, but {p}" for p in problems]
    closed = forget_flows(flows)
    if closed.warning:
        notes.append(f"warning: {closed.warning}")
    elif flows:
        notes.append(
            f"closed {closed.deleted} tracked connections of removed or changed forwards "
            f"({closed.seconds:.1f} s)."
        )
    if not problems:
        notes.append(f"applied; the last good ruleset is kept in {directory / LAST_GOOD}.")
    return notes


@contextlib.contextmanager
def _refusal_reported(table: Table) -> Iterator[None]:
    """A refused batch is kept on disk and the error names the rule the kernel refused;
    the host stays as it was."""
    try:
        yield
    except KernelRefused as err:
        refused = state_dir() / "refused.json"
        try:
            write_state(refused, err.refused)
            kept = f"the refused batch is in {refused}"
        except NftfwdError as not_kept:
            kept = f"the refused batch could not be kept: {not_kept}"
        raise NftfwdError(f"{err}{_refused_rule(table)}; nothing was changed ({kept}).") from None


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


def _confirmed(directory: Path, pending: Pending, options: LoadOptions) -> bool | None:
    """Wait for a 'yes' here or `nftfwd confirm` elsewhere; survive a dropped SSH session.
    True: confirmed; False: the time ran out; None: answered no."""
    say(
        f"keep these rules? confirm within {options.confirm_seconds} s "
        + ("by answering y, or " if options.interactive else "")
        + "by running `nftfwd confirm` in another shell; otherwise they are rolled back."
    )
    interactive = options.interactive
    if interactive:
        say("Keep these rules? [y/N] ")
    while (left := pending.left()) > 0:
        if confirmed_generation(directory) == pending.generation:
            return True
        if not interactive:
            time.sleep(min(0.2, left))
            continue
        try:
            ready, _, _ = select.select([sys.stdin], [], [], min(0.2, left))
            if ready:
                answer = sys.stdin.readline()
                if answer:
                    return True if answer.strip().lower() in ("y", "yes") else None
                interactive = False  # end of input: the terminal is gone
        except (OSError, ValueError):
            interactive = False
    return confirmed_generation(directory) == pending.generation


def confirm_pending() -> str:
    """`nftfwd confirm`: keep the rules of a load that waits for confirmation. A load
    that still waits finishes the job itself; for one that detached (or died), the
    confirmation does: it keeps the files and closes the connections of removed forwards."""
    directory = state_dir()
    pending = confirm(directory)
    if load_is_running(pending):
        return "confirmed: the new rules stay."
    with exclusive_lock():
        outcome, kept = settle(directory, pending.generation)
        notes = keep_new_rules(directory, list(kept.flows)) if kept is not None else []
    for note in notes:
        say(note)
    del outcome
    return "confirmed: the new rules stay."
