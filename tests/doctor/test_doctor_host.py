"""doctor's host readers and checks, on a fake /proc, /etc and /run tree and on iproute2
output captured from a real namespace (tests/data/doctor/make_fixtures.sh, host-*)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import replace
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_DATA

from nftfwd.doctor.boot import BootUnits, check_nftables_conf, unit_setting
from nftfwd.doctor.findings import Finding
from nftfwd.doctor.hostchecks import (
    HostState,
    Listener,
    check_forwarding,
    check_hairpin,
    check_host,
    check_listeners,
    check_rp_filter,
)
from nftfwd.doctor.run import diagnose
from nftfwd.install import apply_install, install_plan, unit_text
from nftfwd.kernel.hoststate import (
    ProbeError,
    read_boot_units,
    read_links,
    read_listeners,
    read_live_ruleset,
    read_neighbours,
    read_state,
    run_command,
)
from nftfwd.model import Bridge, Forward, Guest, Host, PortRange

DATA = TEST_DATA / "doctor"
COMMANDS = {
    ("ip", "-d", "-j", "addr", "show"): "host-ip-addr.json",
    ("ip", "-j", "neigh", "show"): "host-ip-neigh.json",
    ("ip", "-4", "-j", "route", "show", "default"): "host-ip-route4.json",
    ("ip", "-6", "-j", "route", "show", "default"): "host-ip-route6.json",
    ("bridge", "-j", "fdb", "show", "br", "virbr0"): "host-fdb-virbr0.json",
}
DEBIAN_CONF = """#!/usr/sbin/nft -f

flush ruleset

table inet filter {
\tchain input {
\t\ttype filter hook input priority filter;
\t}
\tchain forward {
\t\ttype filter hook forward priority filter;
\t}
\tchain output {
\t\ttype filter hook output priority filter;
\t}
}
"""
LIBVIRT_XML = """<network>
  <name>{name}</name>
  <uuid>5c5d2bd1-3a1b-4c5e-9c55-0ac8c06f0d11</uuid>
  <forward mode='nat'/>
  <bridge name='{bridge}' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'/>
</network>
"""


def fake_run(argv: Sequence[str]) -> str:
    name = COMMANDS.get(tuple(argv))
    if name is None:
        raise ProbeError(f"unexpected command {argv}")
    return (DATA / name).read_text()


def fw(port: int, to: int, path: str, **changes: Any) -> Forward:
    forward = Forward(
        PortRange(port, port), PortRange(to, to), ("tcp",), (), None, False, path, None
    )
    return replace(forward, **changes)


def guest(name: str, last: int, *forwards: Forward, v6: bool = False) -> Guest:
    return Guest(
        name,
        ip_address(f"192.168.122.{last}"),  # type: ignore[arg-type]
        ip_address(f"fd00:122::{last}") if v6 else None,  # type: ignore[arg-type]
        forwards,
    )


def lab_host(*, v6: bool = False, hairpin: bool = True) -> Host:
    """The namespace make_fixtures.sh builds, as a model: one uplink (eno3) and one bridge
    (virbr9) that do not exist, virbr1 down, guests answering, missing, misplaced."""
    base = "hosts.lab.bridges.virbr0.guests"
    virbr0 = Bridge(
        "virbr0",
        ip_network("192.168.122.0/24"),  # type: ignore[arg-type]
        ip_network("fd00:122::/64") if v6 else None,  # type: ignore[arg-type]
        True,
        (
            guest("centos", 133, fw(2222, 22, f"{base}.centos.forwards[0]"), v6=v6),
            guest("web", 140, fw(8080, 80, f"{base}.web.forwards[0]")),
            guest("ghost", 134, fw(2224, 22, f"{base}.ghost.forwards[0]")),
            guest("lost", 135),
        ),
    )
    virbr1 = Bridge("virbr1", ip_network("10.0.1.0/24"), None, True, ())  # type: ignore[arg-type]
    virbr9 = Bridge("virbr9", ip_network("10.0.9.0/24"), None, True, ())  # type: ignore[arg-type]
    return Host("lab", ("eno1", "eno2", "eno3"), (), hairpin, (virbr0, virbr1, virbr9))


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A fake sys_root: sysctls of a host that forwards nothing, listeners, libvirt XML."""
    sysctls = {
        "net/ipv4/ip_forward": "0",
        "net/ipv6/conf/all/forwarding": "0",
        "net/ipv6/conf/eno1/accept_ra": "1",
        "net/ipv6/conf/eno2/accept_ra": "0",
        "net/ipv4/conf/all/rp_filter": "1",
        "net/ipv4/conf/eno1/rp_filter": "0",
        "net/ipv4/conf/eno2/rp_filter": "0",
        "net/bridge/bridge-nf-call-iptables": "1",
        "net/bridge/bridge-nf-call-ip6tables": "0",
    }
    for rel, value in sysctls.items():
        write(tmp_path, f"proc/sys/{rel}", value + "\n")
    for name in ("tcp", "tcp6", "udp", "udp6"):
        write(tmp_path, f"proc/net/{name}", (DATA / f"host-proc-net-{name}").read_text())
    write(
        tmp_path,
        "etc/libvirt/qemu/networks/default.xml",
        LIBVIRT_XML.format(name="default", bridge="virbr0"),
    )
    status = (
        "<networkstatus>\n"
        + LIBVIRT_XML.format(name="isolated", bridge="virbr9")
        + "</networkstatus>"
    )
    write(tmp_path, "run/libvirt/network/isolated.xml", status)
    write(tmp_path, "etc/nftables.conf", DEBIAN_CONF)
    return tmp_path


