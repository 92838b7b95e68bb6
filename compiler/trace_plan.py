"""What `nftfwd trace` traces: the forward a host port is, and the small table of trace's
own that marks the first new connection to it, both directions, for `nft monitor trace`.

Pure: the host's model and the options come in, the forward and an nft script go out.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_address

from nftfwd.claims import Reach, host_reaches
from nftfwd.errors import NftfwdError, echo
from nftfwd.model import Family, Host, IPAddress, Proto, family_of
from nftfwd.nftjson import Chain
from nftfwd.trace_path import ChainKey

TRACE_FAMILY, TRACE_TABLE = "inet", "nftfwd_trace"
# Between conntrack (-200: `ct state` and `ct id` are known) and NAT (-100: the packet
# still has the host address and port it was sent to). At -350 nothing is tracked yet.
TRACE_PRIORITY = -150
# The table's comment names the process that made it: a second trace is refused while
# that process lives, and a table whose process is gone is removed by the next trace.
OWNER_PREFIX = "nftfwd trace, pid "
READY_CHAIN = "ready"  # added once the monitor runs: its event says the monitor listens


@dataclass(frozen=True)
class Target:
    """The forward a traced port is, in the families traced."""

    proto: Proto
    port: int
    reaches: tuple[Reach, ...]  # one per family traced
    client: IPAddress | None  # --from

    @property
    def first(self) -> Reach:
        return self.reaches[0]

    @property
    def guest_port(self) -> int:
        return self.first.forward.guest_port(self.port)

    def describe(self) -> str:
        reach = self.first
        return (
            f"{self.proto} {self.port} -> {reach.guest.name} {reach.target} port {self.guest_port}"
        )


def find_target(
    host: Host, port: int, proto: Proto, family: Family | None, client: str | None
) -> Target:
    """The forward of `host` that `port` is, or an error saying which ports are."""
    source = None
    if client is not None:
        try:
            source = ip_address(client)
        except ValueError:
            raise NftfwdError(
                f"--from {echo(client)}: not an IP address; give the client's address, "
                "for example --from 198.51.100.7."
            ) from None
        if family is not None and family_of(source) != family:
            raise NftfwdError(f"--from {client} is not an IPv{4 if family == 'ip' else 6} address.")
        family = family_of(source)
    found = tuple(
        r
        for r in host_reaches(host)
        if proto in r.forward.protos
        and r.forward.port.first <= port <= r.forward.port.last
        and (family is None or r.family == family)
    )
    if not found:
        ports = sorted({f"{p} {f.port}" for _, _, f in host.forwards() for p in f.protos})
        listed = ", ".join(ports[:20]) + (f" and {len(ports) - 20} more" if len(ports) > 20 else "")
        fam = f" in IPv{4 if family == 'ip' else 6}" if family else ""
        raise NftfwdError(
            f"{proto} port {port} is not a forward of host {host.name}{fam}; its forwards are "
            f"{listed or 'none'}. Trace one of them."
        )
    return Target(proto, port, found, source)


def _nfproto(family: Family) -> str:
    return "ipv4" if family == "ip" else "ipv6"


def trace_script(target: Target, pid: int, families: tuple[Family, ...] | None = None) -> str:
    """The trace table, as one nft script (one transaction): on prerouting (a client, a
    guest's hairpin) and output (the host itself), after conntrack and before NAT, the
    first new connection to the port (from the client, when given) is put in a set of
    one by its conntrack id; every packet of that connection, both directions and the
    host's ICMP errors about it, carries the same id and is marked for tracing. A second
    connection finds the set full and is not marked."""
    fams = families or tuple(dict.fromkeys(r.family for r in target.reaches))
    match = [f"meta l4proto {target.proto} th dport {target.port}", "fib daddr type local"]
    if len(fams) == 1:
        match.insert(0, f"meta nfproto {_nfproto(fams[0])}")
    if target.client is not None:
        match.insert(0, f"{family_of(target.client)} saddr {target.client}")
    first = " ".join(["ct state new", *match, "add @conn { ct id } meta nftrace set 1"])
    chains = []
    for name, hook in (("pre", "prerouting"), ("out", "output")):
        chains.append(
            f"\tchain {name} {{\n"
            f"\t\ttype filter hook {hook} priority {TRACE_PRIORITY}; policy accept;\n"
            f"\t\tct id @conn meta nftrace set 1\n"
            f"\t\t{first}\n"
            "\t}\n"
        )
    # `create` fails if the table exists: two traces started at once refuse each other.
    # The comment goes with it (a later `table` block cannot set it on a new table).
    return (
        f'create table {TRACE_FAMILY} {TRACE_TABLE} {{ comment "{OWNER_PREFIX}{pid}"; }}\n'
        f"table {TRACE_FAMILY} {TRACE_TABLE} {{\n"
        "\tset conn {\n\t\ttypeof ct id\n\t\tsize 1\n\t\tflags dynamic\n\t}\n"
        + "".join(chains)
        + "}\n"
    )


def trace_chains() -> dict[ChainKey, Chain]:
    """The trace table's base chains, which the events name (the chains are listed before
    the table is added)."""
    return {
        (TRACE_FAMILY, TRACE_TABLE, name): Chain(
            TRACE_FAMILY, TRACE_TABLE, name, "filter", hook, TRACE_PRIORITY, "accept"
        )
        for name, hook in (("pre", "prerouting"), ("out", "output"))
    }


def owner_pid(table_text: str) -> int | None:
    """The pid in the comment of a trace table's listing (None: no such comment)."""
    for line in table_text.splitlines():
        words = line.strip()
        if words.startswith(f'comment "{OWNER_PREFIX}'):
            number = words.removeprefix(f'comment "{OWNER_PREFIX}').rstrip('"')
            return int(number) if number.isdigit() else None
    return None


def probe_address(target: Target, uplink_addresses: tuple[IPAddress, ...]) -> IPAddress | None:
    """Where `--probe` connects: the forward's own address, else one the host listens on
    (its `addresses`, else an address of an uplink) in the family traced."""
    reach = target.first
    if reach.listen:
        return reach.listen[0]
    usable = [
        a
        for a in uplink_addresses
        if family_of(a) == reach.family and not (a.is_link_local or a.is_loopback)
    ]
    return usable[0] if usable else None
