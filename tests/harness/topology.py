"""The standard test topology of testing.md, built from one host of a model.

::

    client<k> ns --veth-- host ns (uplink <k>: the model's uplink name)
                          host ns: one Linux bridge per model bridge (its model name)
                            |-- vg<n> --veth-- guest ns (one per guest; eth0 inside)
                            |-- vr<i> --veth-- router ns (only with router=True; eth<i>)

Namespaces are named ``nff-<pid>-<counter>-<role>`` (``host``, ``client0``,
``guest-<name>``, ``router``); ``Topology.ns`` maps the keys ``"host"``,
``"client<k>"``, ``"guest:<name>"`` and ``"router"`` to them. Interface names are
the model's (uplinks, bridges) plus ``vg<n>``/``vr<i>`` (host side) and
``eth0``/``eth<i>`` (inside clients, guests and the router).

Address plan (deterministic; any overlap of two networks is an error):

- Uplink 0 carries the host's listed ``addresses``: IPv4 ones as /24, IPv6 ones as
  /64. A family the host lists nothing for, on uplink 0, gets 203.0.113.1/24 (IPv4)
  or 2001:db8:1::1/64 (IPv6). Uplink k > 0 gets 198.18.k.1/24 and 2001:db8:<k+1>::1/64.
- The client of uplink k gets host number 100 (``.100``, ``::100``; the next free
  number if a host address has it) in the subnet of the uplink's first address of
  each family, and a default route (v4 and v6) via that first host address.
  ``extra_client_addresses={k: [...]}`` adds /32 or /128 addresses on the client's
  ``lo``, routed in the host ns via the client's link address, so a probe can connect
  from a chosen source (``sources`` restrictions).
- Bridge gateway = first address of ``subnet`` (and ``subnet6``), with the subnet's
  prefix. Guests get their model ``address``/``address6`` with the subnet's prefix
  and default routes via the gateway.
- ``router=True`` adds a ``router`` ns with one leg on every bridge, at the last usable
  address of ``subnet`` (broadcast - 1) and of ``subnet6`` (the last address). Guests
  with any ``snat: true`` forward then route by default via the router, not the host.
  The router does not forward and has no route to any client: it is a dead end, so
  such a guest answers a client only when the host source-NATs the connection.

In every namespace: ``lo`` up, IPv6 DAD off (addresses usable at once), rp_filter 0.
In the host ns also ip_forward=1 and IPv6 forwarding=1. ``bridge_nf_call`` sets
``net.bridge.bridge-nf-call-{ip,ip6}tables`` in the host ns (None keeps the kernel's
default: 1 in a new namespace where br_netfilter is loaded, so bridged traffic then
passes the inet forward hook).

Nothing is created in the root namespace: every veth is made inside the host ns with
its peer placed straight into the other namespace. ``close()`` (or leaving the
``with`` block, also on an exception) stops every process the topology started, by
pid, and deletes every namespace it made.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

Family = Literal[4, 6]
IPInterface = IPv4Interface | IPv6Interface

HERE = Path(__file__).resolve().parent
PROBE = HERE / "probe.py"
SERVER = HERE / "server.py"
PYTHON = [sys.executable, "-I", "-S"]  # the scripts need the standard library only

READY_TIMEOUT = 3.0
STOP_TIMEOUT = 2.0
_counter = itertools.count()


class HarnessError(RuntimeError):
    """The harness could not build or drive the topology (not a network result)."""


class CommandError(subprocess.CalledProcessError):
    """A failed command; its message includes the command's stderr."""

    def __str__(self) -> str:
        detail = (self.stderr or self.stdout or "").strip()
        return f"{super().__str__()}\n{detail}" if detail else super().__str__()