def ids(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(f.id, f.subject) for f in findings]


def commands(finding: Finding) -> list[str]:
    return [line for line in finding.fix.splitlines() if not line.startswith("#")]


# --- reading ------------------------------------------------------------------------------


def test_links_from_ip_json() -> None:
    links = read_links(fake_run)
    assert links["virbr0"].kind == "bridge" and links["virbr0"].up
    assert links["virbr0"].addresses[0] == ip_address("192.168.122.1")
    assert (links["vnet0"].master, links["vnet0"].hairpin) == ("virbr0", False)
    assert links["vnet1"].hairpin is True
    assert links["eno1"].hairpin is None
    assert not links["virbr1"].up


def test_neighbours_from_ip_json() -> None:
    by_address = {str(n.address): n for n in read_neighbours(fake_run)}
    assert by_address["192.168.122.133"].usable
    assert by_address["192.168.122.133"].lladdr == "52:54:00:00:01:33"
    assert by_address["192.168.122.134"].states == ("FAILED",)
    assert by_address["192.168.122.135"].dev == "eno1"


def test_listeners_from_proc_net(root: Path) -> None:
    assert set(read_listeners(str(root))) == {
        Listener("tcp", ip_address("0.0.0.0"), 2222),
        Listener("tcp", ip_address("127.0.0.1"), 8080),
        Listener("tcp", ip_address("::"), 5432),
        Listener("udp", ip_address("0.0.0.0"), 2223),
    }


def test_state_reads_libvirt_networks_and_br_netfilter(root: Path) -> None:
    state = read_state(lab_host(), sys_root=str(root), run=fake_run)
    assert state.libvirt_networks == {"virbr0": "default", "virbr9": "isolated"}
    assert state.bridged == ("ip",)
    assert state.fdb["virbr0"]["52:54:00:00:01:33"] == "vnet0"
    assert state.default_devs == frozenset({"eno1"})


def test_run_command_failures_are_errors_not_tracebacks() -> None:
    with pytest.raises(ProbeError):
        run_command(["false"])
    with pytest.raises(ProbeError):
        run_command(["/nonexistent/nftfwd-test"])


# --- each check -----------------------------------------------------------------------------


def test_forwarding_sysctls(root: Path) -> None:
    def check(host: Host) -> list[Finding]:
        return check_forwarding(host, read_state(host, sys_root=str(root), run=fake_run))

    host = lab_host(v6=True)
    found = check(host)
    assert [f.id for f in found] == ["ipv4-forwarding-off", "ipv6-forwarding-off"]
    # nftfwd's own way first; by hand, the same setting in the file it writes
    assert commands(found[0]) == ["nftfwd load --enable-forwarding"]
    assert found[0].fix.splitlines()[2:] == [
        "#   sysctl -w net.ipv4.ip_forward=1",
        "#   printf 'net.ipv4.ip_forward = 1\\n' >> /etc/sysctl.d/90-nftfwd.conf",
    ]
    # accept_ra=2 first on the SLAAC uplink, so it keeps its address when forwarding starts
    assert found[1].fix.splitlines()[2:4] == [
        "#   sysctl -w net.ipv6.conf.eno1.accept_ra=2",
        "#   sysctl -w net.ipv6.conf.all.forwarding=1",
    ]
    write(root, "proc/sys/net/ipv4/ip_forward", "1\n")
    assert [f.id for f in check(lab_host())] == []
    shutil.rmtree(root / "proc/sys/net/ipv6")
    (f,) = check(host)
    assert f.message.startswith("IPv6 is disabled on this host")


