"""A pending `load --confirm`: who waits, until when, and who decides its fate.

The files, in the state directory:
- `pending-confirm.json`: the load waiting for a confirmation: its generation (a fresh
  id per load), the boot it belongs to, the load's pid, its deadline (CLOCK_MONOTONIC,
  which every process of one boot shares), whether the load detached, and the flows a
  confirmation closes. It is written under the main lock before the transaction; a
  newer load replaces or removes it, and so supersedes the older load's guard.
- `confirmed`: the generation that `nftfwd confirm` kept.
- `confirm.lock`: taken for a moment by whoever settles a pending load (the load itself,
  its guard, `nftfwd confirm`), so that a confirmation and a rollback never both win.

Settling a pending load removes its record and says what became of it: kept (it was
confirmed), expired (roll it back) or gone (settled already, or superseded).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

from nftfwd.errors import NftfwdError
from nftfwd.kernel.conntrack import Flow
from nftfwd.kernel.state import read_state_json, set_aside, state_dir, state_error, write_state

PENDING = "pending-confirm.json"
CONFIRMED = "confirmed"
CONFIRM_LOCK = "confirm.lock"
GUARD_LOG = "guard.log"
# The guard reads the previous table and opens libnftables before the load goes on.
GUARD_START_TIMEOUT_S = 30


class Outcome(Enum):
    KEPT = "kept"
    EXPIRED = "expired"
    GONE = "gone"


@dataclass(frozen=True)
class Pending:
    generation: str
    boot: str
    load_pid: int
    deadline: float  # time.monotonic()
    seconds: int
    detached: bool
    table: str
    flows: tuple[Flow, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "boot": self.boot,
            "load_pid": self.load_pid,
            "deadline": self.deadline,
            "seconds": self.seconds,
            "detached": self.detached,
            "table": self.table,
            "flows": [f.as_json() for f in self.flows],
        }

    @staticmethod
    def from_json(data: Any) -> Pending:
        """Raises KeyError, TypeError or ValueError for anything but a record nftfwd wrote."""
        return Pending(
            str(data["generation"]),
            str(data["boot"]),
            int(data["load_pid"]),
            float(data["deadline"]),
            int(data["seconds"]),
            bool(data["detached"]),
            str(data["table"]),
            tuple(Flow.from_json(f) for f in data["flows"]),
        )

    def left(self) -> float:
        return self.deadline - time.monotonic()


def boot_id() -> str:
    """Deadlines are monotonic times: a record from before a reboot means nothing."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def new_generation() -> str:
    return os.urandom(8).hex()


def read_pending(directory: Path) -> Pending | None:
    """The pending load, if any. A record that is not nftfwd's is set aside, not trusted."""
    path = directory / PENDING
    data = read_state_json(path)
    if data is None:
        return None
    try:
        pending = Pending.from_json(data)
    except (KeyError, TypeError, ValueError):
        set_aside(path, "not a pending confirmation nftfwd wrote")
        return None
    return pending if pending.boot == boot_id() else None


def write_pending(directory: Path, pending: Pending) -> None:
    write_state(directory / PENDING, json.dumps(pending.to_json()) + "\n")


def confirmed_generation(directory: Path) -> str | None:
    try:
        return (directory / CONFIRMED).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


@contextlib.contextmanager
def confirm_lock(directory: Path, *, strict: bool) -> Iterator[None]:
    """Held for a moment. Not strict (a rollback on its way): go on without it if the
    lock cannot be opened, rather than leave unconfirmed rules in place."""
    path = directory / CONFIRM_LOCK
    try:
        handle = open(path, "a")  # noqa: SIM115 (closed below)
    except OSError as err:
        if strict:
            raise state_error(path, err, "open the lock") from None
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def take_over(directory: Path, pending: Pending | None) -> Pending | None:
    """A new load's turn: its record replaces the pending one (None: just remove it).
    Returns the record superseded, if there was one. Raises NftfwdError when the record
    cannot be written; the older one is then still in place."""
    with confirm_lock(directory, strict=True):
        older = read_pending(directory)
        if pending is not None:
            write_pending(directory, pending)
        else:
            with contextlib.suppress(FileNotFoundError):
                (directory / PENDING).unlink()
        with contextlib.suppress(OSError):
            (directory / CONFIRMED).unlink()
    return older


def settle(
    directory: Path, generation: str, *, confirmed_here: bool = False
) -> tuple[Outcome, Pending | None]:
    """Decide the fate of the pending load `generation`, once: kept when a confirmation
    arrived (or `confirmed_here`), else expired."""
    with confirm_lock(directory, strict=False):
        pending = read_pending(directory)
        if pending is None or pending.generation != generation:
            return Outcome.GONE, None
        kept = confirmed_here or confirmed_generation(directory) == generation
        for name in (PENDING, CONFIRMED):
            with contextlib.suppress(OSError):
                (directory / name).unlink()
    return (Outcome.KEPT if kept else Outcome.EXPIRED), pending


def confirm(directory: Path | None = None) -> Pending:
    """`nftfwd confirm`: mark the pending load as kept; returns its record."""
    directory = directory or state_dir()
    with confirm_lock(directory, strict=True):
        pending = read_pending(directory)
        if pending is None:
            raise NftfwdError("no `nftfwd load --confirm` is waiting for confirmation.")
        if pending.left() <= 0:
            raise NftfwdError(
                "too late: the time to confirm the pending load is over; its rules are "
                "being rolled back to the previous table."
            )
        write_state(directory / CONFIRMED, pending.generation + "\n")
    return pending


def load_is_running(pending: Pending) -> bool:
    """Whether the load process still waits (it finishes a confirmation itself)."""
    if pending.detached:
        return False
    try:
        os.kill(pending.load_pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_guard(directory: Path, generation: str) -> subprocess.Popen[bytes]:
    """Start the guard of load `generation`: a process in its own session that outlives
    the load, a lost terminal and SIGKILL, and rolls the load back at its deadline unless
    it was confirmed. Returns once the guard holds the previous table in memory and can
    reach the kernel; raises NftfwdError (nothing changed yet) when it cannot."""
    argv = [sys.executable, "-P", "-m", "nftfwd.kernel.guard", str(directory), generation]
    try:
        guard = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # no terminal's SIGHUP or SIGINT reaches it
            close_fds=True,  # nor does it hold the load's lock
        )
    except OSError as err:
        raise NftfwdError(
            f"cannot start the rollback guard ({err.strerror}); nothing was changed."
        ) from None
    assert guard.stdout is not None
    ready, _, _ = select.select([guard.stdout], [], [], GUARD_START_TIMEOUT_S)
    line = guard.stdout.readline().decode("utf-8", "replace").strip() if ready else ""
    guard.stdout.close()
    if line != "armed":
        with contextlib.suppress(OSError):
            guard.kill()
        guard.wait()
        why = line or f"it did not start within {GUARD_START_TIMEOUT_S} s"
        raise NftfwdError(f"cannot start the rollback guard ({why}); nothing was changed.")
    return guard


def counting_down(directory: Path, pending: Pending) -> Pending:
    """The kernel accepted the rules: the countdown starts now."""
    started = replace(pending, deadline=time.monotonic() + pending.seconds)
    write_pending(directory, started)
    return started


def log(directory: Path, message: str) -> None:
    """The guard has no terminal: its outcome goes to guard.log and to the journal."""
    from nftfwd.kernel.system import log as to_journal

    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with contextlib.suppress(OSError), open(directory / GUARD_LOG, "a") as file:
        file.write(f"{stamp} {message}\n")
    with contextlib.suppress(Exception):
        to_journal(message)
