"""Which process owns a table with `flags owner` (firewalld 2.x sets it, for one).

Only that process may change such a table, and nft 1.0.6 lists it as broken JSON. The
kernel says who owns it (NFTA_TABLE_OWNER: the netlink port id of the owner's socket,
which Linux numbers with the process id) in its table dump; nft prints only a name.
This reads the dump over netlink directly: a few fixed-size headers, nothing else.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from pathlib import Path

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETTABLE = 1
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NFTA_TABLE_NAME, NFTA_TABLE_FLAGS, NFTA_TABLE_OWNER = 1, 2, 7
NFT_TABLE_F_OWNER = 0x2
FAMILIES = {"ip": 2, "ip6": 10, "inet": 1, "arp": 3, "bridge": 7, "netdev": 5}
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_NFGEN = struct.Struct("=BBH")  # nfgenmsg: family, version, resource id


def table_owner(family: str, name: str) -> int | None:
    """The owner's port id (its pid) of table `family name`, or None: not owned, not
    there, or the kernel could not be asked."""
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
            sock.settimeout(2)
            request = _NFGEN.pack(FAMILIES.get(family, 0), 0, 0)
            kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE
            header = _HEADER.pack(
                _HEADER.size + len(request), kind, NLM_F_REQUEST | NLM_F_DUMP, 1, 0
            )
            sock.send(header + request)
            return _find_owner(sock, name)
    except OSError:
        return None


def _find_owner(sock: socket.socket, name: str) -> int | None:
    while True:
        data = sock.recv(65536)
        offset = 0
        while offset + _HEADER.size <= len(data):
            length, kind, _, _, _ = _HEADER.unpack_from(data, offset)
            if kind in (NLMSG_DONE, NLMSG_ERROR) or length < _HEADER.size:
                return None
            attrs = _attributes(data[offset + _HEADER.size + _NFGEN.size : offset + length])
            if attrs.get(NFTA_TABLE_NAME, b"").rstrip(b"\0").decode(errors="replace") == name:
                flags = (
                    struct.unpack(">I", attrs[NFTA_TABLE_FLAGS])[0]
                    if NFTA_TABLE_FLAGS in attrs
                    else 0
                )
                if flags & NFT_TABLE_F_OWNER and NFTA_TABLE_OWNER in attrs:
                    return int(struct.unpack(">I", attrs[NFTA_TABLE_OWNER])[0])
                return None
            offset += (length + 3) & ~3


def _attributes(data: bytes) -> dict[int, bytes]:
    attrs: dict[int, bytes] = {}
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        attrs[kind & 0x3FFF] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return attrs


def process_name(pid: int) -> str:
    """`NAME (pid PID)` from /proc, or just the pid when the process is not visible."""
    comm = ""
    with contextlib.suppress(OSError):
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    return f"{comm} (pid {pid})" if comm else f"pid {pid}"


def owned_table_error(family: str, name: str, outline: str) -> str | None:
    """A sentence for a table of that name that another process owns, or None."""
    if "flags owner" not in (line.strip() for line in outline.splitlines()):
        return None
    pid = table_owner(family, name)
    if pid is not None and pid != os.getpid():
        who = process_name(pid)
    else:  # nft names the program in a comment: `table inet x { # progname firewalld`
        header = outline.split("\n", 1)[0]
        program = header.split("# progname ", 1)[1].strip() if "# progname " in header else ""
        who = program or "another process"
    return (
        f"table {family} {name} belongs to {who}, which made it with `flags owner`: only "
        "that process may change it. Give nftfwd another table (`table:` in the model), "
        "or stop that process."
    )