def test_hairpin_mode_only_matters_with_br_netfilter(root: Path) -> None:
    state = read_state(lab_host(), sys_root=str(root), run=fake_run)
    found = check_hairpin(lab_host(), state)
    assert ids(found) == [("hairpin-mode-off", "bridge port vnet0 of virbr0 (guest centos)")]
    assert commands(found[0]) == ["bridge link set dev vnet0 hairpin on"]
    assert check_hairpin(lab_host(), replace(state, bridged=())) == []
    assert check_hairpin(lab_host(hairpin=False), state) == []


def test_rp_filter_strict_on_an_uplink_without_the_default_route() -> None:
    values = {"all": "1", "eno1": "0", "eno2": "0"}

    def check() -> list[Finding]:
        sysctls = {f"net/ipv4/conf/{dev}/rp_filter": value for dev, value in values.items()}
        return check_rp_filter(lab_host(), HostState({}, default_devs=frozenset({"eno1"}),
                                                     sysctls=sysctls))  # fmt: skip

    found = check()
    assert ids(found) == [("rp-filter-strict", "uplink eno2")]  # eno3 does not exist
    assert commands(found[0])[0] == "sysctl -w net.ipv4.conf.eno2.rp_filter=2"
    values["all"] = "2"  # loose wins: the effective value is the larger one
    assert check() == []
    values["all"], values["eno2"] = "0", "1"
    assert ids(check()) == [("rp-filter-strict", "uplink eno2")]


@pytest.mark.parametrize(
    ("forward", "host_addresses", "expected"),
    [
        (fw(2222, 22, "f"), (), ["tcp 0.0.0.0:2222"]),  # wildcard listener, any host address
        (fw(8080, 80, "f"), (), []),  # only on 127.0.0.1
        (fw(2223, 22, "f"), (), []),  # udp listener, tcp forward
        (fw(2223, 22, "f", protos=("udp",)), (), ["udp 0.0.0.0:2223"]),
        (fw(5432, 5432, "f"), ("203.0.113.10",), ["tcp [::]:5432"]),  # :: takes every address
        (
            replace(fw(2220, 22, "f"), port=PortRange(2220, 2230), to=PortRange(20, 30)),
            (),
            ["tcp 0.0.0.0:2222"],
        ),  # a range
    ],
)
def test_local_listener_on_a_forwarded_port(
    root: Path, forward: Forward, host_addresses: tuple[str, ...], expected: list[str]
) -> None:
    host = lab_host()
    bridge = replace(host.bridges[0], guests=(guest("g", 9, forward),))
    addresses = tuple(ip_address(a) for a in host_addresses)
    host = replace(host, bridges=(bridge,), addresses=addresses)
    state = HostState({}, listeners=read_listeners(str(root)))
    found = check_listeners(host, state)
    assert [f.subject for f in found] == expected
    assert all(f.id == "local-listener" for f in found)


def test_flush_ruleset_in_nftables_conf_and_its_fix_runs(root: Path) -> None:
    path = root / "etc/nftables.conf"
    (f,) = check_nftables_conf(str(path), path.read_text())
    assert (f.id, f.subject, f.severity) == ("flush-ruleset-on-boot", str(path), "warning")
    install, sed, check = commands(f)
    assert install == "nftfwd install"
    subprocess.run(["sh", "-c", sed], check=True)
    text = path.read_text()
    assert "flush ruleset" not in text
    assert "\ntable inet filter\ndelete table inet filter\n" in text
    assert check_nftables_conf(str(path), text) == []
    if shutil.which("unshare") and shutil.which("nft"):
        done = subprocess.run(["unshare", "-Urn", "sh", "-c", check], capture_output=True)
        if done.returncode != 0 and b"Operation not permitted" not in done.stderr:
            pytest.fail(done.stderr.decode())


@pytest.mark.parametrize(
    "text", [None, "table inet filter {}\n", "# flush ruleset\n", "  #flush ruleset\n"]
)
def test_no_flush_no_finding(text: str | None) -> None:
    assert check_nftables_conf("/etc/nftables.conf", text) == []


