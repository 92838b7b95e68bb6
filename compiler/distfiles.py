"""The files a distribution package ships beside the Python code, made from that code.

`python3 -m nftfwd.distfiles OUTDIR` (debian/rules runs it at build time) writes:

    nftfwd.1                       the man page (manpage.py, from the commands' help)
    nftfwd.service                 the systemd unit `nftfwd install` would write, for
                                   /usr/bin/nftfwd (install.py's text)
    libvirt-hook                   the hook `nftfwd install` writes for /usr/bin/nftfwd, for
                                   the package's prerm to know it (and remove only that)
    completions/bash/nftfwd        shell completion, exactly as `nftfwd --show-completion
    completions/zsh/_nftfwd        SHELL` prints it (typer's scripts, which call nftfwd back
    completions/fish/nftfwd.fish   with _NFTFWD_COMPLETE set)

Nothing here is copied text: a change of the CLI, the unit or the hook changes the package.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import typer

from nftfwd.cli import app
from nftfwd.install import DEFAULT_TABLE, PACKAGED_BIN, hook_text, unit_text
from nftfwd.manpage import render_manpage

COMPLETE_VAR = "_NFTFWD_COMPLETE"
COMPLETIONS = {
    "bash": Path("completions/bash/nftfwd"),
    "zsh": Path("completions/zsh/_nftfwd"),
    "fish": Path("completions/fish/nftfwd.fish"),
}


def completion_script(shell: str) -> str:
    """What `_NFTFWD_COMPLETE=source_SHELL nftfwd` prints (also `nftfwd --show-completion`
    in that shell): the script that has the shell call nftfwd back for candidates."""
    out = io.StringIO()
    command = typer.main.get_command(app)
    old = os.environ.get(COMPLETE_VAR)
    os.environ[COMPLETE_VAR] = f"source_{shell}"
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            command.main([], prog_name="nftfwd", complete_var=COMPLETE_VAR)
    finally:
        if old is None:
            del os.environ[COMPLETE_VAR]
        else:
            os.environ[COMPLETE_VAR] = old
    script = out.getvalue().lstrip("\n")  # zsh reads `#compdef` only on the first line
    if COMPLETE_VAR not in script:
        raise RuntimeError(f"typer gave no {shell} completion script")
    return script


def distfiles(*, day: datetime) -> dict[Path, str]:
    """Each file to ship (relative path) and its content."""
    files = {
        Path("nftfwd.1"): render_manpage(app, day=day.date()),
        Path("nftfwd.service"): unit_text(
            nftfwd_bin=PACKAGED_BIN, table=DEFAULT_TABLE, packaged=True
        ),
        Path("libvirt-hook"): hook_text(PACKAGED_BIN),
    }
    files.update({path: completion_script(shell) for shell, path in COMPLETIONS.items()})
    return files


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 -m nftfwd.distfiles OUTDIR", file=sys.stderr)
        return 2
    # Reproducible builds: dpkg-buildpackage dates the man page by the changelog's entry.
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))
    outdir = Path(argv[0])
    for path, content in distfiles(day=datetime.fromtimestamp(epoch, UTC)).items():
        (outdir / path).parent.mkdir(parents=True, exist_ok=True)
        (outdir / path).write_text(content, encoding="utf-8")
        print(f"wrote {outdir / path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
