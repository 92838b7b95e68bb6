"""Which process owns a table with `flags owner` (firewalld 2.x sets it, for one).

Only that process may change such a table, and nft 1.0.6 lists it as broken JSON. The
kernel says who owns it (NFTA_TABLE_OWNER: the netlink port id of the owner's socket,
which Linux numbers with the process id) in its table dump; nft prints only a name.
This reads the dump over netlink directly (netlink.py).
"""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path

from nftfwd.kernel.netlink import (
    NFGEN,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    attributes,
    message,
    messages,
    netfilter_socket,
)

NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETTABLE = 1
NFTA_TABLE_NAME, NFTA_TABLE_FLAGS, NFTA_TABLE_OWNER = 1, 2, 7
NFT_TABLE_F_OWNER = 0x2
FAMILIES = {"ip": 2, "ip6": 10, "inet": 1, "arp": 3, "bridge": 7, "netdev": 5}


def table_owner(family: str, name: str) -> int | None:
    """The owner's port id (its pid) of table `family name`, or None: not owned, not
    there, or the kernel could not be asked."""
    kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE
    request = NFGEN.pack(FAMILIES.get(family, 0), 0, 0)
    try:
        with netfilter_socket() as sock:
            sock.send(message(kind, NLM_F_REQUEST | NLM_F_DUMP, 1, request))
            while True:
                for msg_type, _, payload in messages(sock.recv(65536)):
                    if msg_type in (NLMSG_DONE, NLMSG_ERROR):
                        return None
                    attrs = attributes(payload[NFGEN.size :])
                    if attrs.get(NFTA_TABLE_NAME, b"").rstrip(b"\0") == name.encode():
                        flags = struct.unpack(">I", attrs.get(NFTA_TABLE_FLAGS, bytes(4)))[0]
                        owner = attrs.get(NFTA_TABLE_OWNER)
                        if flags & NFT_TABLE_F_OWNER and owner is not None:
                            return int(struct.unpack(">I", owner)[0])
                        return None
    except (OSError, struct.error):
        return None


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
