"""What nftfwd keeps on disk between runs: the lock, the last good ruleset, a pending confirm.

Every fault of the state directory (full, read-only, not ours to write, a directory where
a file belongs, a file that is not what nftfwd wrote) becomes one sentence that names the
path, never a traceback. A load writes all it needs before its transaction (the new
files are staged beside their final names), so after the kernel has accepted the rules
only renames are left, and a fault there cannot undo a load that worked.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nftfwd.errors import NftfwdError
from nftfwd.files import write_atomically

DEFAULT_STATE_DIR = Path("/var/lib/nftfwd")
LOCK = "lock"
# The table the last applied load made this host's nftfwd table (for a renamed `table:`).
OWNED = "table.json"
TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")  # model.md's rule for `table`


def state_path() -> Path:
    """The state directory ($NFTFWD_STATE_DIR, else /var/lib/nftfwd), not made."""
    return Path(os.environ.get("NFTFWD_STATE_DIR", DEFAULT_STATE_DIR))


def state_dir() -> Path:
    """The state directory, made if need be."""
    path = state_path()
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as err:
        raise state_error(path, err, "use the state directory") from None
    if not path.is_dir():
        raise NftfwdError(f"the state directory {path} is not a directory; move it away.")
    return path


def state_error(path: Path, err: OSError, what: str = "write") -> NftfwdError:
    """One sentence for an OSError on a state file, with what to do about it."""
    reason = err.strerror or str(err)
    if err.errno in (errno.EACCES, errno.EPERM) and os.geteuid() != 0:
        return NftfwdError(f"cannot {what} {path} ({reason}): nftfwd needs root for this.")
    hint = {
        errno.ENOSPC: "free some space there",
        errno.EDQUOT: "free some space there",
        errno.EROFS: "the file system is read-only",
        errno.EISDIR: "a directory is where nftfwd keeps a file: move it away",
        errno.ENOTDIR: "a file is where nftfwd needs a directory: move it away",
    }.get(err.errno or 0)
    return NftfwdError(f"cannot {what} {path} ({reason})" + (f"; {hint}." if hint else "."))


class LockBusy(NftfwdError):
    """Another nftfwd run holds the lock, and the caller chose not to wait for it."""


@contextlib.contextmanager
def exclusive_lock(*, wait: bool = True) -> Iterator[None]:
    """Loads on one host run one after the other, never interleaved.

    With `wait` False a held lock raises LockBusy at once: the libvirt hook must not
    wait, since libvirt waits for its hooks and a `load --confirm` can hold the lock
    for minutes.
    """
    path = state_dir() / LOCK
    try:
        handle = open(path, "a")  # noqa: SIM115 (closed below, after the unlock)
    except OSError as err:
        raise state_error(path, err, "open the lock") from None
    with handle:
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


def write_state(path: Path, data: str) -> None:
    """Write a state file whole (atomically), or raise one clear NftfwdError."""
    try:
        write_atomically(path, data, 0o600)
    except OSError as err:
        raise state_error(path, err) from None


def staged(path: Path) -> Path:
    """Where the next content of `path` waits until the load it belongs to is kept."""
    return path.with_name(f".{path.name}.staged")


def stage(path: Path, data: str) -> None:
    """Write the next content of `path` beside it; `commit_staged` puts it in place."""
    expect_file_slot(path)
    write_state(staged(path), data)


def commit_staged(path: Path) -> str | None:
    """Put a staged file in place (a rename: no space needed). None, or what went wrong."""
    try:
        os.replace(staged(path), path)
    except OSError as err:
        return str(state_error(path, err))
    return None


def expect_file_slot(path: Path) -> None:
    """A file of nftfwd's can be written at `path`: nothing there, or a file (not a
    directory, where a rename would fail only after the transaction)."""
    if path.is_dir() and not path.is_symlink():
        raise NftfwdError(
            f"{path} is a directory, where nftfwd keeps a file; move it away and load again."
        )


def read_state_json(path: Path) -> Any | None:
    """A JSON state file, or None when it is absent. One that cannot be parsed is not
    trusted: it is set aside as `*.corrupt` and reported."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        set_aside(path, str(err))
        return None
    try:
        return json.loads(text)
    except ValueError as err:
        set_aside(path, f"not valid JSON: {err}")
        return None


def set_aside(path: Path, why: str) -> None:
    """A state file nftfwd cannot trust is renamed *.corrupt, and said so."""
    aside = path.with_name(path.name + ".corrupt")
    try:
        os.replace(path, aside)
        where = f"set aside as {aside}"
    except OSError as err:
        where = f"and it could not be set aside ({err.strerror})"
    print(f"warning: ignored {path} ({why}); {where}.", file=sys.stderr)


def owned_table(directory: Path) -> str | None:
    """The name of the inet table the last kept load made nftfwd's, if recorded."""
    record = read_state_json(directory / OWNED)
    name = record.get("table") if isinstance(record, dict) else None
    if record is not None and not (isinstance(name, str) and TABLE_NAME.fullmatch(name)):
        set_aside(directory / OWNED, "no table name in it")
        return None
    return name


def owned_record(table: str) -> str:
    return json.dumps({"family": "inet", "table": table}) + "\n"
