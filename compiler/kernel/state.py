"""What nftfwd keeps on disk between runs: the lock, the last good ruleset, a pending confirm."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from nftfwd.errors import NftfwdError

DEFAULT_STATE_DIR = Path("/var/lib/nftfwd")


def state_dir() -> Path:
    path = Path(os.environ.get("NFTFWD_STATE_DIR", DEFAULT_STATE_DIR))
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as err:
        raise NftfwdError(f"cannot use the state directory {path}: {err.strerror}.") from None
    return path


class LockBusy(NftfwdError):
    """Another nftfwd run holds the lock, and the caller chose not to wait for it."""


@contextlib.contextmanager
def exclusive_lock(*, wait: bool = True) -> Iterator[None]:
    """Loads on one host run one after the other, never interleaved.

    With `wait` False a held lock raises LockBusy at once: the libvirt hook must not
    wait, since libvirt waits for its hooks and a `load --confirm` can hold the lock
    for minutes.
    """
    path = state_dir() / "lock"
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise LockBusy(f"another nftfwd run holds the lock {path}.") from None
            print("waiting for another nftfwd run to finish...", file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
