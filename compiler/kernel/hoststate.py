"""Reading the live host (its current network namespace) into the HostState doctor judges.

What is read: the ruleset through libnftables, sysctls, links, neighbours, listeners,
libvirt's networks, /etc/nftables.conf and the systemd units of nftables and nftfwd.

HostState is defined in nftfwd.doctor.hostchecks; judging it is pure, and
nftfwd.kernel.examine puts the two together. Tests give the readers a fake tree
(sys_root), fake command output (run) and a fake Nft.
"""

from __future__ import annotations

import json
import os
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

from nftfwd.doctor.boot import NFTABLES_SERVICE, BootUnits
from nftfwd.doctor.hostchecks import (
    NFTABLES_CONF,
    HostState,
    Link,
    Listener,
    Neighbour,
    wanted_sysctls,
)
from nftfwd.errors import NftfwdError
from nftfwd.kernel.libnft import Nft
from nftfwd.model import Family, Host, IPAddress

Runner = Callable[[Sequence[str]], str]


class ProbeError(NftfwdError):
    """A command doctor needs could not be run."""


def run_command(argv: Sequence[str]) -> str:
    """Runs a read-only command and returns its output."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ProbeError(f"cannot run `{' '.join(argv)}`: {err}") from None
    if done.returncode != 0:
        raise ProbeError(f"`{' '.join(argv)}` failed: {done.stderr.strip()}")
    return done.stdout


def _json_list(text: str) -> list[Any]:
    try:
        data = json.loads(text or "[]")
    except ValueError as err:
        raise ProbeError(f"unexpected output from iproute2: {err}") from None
    return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []


def read_links(run: Runner) -> dict[str, Link]:
    links: dict[str, Link] = {}
    for item in _json_list(run(["ip", "-d", "-j", "addr", "show"])):
        info = item.get("linkinfo") or {}
        slave = info.get("info_slave_data") or {}
        addrs = tuple(
            ip_address(a["local"])
            for a in item.get("addr_info", [])
            if isinstance(a.get("local"), str)
        )
        name = str(item.get("ifname", ""))
        links[name] = Link(
            name,
            "UP" in item.get("flags", []),
            str(info.get("info_kind", "")),
            item.get("master"),
            slave.get("hairpin") if info.get("info_slave_kind") == "bridge" else None,
            addrs,
        )
    return links


def read_neighbours(run: Runner) -> tuple[Neighbour, ...]:
    out = []
    for item in _json_list(run(["ip", "-j", "neigh", "show"])):
        try:
            address = ip_address(item.get("dst", ""))
        except ValueError:
            continue
        states = tuple(str(s) for s in item.get("state", []))
        out.append(Neighbour(address, str(item.get("dev", "")), item.get("lladdr"), states))
    return tuple(out)


def read_fdb(run: Runner, bridge: str) -> dict[str, str]:
    """mac -> bridge port, for the addresses the bridge has learnt or was given."""
    try:
        items = _json_list(run(["bridge", "-j", "fdb", "show", "br", bridge]))
    except ProbeError:
        return {}  # no bridge tool, or not a bridge: the guests' ports stay unknown
    return {
        str(i["mac"]).lower(): str(i.get("ifname"))
        for i in items
        if "self" not in i.get("flags", []) and i.get("master") == bridge and "mac" in i
    }


def read_default_devs(run: Runner) -> frozenset[str]:
    devs: set[str] = set()
    for argv in (
        ["ip", "-4", "-j", "route", "show", "default"],
        ["ip", "-6", "-j", "route", "show", "default"],
    ):
        for route in _json_list(run(argv)):
            hops = route.get("nexthops") or [route]
            devs.update(str(h["dev"]) for h in hops if isinstance(h, dict) and "dev" in h)
    return frozenset(devs)


def read_sysctl(sys_root: str, *parts: str) -> str | None:
    try:
        return Path(sys_root, "proc", "sys", *parts).read_text().strip()
    except OSError:
        return None


def _proc_address(text: str) -> IPAddress:
    raw = bytes.fromhex(text)
    if len(raw) == 4:
        return IPv4Address(raw[::-1])
    return IPv6Address(b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))


def read_listeners(sys_root: str) -> tuple[Listener, ...]:
    """Listening TCP and bound unconnected UDP sockets, from /proc/net/{tcp,udp}{,6}."""
    out: list[Listener] = []
    for name in ("tcp", "tcp6", "udp", "udp6"):
        proto = name[:3]
        try:
            lines = Path(sys_root, "proc", "net", name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != ("0A" if proto == "tcp" else "07"):
                continue
            if proto == "udp" and fields[2].split(":")[1] != "0000":
                continue  # a connected UDP socket
            addr, _, port = fields[1].partition(":")
            try:
                out.append(Listener(proto, _proc_address(addr), int(port, 16)))
            except ValueError:
                continue
    return tuple(dict.fromkeys(out))


def read_libvirt_networks(sys_root: str) -> dict[str, str]:
    """bridge -> libvirt network name, from libvirt's running and persistent network XML."""
    out: dict[str, str] = {}
    for folder in ("etc/libvirt/qemu/networks", "run/libvirt/network"):
        for path in sorted(Path(sys_root, folder).glob("*.xml")):
            try:
                root = ET.parse(path).getroot()
            except (OSError, ET.ParseError):
                continue
            net = root if root.tag == "network" else root.find("network")
            bridge = net.find("bridge") if net is not None else None
            name = net.findtext("name") if net is not None else None
            if bridge is not None and bridge.get("name") and name:
                out[str(bridge.get("name"))] = name.strip()
    return out


