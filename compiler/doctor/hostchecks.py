"""What doctor concludes from the live host's state, each check a function of a HostState.

The state: sysctls, links, neighbours, listeners, /etc/nftables.conf (boot.py). Pure:
nftfwd.kernel.hoststate reads it from the host (tests build one by hand or from
fixtures)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from nftfwd.config import SYSCTL_FILE
from nftfwd.doctor.boot import BootUnits, check_nftables_conf
from nftfwd.doctor.findings import (
    Finding,
    sorted_findings,
    sysctl_fix,
    sysctl_key,
    with_comment,
)
from nftfwd.model import Bridge, Family, Forward, Guest, Host, IPAddress

NFTABLES_CONF = "/etc/nftables.conf"
USABLE = {"REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT", "NOARP"}
UNANSWERED = {"FAILED", "INCOMPLETE"}


@dataclass(frozen=True)
class Link:
    name: str
    up: bool  # administratively up
    kind: str  # bridge, veth, ... ("" for a plain device)
    master: str | None
    hairpin: bool | None  # bridge ports only
    addresses: tuple[IPAddress, ...] = ()


_NOLINK = Link("", False, "", None, None)


@dataclass(frozen=True)
class Neighbour:
    address: IPAddress
    dev: str
    lladdr: str | None
    states: tuple[str, ...]

    @property
    def usable(self) -> bool:
        return bool(USABLE.intersection(self.states))


@dataclass(frozen=True)
class Listener:
    proto: str
    address: IPAddress
    port: int


@dataclass(frozen=True)
class HostState:
    """Everything doctor reads from the live host (its current network namespace)."""

    links: Mapping[str, Link]
    neighbours: tuple[Neighbour, ...] = ()
    fdb: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # bridge: mac -> port
    default_devs: frozenset[str] = frozenset()
    listeners: tuple[Listener, ...] = ()
    bridged: tuple[Family, ...] = ()  # br_netfilter passes bridged traffic to iptables/nft
    libvirt_networks: Mapping[str, str] = field(default_factory=dict)  # bridge -> network
    sysctls: Mapping[str, str | None] = field(default_factory=dict)  # net/ipv4/ip_forward -> 1
    nftables_conf: str = NFTABLES_CONF
    nftables_conf_text: str | None = None  # None: the file does not exist
    boot: BootUnits = field(default_factory=BootUnits)  # nftables' and nftfwd's systemd units

    def sysctl(self, *parts: str) -> str | None:
        """A sysctl's value as read (None: absent, or not read)."""
        return self.sysctls.get("/".join(parts))


def wanted_sysctls(host: Host) -> tuple[str, ...]:
    """The sysctls (as paths under /proc/sys) that the checks of this host read."""
    keys = ["net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding", "net/ipv4/conf/all/rp_filter"]
    for up in host.uplinks:
        keys += [f"net/ipv6/conf/{up}/accept_ra", f"net/ipv4/conf/{up}/rp_filter"]
    return tuple(keys)


_NO_BRNF = "sysctl -w net.bridge.bridge-nf-call-iptables=0"


def _guests(host: Host) -> Iterator[tuple[Bridge, Guest, IPAddress]]:
    for bridge in host.bridges:
        for guest in bridge.guests:
            for address in (guest.address, guest.address6):
                if address is not None:
                    yield bridge, guest, address


def _forwarding_fix(settings: list[tuple[str, str]]) -> str:
    """nftfwd's own way first; by hand, the same settings in the file it writes."""
    manual = sysctl_fix(settings, SYSCTL_FILE.name, append=True)
    lines = [f"#   {line}" for line in manual.splitlines()]
    return "\n".join(["nftfwd load --enable-forwarding", "# or by hand, now and at boot:", *lines])


def check_forwarding(host: Host, state: HostState) -> list[Finding]:
    out = []
    value = state.sysctl("net", "ipv4", "ip_forward")
    if host.subnets_in("ip") and value != "1":
        message = (
            f"IPv4 forwarding is off (net.ipv4.ip_forward = {value}), so the kernel routes "
            "nothing between uplinks and bridges: no forward, outbound or hairpin traffic passes."
        )
        fix = _forwarding_fix([("net.ipv4.ip_forward", "1")])
        out.append(Finding("ipv4-forwarding-off", "net.ipv4.ip_forward", message, fix, "error"))
    value6 = state.sysctl("net", "ipv6", "conf", "all", "forwarding")
    if host.subnets_in("ip6") and value6 != "1":
        ra = [
            (sysctl_key("net", "ipv6", "conf", up, "accept_ra"), "2")
            for up in host.uplinks
            if state.sysctl("net", "ipv6", "conf", up, "accept_ra") == "1"
        ]
        why = "IPv6 is disabled on this host" if value6 is None else "IPv6 forwarding is off"
        keep = " (accept_ra = 2 keeps the uplinks' SLAAC working with forwarding on)" if ra else ""
        message = (
            f"{why} (net.ipv6.conf.all.forwarding = {value6}), so no IPv6 traffic passes "
            f"between uplinks and bridges{keep}."
        )
        fix = _forwarding_fix([*ra, ("net.ipv6.conf.all.forwarding", "1")])
        out.append(
            Finding("ipv6-forwarding-off", "net.ipv6.conf.all.forwarding", message, fix, "error")
        )
    return out


