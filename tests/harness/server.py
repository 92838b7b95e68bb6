#!/usr/bin/env python3
"""A small echo server run inside a test namespace (stand-alone, stdlib only).

    server.py --name NAME --ports 80,8000-8010 [--protos tcp,udp]

Listens on every given port, TCP and/or UDP, IPv4 and IPv6 (one dual-stack socket
bound to ``::`` per port and protocol). Each TCP line and each UDP datagram is
answered with one line::

    <NAME> <peer ip> <local port> <received text>

so a test knows which namespace answered, from which source address the connection
arrived (masquerade/snat) and on which local port (port mapping). IPv4 peers are
reported as plain IPv4 (``1.2.3.4``, not ``::ffff:1.2.3.4``). A UDP reply leaves from
the address the datagram was sent to (IPV6_PKTINFO), so a connected client accepts it.

Prints ``READY`` on stdout once every socket listens, or ``ERROR <reason>`` and
exits 1. Runs until killed.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import selectors
import socket
import sys

_PKTINFO_SPACE = socket.CMSG_SPACE(20)  # struct in6_pktinfo: 16-byte address + ifindex


def parse_ports(spec: str) -> list[int]:
    ports: list[int] = []
    for part in spec.split(","):
        first, _, last = part.partition("-")
        ports.extend(range(int(first), int(last or first) + 1))
    return ports


def plain_ip(address: str) -> str:
    """``::ffff:1.2.3.4`` -> ``1.2.3.4``; drops a ``%scope`` suffix."""
    address = address.split("%", 1)[0]
    return address.removeprefix("::ffff:") if "." in address else address


def dual_stack_socket(kind: int, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", port))
    sock.setblocking(False)
    if kind == socket.SOCK_STREAM:
        sock.listen(64)
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    return sock


class Server:
    def __init__(self, name: str) -> None:
        self.name = name
        self.selector = selectors.DefaultSelector()
        self.buffers: dict[socket.socket, bytes] = {}

    def answer(self, peer: str, port: int, text: bytes) -> bytes:
        line = text.decode("utf-8", "replace").rstrip("\r\n")
        return f"{self.name} {plain_ip(peer)} {port} {line}\n".encode()

    def listen(self, ports: list[int], protos: list[str]) -> None:
        for port in ports:
            if "tcp" in protos:
                self.selector.register(
                    dual_stack_socket(socket.SOCK_STREAM, port), selectors.EVENT_READ, self.accept
                )
            if "udp" in protos:
                self.selector.register(
                    dual_stack_socket(socket.SOCK_DGRAM, port), selectors.EVENT_READ, self.datagram
                )

    def accept(self, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        conn.setblocking(False)
        self.buffers[conn] = b""
        self.selector.register(conn, selectors.EVENT_READ, self.receive)

    def receive(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.selector.unregister(conn)
            del self.buffers[conn]
            conn.close()
            return
        pending = self.buffers[conn] + data
        *lines, pending = pending.split(b"\n")
        self.buffers[conn] = pending
        peer = conn.getpeername()[0]
        port = conn.getsockname()[1]
        for line in lines:
            try:
                conn.sendall(self.answer(peer, port, line))
            except OSError:
                break

    def datagram(self, sock: socket.socket) -> None:
        try:
            data, ancillary, _, peer = sock.recvmsg(65536, _PKTINFO_SPACE)
        except OSError:
            return
        reply = self.answer(peer[0], sock.getsockname()[1], data)
        # Reply from the address the datagram was sent to; ifindex 0 lets routing choose.
        cmsgs = [
            (level, kind, payload[:16] + bytes(4))
            for level, kind, payload in ancillary
            if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO
        ]
        with contextlib.suppress(OSError):
            sock.sendmsg([reply], cmsgs, 0, peer)

    def run(self) -> None:
        while True:
            for key, _ in self.selector.select():
                key.data(key.fileobj)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--ports", required=True, help="comma list of ports and ranges A-B")
    parser.add_argument("--protos", default="tcp,udp")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = Server(args.name)
    try:
        server.listen(parse_ports(args.ports), args.protos.split(","))
    except OSError as exc:
        print(f"ERROR {exc}", flush=True)
        return 1
    print("READY", flush=True)
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
