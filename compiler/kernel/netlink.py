"""The few netlink messages nftfwd sends itself: fixed headers and flat attributes.

`conntrack -D` cannot delete one known connection cheaply: whatever its filters, it dumps
the whole table and deletes what matches, about 90 ms per call with a few thousand
entries tracked. ctnetlink deletes by the original tuple in O(1), and a dump lists the
table once; both are a few structs, so nftfwd speaks it directly, in the network
namespace it runs in, with no tool or library to install.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator
from typing import NamedTuple

NETLINK_NETFILTER = 12
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLA_F_NESTED = 0x8000
HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
NFGEN = struct.Struct("=BBH")  # nfgenmsg: family, version, resource id (big-endian)

# ctnetlink (linux/netfilter/nfnetlink_conntrack.h)
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE = 1, 2
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_ZONE = 1, 2, 18
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
FAMILY_NUMBER = {"ip": socket.AF_INET, "ip6": socket.AF_INET6}
PROTO_NUMBER = {"tcp": 6, "udp": 17}
# Deletes sent at once: their acknowledgements must fit the socket's receive buffer.
BATCH = 256


class Tracked(NamedTuple):
    """One tracked connection: its original direction, where its reply comes from."""

    family: str  # ip, ip6
    proto: int
    src: bytes  # original direction, addresses in network order
    dst: bytes
    sport: int
    dport: int
    reply_src: bytes
    reply_sport: int
    zone: int


def attributes(data: bytes) -> dict[int, bytes]:
    """Flat netlink attributes by type (flags masked off); nested ones stay bytes."""
    found: dict[int, bytes] = {}
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        found[kind & 0x3FFF] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return found


def attribute(kind: int, payload: bytes) -> bytes:
    padding = b"\0" * (-len(payload) % 4)
    return struct.pack("=HH", 4 + len(payload), kind) + payload + padding


def message(kind: int, flags: int, sequence: int, body: bytes) -> bytes:
    return HEADER.pack(HEADER.size + len(body), kind, flags, sequence, 0) + body


def messages(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(type, sequence, payload) of each netlink message in one datagram."""
    offset = 0
    while offset + HEADER.size <= len(data):
        length, kind, _, sequence, _ = HEADER.unpack_from(data, offset)
        if length < HEADER.size:
            return
        yield kind, sequence, data[offset + HEADER.size : offset + length]
        offset += (length + 3) & ~3


def netfilter_socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.settimeout(10)
    return sock


def tracked(family: str) -> list[Tracked]:
    """Every connection conntrack tracks in `family` in this network namespace."""
    kind = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET
    request = NFGEN.pack(FAMILY_NUMBER[family], 0, 0)
    found: list[Tracked] = []
    with netfilter_socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.send(
            HEADER.pack(HEADER.size + len(request), kind, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
            + request
        )
        while True:
            for msg_type, _, payload in messages(sock.recv(1 << 20)):
                if msg_type == NLMSG_DONE:
                    return found
                if msg_type == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise OSError(
                            code, f"listing tracked connections: {errno.errorcode.get(code, code)}"
                        )
                    continue
                entry = _entry(family, attributes(payload[NFGEN.size :]))
                if entry is not None:
                    found.append(entry)


def _entry(family: str, attrs: dict[int, bytes]) -> Tracked | None:
    try:
        orig, reply = attributes(attrs[CTA_TUPLE_ORIG]), attributes(attrs[CTA_TUPLE_REPLY])
        orig_ip, orig_proto = attributes(orig[CTA_TUPLE_IP]), attributes(orig[CTA_TUPLE_PROTO])
        reply_ip, reply_proto = attributes(reply[CTA_TUPLE_IP]), attributes(reply[CTA_TUPLE_PROTO])
        src_key, dst_key = (
            (CTA_IP_V4_SRC, CTA_IP_V4_DST) if family == "ip" else (CTA_IP_V6_SRC, CTA_IP_V6_DST)
        )
        zone = struct.unpack(">H", attrs[CTA_ZONE])[0] if CTA_ZONE in attrs else 0
        return Tracked(
            family,
            orig_proto[CTA_PROTO_NUM][0],
            orig_ip[src_key],
            orig_ip[dst_key],
            struct.unpack(">H", orig_proto[CTA_PROTO_SRC_PORT])[0],
            struct.unpack(">H", orig_proto[CTA_PROTO_DST_PORT])[0],
            reply_ip[src_key],
            struct.unpack(">H", reply_proto[CTA_PROTO_SRC_PORT])[0],
            zone,
        )
    except (KeyError, IndexError, struct.error):
        return None  # no ports (icmp, say), or a tuple this parser does not know


def _delete_request(entry: Tracked, sequence: int) -> bytes:
    src_key, dst_key = (
        (CTA_IP_V4_SRC, CTA_IP_V4_DST) if entry.family == "ip" else (CTA_IP_V6_SRC, CTA_IP_V6_DST)
    )
    ip = attribute(src_key, entry.src) + attribute(dst_key, entry.dst)
    proto = (
        attribute(CTA_PROTO_NUM, bytes([entry.proto]))
        + attribute(CTA_PROTO_SRC_PORT, struct.pack(">H", entry.sport))
        + attribute(CTA_PROTO_DST_PORT, struct.pack(">H", entry.dport))
    )
    body = NFGEN.pack(FAMILY_NUMBER[entry.family], 0, 0) + attribute(
        CTA_TUPLE_ORIG | NLA_F_NESTED,
        attribute(CTA_TUPLE_IP | NLA_F_NESTED, ip)
        + attribute(CTA_TUPLE_PROTO | NLA_F_NESTED, proto),
    )
    if entry.zone:
        body += attribute(CTA_ZONE, struct.pack(">H", entry.zone))
    kind = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE
    return message(kind, NLM_F_REQUEST | NLM_F_ACK, sequence, body)


def delete(entries: list[Tracked]) -> int:
    """Delete tracked connections by their original tuple; returns how many went (one
    that ended meanwhile is not an error)."""
    deleted = 0
    with netfilter_socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        for start in range(0, len(entries), BATCH):
            chunk = entries[start : start + BATCH]
            sock.send(b"".join(_delete_request(e, start + i + 1) for i, e in enumerate(chunk)))
            answered = 0
            while answered < len(chunk):
                for msg_type, _, payload in messages(sock.recv(1 << 20)):
                    if msg_type != NLMSG_ERROR:
                        continue
                    answered += 1
                    code = -struct.unpack_from("=i", payload)[0]
                    if code == 0:
                        deleted += 1
                    elif code != errno.ENOENT:
                        raise OSError(
                            code,
                            f"deleting a tracked connection: {errno.errorcode.get(code, code)}",
                        )
    return deleted