def check_links(
    host: Host, links: Mapping[str, Link], networks: Mapping[str, str]
) -> list[Finding]:
    out = []
    for name in host.uplinks:
        if name not in links:
            message = (
                f"Uplink {name} of host {host.name} does not exist here, so no forward matches "
                "traffic arriving on it and guests cannot leave through it."
            )
            fix = f"ip -br link\n# then correct hosts.{host.name}.uplinks in the model"
            out.append(Finding("uplink-missing", f"uplink {name}", message, fix, "error"))
    for bridge in host.bridges:
        if bridge.name in links:
            continue
        net = networks.get(bridge.name)
        if net:
            fix = f"virsh net-start {net}\nvirsh net-autostart {net}"
        else:
            fix = f"ip link add {bridge.name} type bridge\nip link set dev {bridge.name} up"
            fix += "\n# or start the libvirt/Incus network that creates it"
        message = (
            f"Bridge {bridge.name} does not exist, so its guests get no traffic "
            "and their forwards fail."
        )
        out.append(Finding("bridge-missing", f"bridge {bridge.name}", message, fix, "error"))
    for name in (*host.uplinks, *(b.name for b in host.bridges)):
        link = links.get(name)
        if link is not None and not link.up:
            message = f"Interface {name} is administratively down, so no traffic passes it."
            fix = f"ip link set dev {name} up"
            out.append(Finding("link-down", f"interface {name}", message, fix, "error"))
    return out


def _by_address(neighbours: Iterable[Neighbour]) -> dict[IPAddress, list[Neighbour]]:
    """The neighbour entries of each address, in their order (looked up once per guest)."""
    out: dict[IPAddress, list[Neighbour]] = {}
    for n in neighbours:
        out.setdefault(n.address, []).append(n)
    return out


def check_neighbours(host: Host, neighbours: Sequence[Neighbour]) -> list[Finding]:
    out = []
    by_address = _by_address(neighbours)
    for bridge, guest, address in _guests(host):
        entries = by_address.get(address, [])
        here = [n for n in entries if n.dev == bridge.name]
        elsewhere = sorted({n.dev for n in entries if n.dev != bridge.name and n.usable})
        subject = f"guest {guest.name} ({address})"
        if elsewhere and not any(n.usable for n in here):
            message = (
                f"{address} (guest {guest.name} on {bridge.name}) answers on "
                f"{', '.join(elsewhere)}, not on {bridge.name}: this host sends the guest's "
                "traffic out of the wrong interface."
            )
            fix = (
                f"ip route get {address}\nip neigh show to {address}\n"
                f"# the route must say dev {bridge.name}: remove the address or route that puts "
                f"{address} behind {elsewhere[0]}, or correct the guest's address in the model"
            )
            out.append(Finding("neighbour-elsewhere", subject, message, fix, "error"))
        elif guest.forwards and here and all(UNANSWERED.intersection(n.states) for n in here):
            message = (
                f"{address} (guest {guest.name}) does not answer on {bridge.name} "
                f"({'/'.join(here[0].states)}): the guest is off or has another address, "
                "so its forwards fail."
            )
            path = f"hosts.{host.name}.bridges.{bridge.name}.guests.{guest.name}.address"
            fix = (
                f"ping -c 1 -W 1 {address}\nip neigh show dev {bridge.name}\n"
                f"# start the guest, or correct {path} in the model"
            )
            out.append(Finding("guest-absent", subject, message, fix, "error"))
    return out


