"""Where the libvirt hook's messages go: stderr, and the journal, else syslog, else a file.

libvirt runs the hook with no terminal and keeps its stderr only when the hook fails
(and nftfwd's never does), so every message also goes where an admin looks later:
- the journal, through its native socket: one entry per message with its priority,
  newlines kept (`journalctl -t nftfwd`; a fix of several lines stays one entry);
- else a syslog daemon on /dev/log: one entry per line, all with the tag `nftfwd` and
  facility daemon (RFC 3164 has no multi-line messages; splitting keeps each line intact);
- else, on a host with neither, the file `hook.log` in nftfwd's state directory
  (/var/lib/nftfwd/hook.log), each message whole, its later lines indented.
Nothing here waits: the sockets are datagram sockets with a short timeout, and a message
that cannot be delivered anywhere is dropped rather than block libvirt.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import sys
import time
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
SYSLOG_SOCKET = Path("/dev/log")
TAG = "nftfwd"
_DAEMON_FACILITY = 3
_SEND_TIMEOUT_S = 1.0
_KEEP_BYTES = 1 << 20  # the fallback file is rotated to hook.log.1 past 1 MiB


class Priority(IntEnum):
    """syslog priorities (journald's PRIORITY=)."""

    ERR = 3
    WARNING = 4
    NOTICE = 5
    INFO = 6


@dataclass(frozen=True)
class HookLog:
    """One destination set for the hook's messages; `fallback` is the file of last resort."""

    fallback: Path
    journal: Path = JOURNAL_SOCKET
    syslog: Path = SYSLOG_SOCKET

    def write(self, priority: Priority, message: str) -> None:
        with contextlib.suppress(OSError):
            print(f"{TAG}: {message}", file=sys.stderr, flush=True)
        if self._to_journal(priority, message) or self._to_syslog(priority, message):
            return
        self._to_file(priority, message)

    def _to_journal(self, priority: Priority, message: str) -> bool:
        fields = {
            "MESSAGE": message,
            "PRIORITY": str(int(priority)),
            "SYSLOG_IDENTIFIER": TAG,
            "SYSLOG_FACILITY": str(_DAEMON_FACILITY),
        }
        return _send(self.journal, [journal_datagram(fields)])

    def _to_syslog(self, priority: Priority, message: str) -> bool:
        head = f"<{_DAEMON_FACILITY * 8 + priority}>{TAG}[{os.getpid()}]: "
        lines = message.splitlines() or [""]
        return _send(self.syslog, [(head + line).encode("utf-8") for line in lines])

    def _to_file(self, priority: Priority, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        first, *rest = message.splitlines() or [""]
        text = f"{stamp} {TAG}[{os.getpid()}] {priority.name.lower()}: {first}\n"
        text += "".join(f"    {line}\n" for line in rest)
        with contextlib.suppress(OSError):
            self.fallback.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if self.fallback.exists() and self.fallback.stat().st_size > _KEEP_BYTES:
                os.replace(self.fallback, self.fallback.with_name(self.fallback.name + ".1"))
            # One write to an O_APPEND file: two hooks running at once never interleave.
            fd = os.open(self.fallback, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, text.encode("utf-8"))
            finally:
                os.close(fd)


def journal_datagram(fields: dict[str, str]) -> bytes:
    """journald's native protocol: KEY=value lines; a value with a newline is sent as
    KEY, a newline, its length as a 64-bit little-endian number, the bytes, a newline."""
    out = bytearray()
    for key, value in fields.items():
        data = value.encode("utf-8")
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


def _send(path: Path, datagrams: list[bytes]) -> bool:
    """Send every datagram to the unix socket at `path`; False if it is not there or
    refuses (then the caller tries the next destination)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(_SEND_TIMEOUT_S)
            sock.connect(str(path))
            for datagram in datagrams:
                sock.send(datagram)
    except OSError:
        return False
    return True