# --- what brings nftfwd's table back after the flush ---------------------------------------

INSTALLED = unit_text(nftfwd_bin="/usr/bin/nftfwd", table="nftfwd")
OLD_UNIT = INSTALLED.replace("ReloadPropagatedFrom=nftables.service\n", "")


@pytest.mark.parametrize(
    ("boot", "severity", "says"),
    [
        # stock Debian 12 and 13: nftables.service is installed but not enabled
        (BootUnits(), "warning", "nftables.service is not enabled"),
        (BootUnits(nftables_enabled=True), "error", "after the next boot"),
        (BootUnits(True, INSTALLED, False), "error", "no enabled nftfwd unit"),
        (BootUnits(True, OLD_UNIT, True), "warning", "older installs lack the second"),
        (BootUnits(False, INSTALLED, False), "warning", "nftfwd.service is not enabled"),
        (BootUnits(True, INSTALLED, True), "note", "`systemctl reload nftfwd`"),
        (BootUnits(False, INSTALLED, True), "note", "ReloadPropagatedFrom"),
    ],
)
def test_flush_weighs_what_brings_nftfwds_table_back(
    boot: BootUnits, severity: str, says: str
) -> None:
    (f,) = check_nftables_conf("/etc/nftables.conf", DEBIAN_CONF, boot)
    assert (f.id, f.severity) == ("flush-ruleset-on-boot", severity)
    assert says in f.message, f.message
    assert ("nftfwd install" in commands(f)) == (severity != "note")


def test_unit_settings_add_up_and_an_empty_one_resets() -> None:
    text = "[Unit]\nPartOf=a.service\nPartOf=b.service c.service\n[Service]\nPartOf=x\n"
    assert unit_setting(text, "Unit", "PartOf") == ["a.service", "b.service", "c.service"]
    drop_in = text + "\n[Unit]\nPartOf=\n"
    assert unit_setting(drop_in, "Unit", "PartOf") == []
    assert not BootUnits(True, OLD_UNIT + "[Unit]\nPartOf=\n", True).nftfwd_follows("PartOf")


def test_boot_units_read_from_a_tree_nftfwd_install_wrote(tmp_path: Path) -> None:
    assert read_boot_units(str(tmp_path)) == BootUnits()  # stock Debian: nothing enabled
    model = tmp_path / "model.yaml"
    model.write_text("version: 1\nhosts:\n  kvm1:\n    uplinks: [eth0]\n")
    plan = install_plan(root=tmp_path, model_path=model, nftfwd_bin="/usr/bin/nftfwd",
                        table="nftfwd", libvirt_hook=False)  # fmt: skip
    apply_install(plan)
    wants = tmp_path / "etc/systemd/system/sysinit.target.wants"
    wants.mkdir(parents=True)
    (wants / "nftables.service").symlink_to("/lib/systemd/system/nftables.service")
    found = read_boot_units(str(tmp_path))
    assert (found.nftables_enabled, found.nftfwd_unit, found.nftfwd_enabled) == (
        True, INSTALLED, False)  # fmt: skip
    assert found.nftfwd_follows("PartOf") and found.nftfwd_follows("ReloadPropagatedFrom")
    # `systemctl enable nftfwd` links it where its [Install] says
    (tmp_path / "etc/systemd/system/multi-user.target.wants").mkdir()
    (tmp_path / "etc/systemd/system/multi-user.target.wants/nftfwd.service").symlink_to(
        "/etc/systemd/system/nftfwd.service"
    )
    assert read_boot_units(str(tmp_path)).nftfwd_enabled
    # a drop-in is read after the unit; a masked nftables.service is not enabled
    write(tmp_path, "etc/systemd/system/nftfwd.service.d/local.conf", "[Unit]\nPartOf=\n")
    (tmp_path / "etc/systemd/system/nftables.service").symlink_to("/dev/null")
    found = read_boot_units(str(tmp_path))
    assert not found.nftables_enabled and not found.nftfwd_follows("PartOf")


def test_a_packaged_unit_is_found_where_systemd_looks(tmp_path: Path) -> None:
    write(tmp_path, "usr/lib/systemd/system/nftfwd.service", INSTALLED)
    write(tmp_path, "lib/systemd/system/nftfwd.service", "[Unit]\n")
    assert read_boot_units(str(tmp_path)).nftfwd_unit == INSTALLED


# --- together ------------------------------------------------------------------------------