def bridge_nf_families(sys_root: str) -> tuple[Family, ...]:
    """Families whose bridged traffic br_netfilter passes through the ip/ip6 hooks."""
    calls: tuple[tuple[Family, str], ...] = (
        ("ip", "bridge-nf-call-iptables"),
        ("ip6", "bridge-nf-call-ip6tables"),
    )
    return tuple(f for f, name in calls if read_sysctl(sys_root, "net", "bridge", name) == "1")


def read_text(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


# Where systemd looks for units, first wins (systemd.unit(5)); enablement links live in /etc.
UNIT_DIRS = (
    "etc/systemd/system",
    "run/systemd/system",
    "usr/local/lib/systemd/system",
    "usr/lib/systemd/system",
    "lib/systemd/system",
)


def _enabled(root: str, unit: str) -> bool:
    """A link to the unit in a .wants/ or .requires/ folder of /etc/systemd/system (read
    as a link: in another root its target, an absolute path, points outside that tree)."""
    try:
        folders = list(Path(root, UNIT_DIRS[0]).iterdir())
    except OSError:
        return False
    pulls = (f / unit for f in folders if f.suffix in (".wants", ".requires"))
    return any(p.is_symlink() or p.exists() for p in pulls)


def _masked(root: str, unit: str) -> bool:
    for folder in UNIT_DIRS[:2]:
        path = Path(root, folder, unit)
        if path.is_symlink() and os.readlink(path) == "/dev/null":
            return True
    return False


def _unit_text(root: str, unit: str) -> str | None:
    """The unit file systemd would use, followed by its drop-ins (in their order)."""
    files = [Path(root, d, unit) for d in UNIT_DIRS]
    main = next((f for f in files if f.is_file()), None)
    if main is None or _masked(root, unit):
        return None
    drop_ins = {
        p.name: p for d in reversed(UNIT_DIRS) for p in Path(root, d).glob(f"{unit}.d/*.conf")
    }
    texts = [read_text(str(p)) or "" for p in [main, *(drop_ins[n] for n in sorted(drop_ins))]]
    return "\n".join(texts)


def read_boot_units(root: str = "/") -> BootUnits:
    """Whether nftables.service is enabled, and nftfwd's unit as systemd would read it."""
    return BootUnits(
        nftables_enabled=_enabled(root, NFTABLES_SERVICE) and not _masked(root, NFTABLES_SERVICE),
        nftfwd_unit=_unit_text(root, "nftfwd.service"),
        nftfwd_enabled=_enabled(root, "nftfwd.service"),
    )


def read_state(
    host: Host,
    *,
    sys_root: str = "/",
    nftables_conf: str = NFTABLES_CONF,
    run: Runner = run_command,
    boot_root: str | None = None,
) -> HostState:
    """Everything the host checks need, read from this network namespace; the systemd
    units from boot_root (default sys_root)."""
    links = read_links(run)
    bridged = bridge_nf_families(sys_root)
    fdb = {
        b.name: read_fdb(run, b.name)
        for b in host.bridges
        if host.hairpin and bridged and b.name in links and links[b.name].kind == "bridge"
    }
    return HostState(
        links,
        read_neighbours(run),
        fdb,
        read_default_devs(run),
        read_listeners(sys_root),
        bridged,
        read_libvirt_networks(sys_root),
        {key: read_sysctl(sys_root, *key.split("/")) for key in wanted_sysctls(host)},
        nftables_conf,
        read_text(nftables_conf),
        read_boot_units(sys_root if boot_root is None else boot_root),
    )


def read_live_ruleset(
    nft: Nft | None = None, own_table: str | None = None
) -> tuple[dict[str, Any], str]:
    """The kernel's ruleset of this network namespace, through libnftables: the JSON
    listing (read in parts, so that firewalld's owned table cannot cut it short) and the
    text listing with handles (where iptables-nft's xt matches show what they match).
    Of nftfwd's own table only the chains are read, without rules: its maps can be
    large (see Nft.list_ruleset_parts), and doctor judges the other tables."""
    nft = nft if nft is not None else Nft()
    own = ("inet", own_table) if own_table else None
    return nft.list_ruleset_parts(outline_only=own), nft.list_ruleset_text(skip=own)
