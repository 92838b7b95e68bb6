"""The guard of a `load --confirm`: `python -m nftfwd.kernel.guard STATE_DIR GENERATION`.

Started by the load before its transaction, in a session of its own, it outlives the
load (SIGKILL, a lost SSH session, `--detach`). It reads the previous table into memory
at once (a newer load may overwrite previous.json), says `armed`, then sleeps until the
load's deadline and rolls the rules back unless they were confirmed. While a load that
did not detach is alive, that load settles its own fate and the guard only watches. A
newer load supersedes the guard (it replaces the pending record), and so does the
confirmation. The rollback happens under the main lock, so it never interleaves with a
load.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

POLL_S = 0.2


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    directory, generation = Path(argv[0]), argv[1]
    parent = os.getppid()
    try:
        from nftfwd.kernel.libnft import Nft
        from nftfwd.kernel.load import PREVIOUS

        previous = json.loads((directory / PREVIOUS).read_text(encoding="utf-8"))
        nft = Nft()
    except Exception as err:  # told to the load, which then changes nothing
        _tell(f"{type(err).__name__}: {err}")
        return 1
    _tell("armed")
    if not _wait_for_deadline(directory, generation, parent):
        return 0
    return _settle(directory, generation, nft, previous)


def _tell(line: str) -> None:
    """One line to the load on stdout, then stdout goes: nothing else is ever written."""
    with contextlib.suppress(OSError):
        print(line, flush=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def _wait_for_deadline(directory: Path, generation: str, parent: int) -> bool:
    """True at the deadline of an unconfirmed load that nobody else settles."""
    from nftfwd.kernel.pending import confirmed_generation, read_pending

    seen = False
    while True:
        pending = read_pending(directory)
        mine = pending is not None and pending.generation == generation
        if not seen:
            if mine:
                seen = True
            elif os.getppid() != parent:
                return False  # the load ended before its transaction: nothing to undo
            else:
                time.sleep(POLL_S)
                continue
        if pending is None or not mine:
            return False  # settled, or superseded by a newer load
        if confirmed_generation(directory) == generation:
            return False  # whoever confirmed finishes the load
        load_waits = not pending.detached and os.getppid() == pending.load_pid
        if not load_waits and pending.left() <= 0:
            return True
        time.sleep(POLL_S)


def _settle(directory: Path, generation: str, nft: Any, previous: dict[str, Any]) -> int:
    from nftfwd.errors import NftfwdError
    from nftfwd.kernel.load import drop_new_rules_files, keep_new_rules
    from nftfwd.kernel.pending import Outcome, log, settle
    from nftfwd.kernel.state import exclusive_lock

    try:
        with exclusive_lock():
            outcome, pending = settle(directory, generation)
            if outcome is Outcome.EXPIRED:
                nft.apply_json(previous, "rolling back")
                drop_new_rules_files(directory)
                log(directory, f"load {generation} not confirmed in time: rolled back.")
            elif outcome is Outcome.KEPT and pending is not None:
                notes = keep_new_rules(directory, list(pending.flows))
                log(directory, f"load {generation} confirmed. " + " ".join(notes))
    except NftfwdError as err:
        log(directory, f"load {generation}: the guard failed: {err}")
        return 1
    return 0


if __name__ == "__main__":
    # NFTFWD_STATE_DIR is the directory given, for the lock the guard takes.
    os.environ["NFTFWD_STATE_DIR"] = sys.argv[1]
    sys.exit(main(sys.argv[1:]))
