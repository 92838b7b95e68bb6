"""Writing files so that a reader sees the old content or the new, never a torn one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path


def write_atomically(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` at `mode` in one rename, creating its directories."""
    write_all_atomically([(path, data, mode)])


def write_all_atomically(files: Sequence[tuple[Path, str | bytes, int]]) -> None:
    """Write several files all or none: each is first written in full beside its target
    (same directory, so the rename cannot cross file systems), then all are renamed into
    place. If writing any of them fails, the staged copies and the directories made for
    them are removed and every target is left as it was; the OSError is raised."""
    staged: list[tuple[str, Path]] = []
    made: list[Path] = []
    try:
        for path, data, mode in files:
            payload = data.encode("utf-8") if isinstance(data, str) else data
            made += _make_dirs(path.parent)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            staged.append((tmp, path))
            with os.fdopen(fd, "wb") as file:
                file.write(payload)
                os.fchmod(file.fileno(), mode)
                file.flush()
                os.fsync(file.fileno())
    except BaseException:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        for directory in reversed(made):
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise
    for tmp, path in staged:
        os.replace(tmp, path)


def _make_dirs(directory: Path) -> list[Path]:
    """mkdir -p; return the directories it made, outermost first."""
    missing = []
    while not directory.is_dir():
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    missing.reverse()
    for path in missing:
        path.mkdir(exist_ok=True)
    return missing