def test_check_host_reports_everything_in_a_stable_order(root: Path) -> None:
    conf = str(root / "etc/nftables.conf")
    state = read_state(lab_host(), sys_root=str(root), nftables_conf=conf, run=fake_run)
    found = check_host(lab_host(), state)
    assert ids(found) == [
        ("ipv4-forwarding-off", "net.ipv4.ip_forward"),
        ("uplink-missing", "uplink eno3"),
        ("bridge-missing", "bridge virbr9"),
        ("link-down", "interface virbr1"),
        ("local-listener", "tcp 0.0.0.0:2222"),
        ("neighbour-elsewhere", "guest lost (192.168.122.135)"),
        ("guest-absent", "guest ghost (192.168.122.134)"),
        ("hairpin-mode-off", "bridge port vnet0 of virbr0 (guest centos)"),
        ("rp-filter-strict", "uplink eno2"),
        ("flush-ruleset-on-boot", str(root / "etc/nftables.conf")),
    ]
    # each weighed: a forward fails now (error), or a risk that waits for an admin (warning)
    assert {f.id: f.severity for f in found} == {
        "ipv4-forwarding-off": "error",
        "uplink-missing": "error",
        "bridge-missing": "error",
        "link-down": "error",
        "local-listener": "warning",  # the forward works; the local service is shadowed
        "neighbour-elsewhere": "error",
        "guest-absent": "error",
        "hairpin-mode-off": "error",
        "rp-filter-strict": "error",
        "flush-ruleset-on-boot": "warning",  # nftables.service is not enabled there
    }
    by_id = {f.id: f for f in found}
    assert commands(by_id["bridge-missing"]) == [
        "virsh net-start isolated",
        "virsh net-autostart isolated",
    ]
    assert commands(by_id["link-down"]) == ["ip link set dev virbr1 up"]
    assert "answers on eno1, not on virbr0" in by_id["neighbour-elsewhere"].message
    assert "(FAILED)" in by_id["guest-absent"].message
    assert found == check_host(lab_host(), state)


def test_diagnose_combines_host_and_ruleset(root: Path) -> None:
    """The libvirt network's name comes from libvirt's XML into the ruleset finding's fix."""
    ruleset = json.loads((DATA / "libvirt-iptables.json").read_text())
    text = (DATA / "libvirt-iptables.ruleset.txt").read_text()
    host = lab_host()
    host = replace(host, uplinks=("eno1",), bridges=host.bridges[:1])
    for rel, value in [("net/ipv4/ip_forward", "1"), ("net/ipv4/conf/all/rp_filter", "2")]:
        write(root, f"proc/sys/{rel}", value)
    (root / "etc/nftables.conf").unlink()
    conf = str(root / "etc/nftables.conf")
    state = read_state(host, sys_root=str(root), nftables_conf=conf, run=fake_run)
    found = diagnose(host, "nftfwd", ruleset, state, ruleset_text=text)
    assert ids(found) == [
        ("foreign-chain-rejects", "table ip filter, chain LIBVIRT_FWI, rule 2 (handle 15)"),
        ("local-listener", "tcp 0.0.0.0:2222"),
        ("neighbour-elsewhere", "guest lost (192.168.122.135)"),
        ("guest-absent", "guest ghost (192.168.122.134)"),
        ("hairpin-mode-off", "bridge port vnet0 of virbr0 (guest centos)"),
    ]
    assert "virsh net-edit default" in found[0].fix


LISTING = {"nftables": [{"metainfo": {"version": "1.0.6"}}]}


class FakeNft:
    """Stands in for nftfwd.kernel.libnft.Nft."""

    def __init__(self) -> None:
        self.skipped: list[tuple[str, str] | None] = []

    def list_ruleset_parts(self, outline_only: tuple[str, str] | None = None) -> dict[str, Any]:
        self.skipped.append(outline_only)
        return LISTING

    def list_ruleset_text(self, skip: tuple[str, str] | None = None) -> str:
        self.skipped.append(skip)
        return "table inet x { # handle 1\n}\n"


def test_read_live_ruleset_takes_json_and_text() -> None:
    fake = FakeNft()
    listing, text = read_live_ruleset(fake, own_table="nftfwd")  # type: ignore[arg-type]
    assert (listing, text) == (LISTING, "table inet x { # handle 1\n}\n")
    assert fake.skipped == [("inet", "nftfwd"), ("inet", "nftfwd")]  # its maps are not read