def run_command(
    argv: Sequence[str], *, check: bool = True, input: str | None = None, timeout: float = 10
) -> subprocess.CompletedProcess[str]:
    """Run argv with text output captured; a failure raises CommandError with stderr."""
    done = subprocess.run(
        list(argv), input=input, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise CommandError(done.returncode, list(argv), done.stdout, done.stderr)
    return done


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Reply:
    """One answer (or failure) seen by a probe.

    ``text`` is the server's line ``<name> <peer ip> <local port> <sent text>``;
    ``error`` is None on success, else ``"timeout"``, ``"refused"``, ``"reset"``,
    ``"unreachable"``, ``"closed"`` or another description.
    """

    ok: bool
    text: str = ""
    error: str | None = None

    def _field(self, index: int) -> str | None:
        parts = self.text.split(" ", 3)
        return parts[index] if self.ok and len(parts) == 4 else None

    @property
    def guest(self) -> str | None:
        """Name of the server that answered (the guest name for ``serve``)."""
        return self._field(0)

    @property
    def peer(self) -> str | None:
        """Source address the server saw the connection come from."""
        return self._field(1)

    @property
    def port(self) -> int | None:
        """Local port on which the server received the connection."""
        value = self._field(2)
        return int(value) if value is not None else None


# --------------------------------------------------------------------------- the plan


@dataclass
class UplinkPlan:
    index: int
    name: str
    host: list[IPInterface]
    client: list[IPInterface]
    extra: list[IPInterface] = field(default_factory=list)


@dataclass
class BridgePlan:
    name: str
    gateway: list[IPInterface]
    router: list[IPInterface] = field(default_factory=list)


@dataclass
class GuestPlan:
    name: str
    bridge: str
    port: str
    addresses: list[IPInterface]
    via_router: bool


@dataclass
class Plan:
    uplinks: list[UplinkPlan]
    bridges: list[BridgePlan]
    guests: list[GuestPlan]
    router: bool


def _of(family: int, items: Iterable[IPInterface]) -> list[IPInterface]:
    return [item for item in items if item.version == family]


def _client_interface(hosts: list[IPInterface]) -> IPInterface:
    network = hosts[0].network
    taken = {h.ip for h in hosts}
    base = 100 if network.version == 4 else 0x100
    for number in range(base, base + 100):
        if network[number] not in taken:
            return ipaddress.ip_interface(f"{network[number]}/{network.prefixlen}")
    raise HarnessError(f"no free client address in {network}")


def _uplink_plan(index: int, name: str, listed: list[str], extra: list[str]) -> UplinkPlan:
    own = [ipaddress.ip_address(a) for a in listed] if index == 0 else []
    host: list[IPInterface] = []
    for family, prefix, default in (
        (4, 24, "203.0.113.1" if index == 0 else f"198.18.{index}.1"),
        (6, 64, f"2001:db8:{index + 1}::1"),
    ):
        addresses = [str(a) for a in own if a.version == family] or [default]
        host += [ipaddress.ip_interface(f"{a}/{prefix}") for a in addresses]
    client = [_client_interface(_of(family, host)) for family in (4, 6)]
    extras = [ipaddress.ip_interface(a) for a in extra]  # bare address: /32 or /128
    return UplinkPlan(index, name, host, client, extras)


def _network_interfaces(subnet: str | None, number: int) -> list[IPInterface]:
    if subnet is None:
        return []
    network = ipaddress.ip_network(subnet)
    return [ipaddress.ip_interface(f"{network[number]}/{network.prefixlen}")]


def _last_usable(subnet: str) -> int:
    network = ipaddress.ip_network(subnet)
    return -2 if network.version == 4 and network.prefixlen < 31 else -1


def _check_overlaps(networks: list[tuple[str, IPv4Network | IPv6Network]]) -> None:
    for (name_a, net_a), (name_b, net_b) in itertools.combinations(networks, 2):
        if name_a != name_b and net_a.version == net_b.version and net_a.overlaps(net_b):
            raise HarnessError(f"address plan clash: {name_a} {net_a} overlaps {name_b} {net_b}")


def plan_topology(
    model: Mapping[str, Any],
    host: str,
    *,
    router: bool = False,
    extra_client_addresses: Mapping[int, Sequence[str]] | None = None,
) -> Plan:
    """The interfaces and addresses for one host of a model (no side effects)."""
    try:
        spec = model["hosts"][host]
    except KeyError:
        raise HarnessError(f"model has no host {host!r}") from None
    extra = extra_client_addresses or {}
    listed = [str(a) for a in spec.get("addresses") or []]
    uplinks = [
        _uplink_plan(k, name, listed, [str(a) for a in extra.get(k, [])])
        for k, name in enumerate(spec["uplinks"])
    ]
    bridges: list[BridgePlan] = []
    guests: list[GuestPlan] = []
    for name, bridge in (spec.get("bridges") or {}).items():
        subnets = [s for s in (bridge.get("subnet"), bridge.get("subnet6")) if s]
        plan = BridgePlan(name, [i for s in subnets for i in _network_interfaces(s, 1)])
        if router:
            plan.router = [i for s in subnets for i in _network_interfaces(s, _last_usable(s))]
        bridges.append(plan)
        for guest_name, guest in (bridge.get("guests") or {}).items():
            port = f"vg{len(guests)}"
            guests.append(_guest_plan(guest_name, guest, name, subnets, port, router))
    _validate(uplinks, bridges, guests)
    return Plan(uplinks, bridges, guests, router)


def _guest_plan(
    name: str, guest: Mapping[str, Any], bridge: str, subnets: list[str], port: str, router: bool
) -> GuestPlan:
    prefixes: dict[int, int] = {}
    for subnet in subnets:
        network = ipaddress.ip_network(subnet)
        prefixes[network.version] = network.prefixlen
    addresses: list[IPInterface] = []
    for key, version in (("address", 4), ("address6", 6)):
        if guest.get(key):
            if version not in prefixes:
                raise HarnessError(f"guest {name} has {key} but its bridge no IPv{version} subnet")
            addresses.append(ipaddress.ip_interface(f"{guest[key]}/{prefixes[version]}"))
    snat = any(forward.get("snat") for forward in guest.get("forwards") or [])
    return GuestPlan(name, bridge, port, addresses, router and snat)


def _validate(
    uplinks: list[UplinkPlan], bridges: list[BridgePlan], guests: list[GuestPlan]
) -> None:
    names = [u.name for u in uplinks] + [b.name for b in bridges]
    names += [g.port for g in guests] + [f"vr{i}" for i in range(len(bridges))]
    for name in names:
        if not 1 <= len(name) <= 15 or names.count(name) > 1 or name == "lo":
            raise HarnessError(f"interface name {name!r} is too long, duplicated or reserved")
    guest_names = [g.name for g in guests]
    if len(set(guest_names)) != len(guest_names):
        raise HarnessError(f"guest names must be unique within the host: {guest_names}")
    networks = [(u.name, i.network) for u in uplinks for i in u.host]
    networks += [(b.name, i.network) for b in bridges for i in b.gateway]
    _check_overlaps(networks)
    for bridge in bridges:
        used = {i.ip for i in bridge.gateway} | {
            a.ip for g in guests if g.bridge == bridge.name for a in g.addresses
        }
        if any(r.ip in used for r in bridge.router):
            raise HarnessError(f"router address on {bridge.name} is taken by a guest")


# --------------------------------------------------------------------------- processes


class _PipeLines:
    """Line reader over a pipe with a deadline per line (no unbounded blocking)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending = b""

    def readline(self, deadline: float) -> str | None:
        """The next line without its newline, or None at end of file or deadline."""
        while b"\n" not in self.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
                return None
            data = os.read(self.fd, 65536)
            if not data:
                return None
            self.pending += data
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode("utf-8", "replace")


def stop_process(process: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> None:
    """Stop one process by its pid: SIGTERM, then SIGKILL after `timeout` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """A server or session of the topology stopped, and its pipes closed."""
    stop_process(process)
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


class ServerHandle:
    """A running server.py; ``stop()`` ends it (the topology does so on close)."""

    def __init__(self, process: subprocess.Popen[bytes], name: str, ports: list[int]) -> None:
        self.process = process
        self.name = name
        self.ports = ports

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        _stop(self.process)


def _reply_from_json(line: str | None, what: str) -> Reply:
    if line is None:
        return Reply(False, error=f"{what}: probe gave no answer")
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        raise HarnessError(f"{what}: probe printed {line!r}") from None
    return Reply(bool(data["ok"]), str(data.get("text") or ""), data.get("error"))


class Session:
    """A TCP connection held open by a probe.py process in session mode."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        self.process = process
        self.lines = _PipeLines(process.stdout.fileno())
        self.opened = Reply(False, error="not connected")
        self._count = itertools.count()

    def exchange(self, text: str | None = None, timeout: float = 2.0) -> Reply:
        """Send one line on the connection and wait (bounded) for its answer."""
        if text is None:
            text = f"session-{next(self._count)}"
        if "\n" in text:
            raise ValueError("text must be one line")
        if self.process.poll() is not None or self.process.stdin is None:
            return Reply(False, error="closed")
        try:
            self.process.stdin.write(json.dumps({"text": text, "timeout": timeout}).encode())
            self.process.stdin.write(b"\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            return Reply(False, error="closed")
        line = self.lines.readline(time.monotonic() + timeout + 2.0)
        return _reply_from_json(line, "session")

    def close(self) -> None:
        """Close the connection and end the probe process (by pid)."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(STOP_TIMEOUT)
        _stop(self.process)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- topology


def _port_spec(ports: Iterable[int]) -> str:
    """[80, 8000, 8001, 8002] -> "80,8000-8002"."""
    ordered = sorted(set(ports))
    parts: list[str] = []
    for _, run in itertools.groupby(enumerate(ordered), lambda pair: pair[1] - pair[0]):
        values = [port for _, port in run]
        parts.append(str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}")
    return ",".join(parts)


def _family(value: int) -> int:
    if value not in (4, 6):
        raise ValueError(f"family must be 4 or 6, not {value!r}")
    return value


class Topology:
    """Namespaces for one host of a model; see the module docstring.

    >>> with Topology(yaml.safe_load(text), "kvm-host") as topo:
    ...     topo.run("host", ["nft", "-f", path])
    ...     topo.serve("app", [3000])
    ...     reply = topo.request("client0", "tcp", topo.host_address(4), 3000)
    """

    def __init__(
        self,
        model: Mapping[str, Any],
        host: str,
        *,
        router: bool = False,
        extra_client_addresses: Mapping[int, Sequence[str]] | None = None,
        bridge_nf_call: bool | None = None,
    ) -> None:
        self.host_name = host
        self.plan = plan_topology(
            model, host, router=router, extra_client_addresses=extra_client_addresses
        )
        self.bridge_nf_call = bridge_nf_call
        self.prefix = f"nff-{os.getpid()}-{next(_counter)}-"
        self.ns: dict[str, str] = {}
        self._created: list[str] = []
        self._processes: list[subprocess.Popen[bytes]] = []
        self._requests = itertools.count()

    # ----- lifecycle

    def __enter__(self) -> Topology:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Build every namespace, link, address and route; cleans up if that fails."""
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop every process started here (by pid), then delete every namespace made."""
        errors: list[str] = []
        for process in self._processes:
            try:
                _stop(process)
            except Exception as exc:  # keep cleaning up
                errors.append(f"pid {process.pid}: {exc}")
        self._processes.clear()
        for name in reversed(self._created):
            done = run_command(["ip", "netns", "delete", name], check=False)
            if done.returncode != 0:
                errors.append(f"netns {name}: {done.stderr.strip()}")
        self._created.clear()
        if errors:
            raise HarnessError("cleanup failed: " + "; ".join(errors))

    # ----- building

    def _add_namespace(self, key: str, role: str, sysctls: Sequence[str] = ()) -> str:
        name = self.prefix + role
        run_command(["ip", "netns", "add", name])
        self._created.append(name)
        self.ns[key] = name
        settings = [
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
            *sysctls,
        ]
        self.run(key, ["sysctl", "-qw", *settings])
        self._ip(key, "link", "set", "dev", "lo", "up")
        return name

    def _ip(self, key: str, *args: str) -> None:
        run_command(["ip", "-n", self.ns[key], *args])

    def _address(self, key: str, interface: IPInterface, device: str) -> None:
        extra = ["nodad"] if interface.version == 6 else []
        self._ip(key, f"-{interface.version}", "addr", "add", str(interface), "dev", device, *extra)

    def _veth(self, key: str, name: str, peer_key: str, peer: str) -> None:
        """A veth pair made in ns ``key`` with its peer created straight in ``peer_key``."""
        self._ip(key, "link", "add", "name", name, "type", "veth", "peer", "name", peer, "netns",
                 self.ns[peer_key])  # fmt: skip

    def _default_routes(self, key: str, via: Iterable[IPInterface]) -> None:
        for gateway in via:
            self._ip(key, f"-{gateway.version}", "route", "add", "default", "via", str(gateway.ip))

    def _build(self) -> None:
        host_sysctls = ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]
        if self.bridge_nf_call is not None:
            value = int(self.bridge_nf_call)
            host_sysctls += [
                f"net.bridge.bridge-nf-call-iptables={value}",
                f"net.bridge.bridge-nf-call-ip6tables={value}",
            ]
        self._add_namespace("host", "host", host_sysctls)
        for bridge in self.plan.bridges:
            self._ip("host", "link", "add", "name", bridge.name, "type", "bridge")
            for interface in bridge.gateway:
                self._address("host", interface, bridge.name)
            self._ip("host", "link", "set", "dev", bridge.name, "up")
        for uplink in self.plan.uplinks:
            self._build_uplink(uplink)
        for guest in self.plan.guests:
            self._build_guest(guest)
        if self.plan.router:
            self._build_router()

    def _build_uplink(self, uplink: UplinkPlan) -> None:
        key = f"client{uplink.index}"
        self._add_namespace(key, key)
        self._veth("host", uplink.name, key, "eth0")
        for interface in uplink.host:
            self._address("host", interface, uplink.name)
        self._ip("host", "link", "set", "dev", uplink.name, "up")
        for interface in uplink.client:
            self._address(key, interface, "eth0")
        self._ip(key, "link", "set", "dev", "eth0", "up")
        firsts = [_of(family, uplink.host)[0] for family in (4, 6)]
        self._default_routes(key, firsts)
        for extra in uplink.extra:
            self._address(key, extra, "lo")
            via = _of(extra.version, uplink.client)[0].ip
            self._ip("host", f"-{extra.version}", "route", "add", str(extra.network), "via",
                     str(via), "dev", uplink.name)  # fmt: skip

    def _build_guest(self, guest: GuestPlan) -> None:
        key = f"guest:{guest.name}"
        self._add_namespace(key, f"guest-{guest.name}")
        self._veth("host", guest.port, key, "eth0")
        self._ip("host", "link", "set", "dev", guest.port, "master", guest.bridge, "up")
        for interface in guest.addresses:
            self._address(key, interface, "eth0")
        self._ip(key, "link", "set", "dev", "eth0", "up")
        bridge = next(b for b in self.plan.bridges if b.name == guest.bridge)
        gateways = bridge.router if guest.via_router else bridge.gateway
        families = {a.version for a in guest.addresses}
        self._default_routes(key, [g for g in gateways if g.version in families])

    def _build_router(self) -> None:
        self._add_namespace("router", "router")
        for index, bridge in enumerate(self.plan.bridges):
            port, inside = f"vr{index}", f"eth{index}"
            self._veth("host", port, "router", inside)
            self._ip("host", "link", "set", "dev", port, "master", bridge.name, "up")
            for interface in bridge.router:
                self._address("router", interface, inside)
            self._ip("router", "link", "set", "dev", inside, "up")

    # ----- addresses

    def host_addresses(self, family: Family, uplink: int = 0) -> list[str]:
        """The host's addresses of ``family`` on uplink ``uplink`` (listed ones first)."""
        return [str(i.ip) for i in _of(_family(family), self.plan.uplinks[uplink].host)]

    def host_address(self, family: Family, uplink: int = 0) -> str:
        """The host's first ``family`` address on uplink ``uplink``."""
        return self.host_addresses(family, uplink)[0]

    def client_address(self, family: Family, uplink: int = 0) -> str:
        """The link address of client ``uplink`` (its default source)."""
        return str(_of(_family(family), self.plan.uplinks[uplink].client)[0].ip)

    def gateway(self, bridge: str, family: Family) -> str:
        """The host's address on ``bridge`` (first address of the subnet)."""
        return self._bridge_address(bridge, family, "gateway")

    def router_address(self, bridge: str, family: Family) -> str:
        """The router's address on ``bridge`` (router=True only)."""
        return self._bridge_address(bridge, family, "router")

    def _bridge_address(self, bridge: str, family: Family, which: str) -> str:
        for plan in self.plan.bridges:
            if plan.name == bridge:
                found = _of(_family(family), getattr(plan, which))
                if found:
                    return str(found[0].ip)
        raise LookupError(f"no IPv{family} {which} address on bridge {bridge!r}")

    def guest_address(self, guest: str, family: Family) -> str:
        """The guest's model address of ``family``."""
        for plan in self.plan.guests:
            found = _of(_family(family), plan.addresses)
            if plan.name == guest and found:
                return str(found[0].ip)
        raise LookupError(f"guest {guest!r} has no IPv{family} address")

    # ----- commands and traffic

    def run(
        self,
        ns_key: str,
        argv: Sequence[str],
        check: bool = True,
        input: str | None = None,
        timeout: float = 10,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the namespace ``ns_key`` (``ip netns exec``)."""
        command = ["ip", "netns", "exec", self.ns[ns_key], *argv]
        return run_command(command, check=check, input=input, timeout=timeout)

    def load_ruleset(self, text: str, ns_key: str = "host") -> None:
        """Load an nft script (one transaction) into a namespace."""
        self.run(ns_key, ["nft", "-f", "-"], input=text)

    def _spawn(self, ns_key: str, script: Path, args: Sequence[str]) -> subprocess.Popen[bytes]:
        command = ["ip", "netns", "exec", self.ns[ns_key], *PYTHON, str(script), *args]
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self._processes.append(process)
        return process

    def serve_in(
        self,
        ns_key: str,
        name: str,
        ports: Iterable[int],
        protos: Sequence[str] = ("tcp", "udp"),
    ) -> ServerHandle:
        """Start one server.py in ``ns_key`` answering as ``name`` on all ``ports``.

        Returns once every port listens (at most READY_TIMEOUT seconds).
        """
        port_list = sorted(set(ports))
        args = ["--name", name, "--ports", _port_spec(port_list), "--protos", ",".join(protos)]
        return ServerHandle(self.start_script(ns_key, SERVER, args), name, port_list)

    def start_script(
        self, ns_key: str, script: Path, args: Sequence[str]
    ) -> subprocess.Popen[bytes]:
        """Start a standard-library script in ``ns_key`` that prints ``READY`` once it
        serves; returns when it has (at most READY_TIMEOUT seconds). The topology stops
        it on close (the benchmark's connection-rate server is one)."""
        process = self._spawn(ns_key, script, args)
        assert process.stdout is not None
        line = _PipeLines(process.stdout.fileno()).readline(time.monotonic() + READY_TIMEOUT)
        if line != "READY":
            _stop(process)
            what = " ".join([script.name, *args])
            raise HarnessError(f"{what} in {ns_key} did not start: {line!r}")
        return process

    def serve(
        self, guest: str, ports: Iterable[int], protos: Sequence[str] = ("tcp", "udp")
    ) -> ServerHandle:
        """Start a server in the guest's namespace answering with the guest's name."""
        return self.serve_in(f"guest:{guest}", guest, ports, protos)

    def _probe_args(self, dst: str, port: int, source: str | None, timeout: float) -> list[str]:
        args = ["--dst", str(dst), "--port", str(port), "--timeout", str(timeout)]
        return [*args, "--source", str(source)] if source else args

    def request(
        self,
        from_ns_key: str,
        proto: str,
        dst: str,
        port: int,
        source: str | None = None,
        timeout: float = 2.0,
        text: str | None = None,
    ) -> Reply:
        """One TCP line or UDP datagram from ``from_ns_key`` to ``dst``:``port``."""
        text = text or f"req-{next(self._requests)}"
        args = ["request", "--proto", proto, *self._probe_args(dst, port, source, timeout)]
        command = [str(PROBE), *args, "--text", text]
        try:
            done = self.run(from_ns_key, [*PYTHON, *command], check=False, timeout=timeout + 5)
        except subprocess.TimeoutExpired:
            return Reply(False, error="timeout")
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            raise HarnessError(f"probe failed in {from_ns_key}: {done.stderr.strip()}")
        return _reply_from_json(lines[-1], "request")

    def open_session(
        self,
        from_ns_key: str,
        dst: str,
        port: int,
        source: str | None = None,
        timeout: float = 2.0,
    ) -> Session:
        """Open a TCP connection held by a probe; raises HarnessError if it fails."""
        args = ["session", *self._probe_args(dst, port, source, timeout)]
        session = Session(self._spawn(from_ns_key, PROBE, args))
        session.opened = _reply_from_json(
            session.lines.readline(time.monotonic() + timeout + 3), "connect"
        )
        if not session.opened.ok:
            session.close()
            raise HarnessError(f"session to {dst}:{port} failed: {session.opened.error}")
        return session


# --------------------------------------------------------------------------- prerequisites


def kernel_test_prerequisites() -> str | None:
    """None when kernel tests can run here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "kernel tests need root"
    for tool in ("ip", "nft", "socat"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    name = f"nff-{os.getpid()}-check"
    checks = [
        ["ip", "netns", "add", name],
        ["ip", "-n", name, "link", "add", "name", "a", "type", "veth", "peer", "name", "b"],
        ["ip", "-n", name, "link", "add", "name", "br", "type", "bridge"],
        ["ip", "netns", "exec", name, "nft", "list", "ruleset"],
        ["socat", "-V"],
    ]
    try:
        for argv in checks:
            run_command(argv, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{' '.join(argv)} failed: {exc}"
    finally:
        run_command(["ip", "netns", "delete", name], check=False)
    return None
