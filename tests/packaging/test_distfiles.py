"""The files the Debian package ships beside the code: man page, completion, unit, hook."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from nftfwd.cli import app
from nftfwd.distfiles import COMPLETIONS, completion_script, distfiles, main
from nftfwd.install import DEFAULT_TABLE, PACKAGED_BIN, hook_text, unit_text
from nftfwd.manpage import _text, render_manpage

COMMANDS = [
    *("build", "check", "diff", "load", "doctor", "trace", "confirm", "unload", "install"),
    *("uninstall", "schema", "libvirt", "libvirt import"),
]  # not `libvirt hook`: libvirt runs it, people do not, so it is hidden everywhere


def test_manpage_has_every_command_with_its_options() -> None:
    page = render_manpage(app, day=date(2026, 12, 7))
    assert page.startswith('.TH NFTFWD 1 "2026-12-07" "nftfwd ')
    for command in COMMANDS:
        assert f'\n.SS "nftfwd {command} ' in page, command
    sections = page.split("\n.SS ")
    load = next(s for s in sections if s.startswith('"nftfwd load '))
    assert "\\fB\\-\\-enable\\-forwarding\\fR" in load and "\\-\\-confirm" in load
    # The app's -h reaches every command, as on the command line.
    assert page.count("\\fB\\-h, \\-\\-help\\fR") == len(COMMANDS) + 1
    for section in (".SH NAME", ".SH SYNOPSIS", ".SH FILES", ".SH EXIT STATUS"):
        assert f"\n{section}\n" in page


@pytest.mark.skipif(shutil.which("groff") is None, reason="needs groff")
def test_manpage_renders_without_warnings() -> None:
    page = render_manpage(app, day=date(2026, 12, 7))
    result = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z"], input=page, capture_output=True, text=True
    )
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize(
    ("text", "roff"),
    [("--host", "\\-\\-host"), (".starts", "\\&.starts"), ("a\\b", "a\\eb"), ("'q", "\\&'q")],
)
def test_roff_escapes(text: str, roff: str) -> None:
    assert _text(text) == roff


def test_unit_and_hook_are_installs_own_text() -> None:
    files = distfiles(day=datetime(2026, 12, 7, tzinfo=UTC))
    unit = unit_text(nftfwd_bin=PACKAGED_BIN, table=DEFAULT_TABLE, packaged=True)
    assert files[Path("nftfwd.service")] == unit
    assert files[Path("libvirt-hook")] == hook_text(PACKAGED_BIN)


def test_completion_scripts_call_nftfwd_back() -> None:
    bash = completion_script("bash")
    assert "_NFTFWD_COMPLETE=complete_bash" in bash
    assert bash.rstrip().endswith("complete -o default -F _nftfwd_completion nftfwd")
    assert completion_script("zsh").startswith("#compdef nftfwd\n")  # zsh's first line
    assert "complete --command nftfwd" in completion_script("fish")
    assert "_NFTFWD_COMPLETE" not in os.environ


def test_bash_completion_offers_commands_and_options(tmp_path: Path) -> None:
    script = tmp_path / "nftfwd.bash"
    script.write_text(completion_script("bash"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    def offers(*words: str) -> list[str]:
        result = subprocess.run(
            [
                "bash",
                "-c",
                'source "$0"; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); '
                '_nftfwd_completion nftfwd; printf "%s\\n" "${COMPREPLY[@]}"',
                str(script),
                *words,
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        return result.stdout.split()

    assert offers("nftfwd", "b") == ["build"]
    assert "--enable-forwarding" in offers("nftfwd", "load", "--en")
    assert offers("nftfwd", "libvirt", "i") == ["import"]
    assert offers("nftfwd", "libvirt", "h") == []  # hidden, as in -h


def test_main_writes_every_file_dated_by_source_date_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1796601600")  # 2026-12-07
    assert main([str(tmp_path)]) == 0
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(
        ["nftfwd.1", "nftfwd.service", "libvirt-hook", *map(str, COMPLETIONS.values())]
    )
    assert '"2026-12-07"' in (tmp_path / "nftfwd.1").read_text().splitlines()[0]
    assert capsys.readouterr().out.count("wrote ") == len(written)
    assert main([]) == 2
