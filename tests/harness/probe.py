#!/usr/bin/env python3
"""A test client run inside a namespace (stand-alone, stdlib only).

One request (TCP: connect, send one line, read one line; UDP: one datagram, one reply)::

    probe.py request --proto tcp --dst 203.0.113.1 --port 8080 [--source S]
             [--timeout 2] [--text TEXT]

prints one JSON object ``{"ok": bool, "text": str, "error": str | null}`` and exits 0.

A held TCP connection::

    probe.py session --dst 203.0.113.1 --port 8080 [--source S] [--timeout 2]

prints one JSON object for the connect, then reads JSON commands
``{"text": str, "timeout": float}`` from stdin, one a line, and answers each with one
JSON object; a reply line is accepted only when it ends with the text sent, so a late
reply to an earlier exchange is never taken for the current one. Ends at end of input.

``error`` is ``"timeout"``, ``"refused"``, ``"reset"``, ``"unreachable"``, ``"closed"``
(the peer closed without answering), or ``"<errno name>: <message>"``.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import socket
import sys
import time
from typing import Any

_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH}


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "reset"
    if isinstance(exc, OSError) and exc.errno in _UNREACHABLE:
        return "unreachable"
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{errno.errorcode.get(exc.errno, 'E?').lower()}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"


def result(ok: bool, text: str = "", error: str | None = None) -> dict[str, Any]:
    return {"ok": ok, "text": text, "error": error}


def emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def open_socket(
    kind: int, dst: str, port: int, source: str | None, timeout: float
) -> socket.socket:
    family = socket.AF_INET6 if ipaddress.ip_address(dst).version == 6 else socket.AF_INET
    sock = socket.socket(family, kind)
    sock.settimeout(timeout)
    try:
        if source:
            sock.bind((source, 0))
        sock.connect((dst, port))
    except BaseException:
        sock.close()
        raise
    return sock


class LineReader:
    """Reads reply lines from a TCP socket, each within a deadline."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = b""

    def reply_to(self, text: str, deadline: float) -> str:
        """The next line that answers ``text``; raises TimeoutError or OSError."""
        while True:
            while b"\n" in self.pending:
                raw, self.pending = self.pending.split(b"\n", 1)
                line = raw.decode("utf-8", "replace")
                if line.endswith(f" {text}"):
                    return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.pending += data


def exchange_line(reader: LineReader, text: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    try:
        reader.sock.settimeout(timeout)
        reader.sock.sendall(f"{text}\n".encode())
        return result(True, reader.reply_to(text, deadline))
    except EOFError:
        return result(False, error="closed")
    except OSError as exc:
        return result(False, error=describe(exc))


def request(args: argparse.Namespace) -> dict[str, Any]:
    deadline = time.monotonic() + args.timeout
    kind = socket.SOCK_STREAM if args.proto == "tcp" else socket.SOCK_DGRAM
    try:
        sock = open_socket(kind, args.dst, args.port, args.source, args.timeout)
    except OSError as exc:
        return result(False, error=describe(exc))
    with sock:
        remaining = max(deadline - time.monotonic(), 0.01)
        if kind == socket.SOCK_STREAM:
            return exchange_line(LineReader(sock), args.text, remaining)
        return udp_exchange(sock, args.text, deadline)


def udp_exchange(sock: socket.socket, text: str, deadline: float) -> dict[str, Any]:
    try:
        sock.send(text.encode())
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            line = sock.recv(65536).decode("utf-8", "replace").rstrip("\n")
            if line.endswith(f" {text}"):
                return result(True, line)
    except OSError as exc:
        return result(False, error=describe(exc))


def session(args: argparse.Namespace) -> None:
    try:
        sock = open_socket(socket.SOCK_STREAM, args.dst, args.port, args.source, args.timeout)
    except OSError as exc:
        emit(result(False, error=describe(exc)))
        return
    emit(result(True, "connected"))
    reader = LineReader(sock)
    with sock:
        for line in sys.stdin:
            command = json.loads(line)
            emit(exchange_line(reader, command["text"], float(command["timeout"])))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["request", "session"])
    parser.add_argument("--proto", choices=["tcp", "udp"], default="tcp")
    parser.add_argument("--dst", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--source")
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--text", default="ping")
    args = parser.parse_args()
    if args.mode == "session":
        session(args)
    else:
        emit(request(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
