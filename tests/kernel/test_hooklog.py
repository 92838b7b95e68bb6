"""The libvirt hook's messages: stderr always, then the journal, else syslog, else a file."""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from nftfwd.kernel.hooklog import HookLog, Priority, journal_datagram

FIX = "Fix:\n# the first line explains\niptables -I DOCKER-USER -o br0 -j ACCEPT"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a unix socket's path has at most 107 bytes."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="nffl") as name:
        yield Path(name)


def listen(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    return sock


def parse_journal(datagram: bytes) -> dict[str, str]:
    """journald's native protocol, the reader's side (systemd's journal-native.c)."""
    fields: dict[str, str] = {}
    rest = datagram
    while rest:
        line, sep, after = rest.partition(b"\n")
        assert sep, rest
        if b"=" in line:
            key, _, value = line.partition(b"=")
            rest = after
        else:
            (size,) = struct.unpack("<Q", after[:8])
            key, value = line, after[8 : 8 + size]
            assert after[8 + size : 9 + size] == b"\n"
            rest = after[9 + size :]
        fields[key.decode()] = value.decode()
    return fields


def test_journal_gets_one_entry_with_its_newlines_and_priority(
    short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = listen(short_dir / "journal")
    syslog = listen(short_dir / "syslog")
    log = HookLog(
        short_dir / "hook.log", journal=short_dir / "journal", syslog=short_dir / "syslog"
    )
    log.write(Priority.WARNING, f"doctor foreign-policy-drop: FORWARD drops it\n{FIX}")
    assert parse_journal(journal.recv(65536)) == {
        "MESSAGE": f"doctor foreign-policy-drop: FORWARD drops it\n{FIX}",
        "PRIORITY": "4",
        "SYSLOG_IDENTIFIER": "nftfwd",
        "SYSLOG_FACILITY": "3",
    }
    log.write(Priority.INFO, "one line")
    assert parse_journal(journal.recv(65536))["MESSAGE"] == "one line"
    syslog.settimeout(0.2)
    with pytest.raises(TimeoutError):
        syslog.recv(65536)  # the journal took them: syslog and the file get nothing
    assert not (short_dir / "hook.log").exists()
    err = capsys.readouterr().err
    assert err == f"nftfwd: doctor foreign-policy-drop: FORWARD drops it\n{FIX}\nnftfwd: one line\n"


def test_without_a_journal_syslog_gets_every_line_with_the_same_tag(short_dir: Path) -> None:
    (short_dir / "journal").write_text("")  # there, but not a socket: refused
    syslog = listen(short_dir / "syslog")
    log = HookLog(
        short_dir / "hook.log", journal=short_dir / "journal", syslog=short_dir / "syslog"
    )
    log.write(Priority.ERR, "reload failed: two problems\n  first\n  second")
    head = f"<27>nftfwd[{os.getpid()}]: "  # facility daemon (3) * 8 + err (3)
    assert [syslog.recv(65536).decode() for _ in range(3)] == [
        head + "reload failed: two problems",
        head + "  first",
        head + "  second",
    ]
    assert not (short_dir / "hook.log").exists()


def test_with_neither_the_message_lands_whole_in_the_file(
    short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = HookLog(short_dir / "state" / "hook.log", journal=short_dir / "j", syslog=short_dir / "s")
    log.write(Priority.WARNING, f"doctor x: y\n{FIX}")
    log.write(Priority.INFO, "reloaded")
    lines = (short_dir / "state" / "hook.log").read_text(encoding="utf-8").splitlines()
    pid = os.getpid()
    assert [line.split(" ", 1)[1] for line in lines[::4]] == [
        f"nftfwd[{pid}] warning: doctor x: y",
        f"nftfwd[{pid}] info: reloaded",
    ]
    assert lines[1:4] == [
        "    Fix:",
        "    # the first line explains",
        "    iptables -I DOCKER-USER -o br0 -j ACCEPT",
    ]
    assert (short_dir / "state").stat().st_mode & 0o777 == 0o700
    assert (short_dir / "state" / "hook.log").stat().st_mode & 0o777 == 0o600
    assert capsys.readouterr().err.count("nftfwd: ") == 2  # stderr got both as well


def test_the_file_is_rotated_not_grown_without_end(short_dir: Path) -> None:
    path = short_dir / "hook.log"
    path.write_bytes(b"x" * (1 << 20) + b"old\n")
    HookLog(path, journal=short_dir / "j", syslog=short_dir / "s").write(Priority.INFO, "new")
    assert (short_dir / "hook.log.1").read_bytes().endswith(b"old\n")
    assert path.read_text(encoding="utf-8").endswith(" info: new\n")


def test_an_unwritable_file_loses_only_the_file(
    short_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = short_dir / "not-a-dir"
    blocker.write_text("")
    HookLog(blocker / "hook.log", journal=short_dir / "j", syslog=short_dir / "s").write(
        Priority.ERR, "still on stderr"
    )
    assert capsys.readouterr().err == "nftfwd: still on stderr\n"


def test_journal_datagram_keeps_binary_safe_fields() -> None:
    data = journal_datagram({"MESSAGE": "a\nb", "PRIORITY": "6"})
    assert data == b"MESSAGE\n" + struct.pack("<Q", 3) + b"a\nb\nPRIORITY=6\n"
    assert parse_journal(data) == {"MESSAGE": "a\nb", "PRIORITY": "6"}