def check_hairpin(host: Host, state: HostState) -> list[Finding]:
    """A guest reaching its own forward: with br_netfilter the DNATed packet is bridged
    back out of the port it came in on, which a bridge allows only in hairpin mode."""
    out: list[Finding] = []
    if not host.hairpin:
        return out
    by_address = _by_address(state.neighbours)
    for bridge, guest, address in _guests(host):
        family: Family = "ip" if address.version == 4 else "ip6"
        if not guest.forwards or family not in state.bridged:
            continue
        fdb = state.fdb.get(bridge.name, {})
        macs = {
            n.lladdr.lower()
            for n in by_address.get(address, ())
            if n.dev == bridge.name and n.lladdr and n.usable
        }
        for port in sorted({fdb[m] for m in macs if m in fdb}):
            if state.links.get(port, _NOLINK).hairpin is not False:
                continue
            message = (
                f"Guest {guest.name} cannot reach its own forwards at a host address: "
                f"br_netfilter bridges the DNATed packet back out of port {port}, its way in, "
                "which a bridge allows only in hairpin mode."
            )
            fix = (
                f"bridge link set dev {port} hairpin on\n"
                "# the port is made anew when the guest starts: set it again then "
                "(e.g. from a libvirt qemu hook)\n"
                f"# or keep bridged traffic out of netfilter: {_NO_BRNF}"
            )
            subject = f"bridge port {port} of {bridge.name} (guest {guest.name})"
            out.append(Finding("hairpin-mode-off", subject, message, fix, "error"))
    return out


def check_rp_filter(host: Host, state: HostState) -> list[Finding]:
    """Strict rp_filter on an uplink without the default route drops clients whose route
    back leaves through another interface (the effective value is max(all, device))."""
    if not any(g.forwards and g.address for b in host.bridges for g in b.guests):
        return []

    def value(dev: str) -> int | None:
        raw = state.sysctl("net", "ipv4", "conf", dev, "rp_filter")
        return int(raw) if raw is not None and raw.isdigit() else None

    out = []
    for up in host.uplinks:
        own = value(up)  # None: no such interface, reported as missing elsewhere
        if up in state.default_devs or own is None or max(value("all") or 0, own) != 1:
            continue
        message = (
            f"Strict reverse-path filtering (rp_filter = 1) on uplink {up}, which has no default "
            "route, drops forwarded connections from clients whose route back leaves through "
            "another interface."
        )
        key = sysctl_key("net", "ipv4", "conf", up, "rp_filter")
        fix = sysctl_fix([(key, "2")], "90-nftfwd-rp-filter.conf")
        out.append(Finding("rp-filter-strict", f"uplink {up}", message, fix, "error"))
    return out


def _takes_over(host: Host, fw: Forward, lst: Listener, bridge_addrs: set[IPAddress]) -> bool:
    """Does this forward take connections a local listener waits for?"""
    addr = lst.address
    if lst.proto not in fw.protos or not fw.port.first <= lst.port <= fw.port.last:
        return False
    if addr.is_loopback or addr.is_link_local or addr in bridge_addrs:
        return False
    listens = (fw.address,) if fw.address else host.addresses
    return addr.is_unspecified or not listens or addr in listens


def check_listeners(host: Host, state: HostState) -> list[Finding]:
    bridge_addrs = {a for b in host.bridges for a in state.links.get(b.name, _NOLINK).addresses}
    out = []
    for bridge in host.bridges:
        for guest in bridge.guests:
            for fw in guest.forwards:
                for lst in state.listeners:
                    if not _takes_over(host, fw, lst, bridge_addrs):
                        continue
                    where = f"{lst.proto} {_show(lst.address)}:{lst.port}"
                    named = with_comment(fw.path, guest.comment_of(fw))
                    message = (
                        f"A local service listens on {where}, a port that forward {named} sends "
                        f"to guest {guest.name}: connections to a host address at it reach the "
                        "guest, so the service is unreachable there."
                    )
                    flag = "t" if lst.proto == "tcp" else "u"
                    fix = (
                        f"ss -Hlnp{flag} 'sport = :{lst.port}'\n# move that service to another "
                        "port (or bind it to 127.0.0.1), or give the forward another port"
                    )
                    # nftfwd's forward works; what it shadows is the local service
                    out.append(Finding("local-listener", where, message, fix, "warning"))
    return out


def _show(addr: IPAddress) -> str:
    return f"[{addr}]" if addr.version == 6 else str(addr)


def check_host(host: Host, state: HostState) -> list[Finding]:
    """Findings about this host's sysctls, links, guests, listeners and nftables.conf."""
    return sorted_findings(
        [
            *check_forwarding(host, state),
            *check_links(host, state.links, state.libvirt_networks),
            *check_neighbours(host, state.neighbours),
            *check_hairpin(host, state),
            *check_rp_filter(host, state),
            *check_listeners(host, state),
            *check_nftables_conf(state.nftables_conf, state.nftables_conf_text, state.boot),
        ]
    )
