"""Help that reads well (whole sentences, one placeholder style, exit codes, examples),
and the colour decision (a terminal, NO_COLOR, FORCE_COLOR)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from cli_runner import run_cli
from conftest import REPO

from nftfwd.cli import _color

HOMELAB = REPO / "examples" / "homelab.yaml"
COMMANDS = [
    ["build"], ["check"], ["diff"], ["load"], ["doctor"], ["trace"], ["confirm"],
    ["unload"], ["install"], ["uninstall"], ["schema"], ["libvirt", "import"],
]  # fmt: skip


def listed(help_text: str) -> dict[str, str]:
    """The commands section of a group's help: name -> summary."""
    section = help_text.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    return dict(re.findall(r"^  (\S+)\s+(.*)$", section, re.M))


def test_main_help_lists_whole_sentences_and_examples() -> None:
    done = run_cli("-h")
    assert done.code == 0
    commands = listed(done.stdout)
    assert set(commands) == {
        "build", "check", "diff", "load", "doctor", "trace", "confirm", "unload",
        "install", "uninstall", "schema", "libvirt",
    }  # fmt: skip
    for name, summary in commands.items():
        assert summary[0].isupper() and summary.endswith(".") and "..." not in summary, name
    assert "Examples:" in done.stdout
    assert "  nftfwd diff --from old.yaml --format markdown" in done.stdout  # kept as written
    assert "NO_COLOR wins" in done.stdout.replace("\n  ", " ")


def test_libvirt_hook_is_hidden_but_still_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    done = run_cli("libvirt", "-h")
    assert set(listed(done.stdout)) == {"import"}
    monkeypatch.setattr("sys.stdin", io.StringIO("<network/>"))  # libvirt writes its XML
    # an operation that needs no reload: nothing is loaded, and the hook says nothing
    done = run_cli("libvirt", "hook", "default", "stopped", "end", "-")
    assert (done.code, done.stdout, done.stderr) == (0, "", "")


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_states_its_exit_codes_with_one_placeholder_style(
    command: list[str],
) -> None:
    done = run_cli(*command, "-h")
    assert done.code == 0
    text = done.stdout
    assert re.search(r"^  Exit codes: 0 ", text, re.M), text
    usage = text.splitlines()[0]
    # typer below 0.17 prints an optional MODEL without brackets and XML... without braces.
    assert re.fullmatch(
        r"Usage: nftfwd [a-z ]+ \[OPTIONS\]( \[?MODEL\]?| \{?XML\.\.\.\}?| \[MODEL\] PORT)?", usage
    )
    options = text.split("Options:\n", 1)[1]
    metavars = re.findall(r"^  (?:-\w, )?--[\w-]+ (\S+)", options, re.M)
    assert all(re.fullmatch(r"[A-Z]+(\.\.\.)?", m) for m in metavars), metavars
    assert not re.search(r"<\w+>|\[model\]|\{xml\}", text), text


class Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("env", "tty", "color"),
    [
        ({}, True, True),
        ({}, False, False),
        ({"NO_COLOR": "1"}, True, False),
        ({"NO_COLOR": ""}, True, True),  # set but empty: as if unset (no-color.org)
        ({"FORCE_COLOR": "1"}, False, True),
        ({"FORCE_COLOR": "0"}, False, True),  # any value but empty (force-color.org)
        ({"FORCE_COLOR": ""}, False, False),
        ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, False, False),  # NO_COLOR wins
        ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, True, False),
        ({"FORCE_COLOR": "1", "NO_COLOR": ""}, False, True),
    ],
)
def test_color_on_a_terminal_no_color_and_force_color(
    env: dict[str, str], tty: bool, color: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert _color(Stream(tty)) is color


def test_force_color_paints_a_diff_into_a_pipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    new = tmp_path / "new.yaml"
    new.write_text(HOMELAB.read_text().replace("{port: 8080, to: 80}", "{port: 8081, to: 80}"))
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    plain = run_cli("diff", "--from", str(HOMELAB), str(new))
    assert plain.code == 1 and "\033[" not in plain.stdout
    monkeypatch.setenv("FORCE_COLOR", "1")
    forced = run_cli("diff", "--from", str(HOMELAB), str(new))
    assert "\033[31m  - tcp 8080" in forced.stdout and "\033[32m  + tcp 8081" in forced.stdout
    monkeypatch.setenv("NO_COLOR", "1")
    assert run_cli("diff", "--from", str(HOMELAB), str(new)).stdout == plain.stdout
