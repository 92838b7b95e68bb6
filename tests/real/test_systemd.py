"""nftfwd beside real systemd: a Debian 13 root booted with systemd-nspawn, `nftfwd install`
run there, Debian's stock /etc/nftables.conf (`flush ruleset`) and nftables.service enabled.

The tests run in file order on one container (module fixtures): install in the root as a
chroot (systemd not running), boot, install with systemd, then reboot, restarts and
reloads of nftables and nftfwd, stop, the libvirt hook's messages in the real journal and
its lock, and uninstall.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from booted import Booted, Monitor, enter, make_root, wait_for

pytestmark = pytest.mark.kernel

MODEL = (Path(__file__).parents[1] / "data" / "real" / "box.yaml").read_text()
# The model's uplink and bridge, made at every boot before nftfwd loads (a veth: this
# kernel has no dummy links).
NET_UNIT = """\
[Unit]
Description=The test model's uplink (a veth) and bridge
DefaultDependencies=no
Before=network-pre.target nftfwd.service
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/ip link add up0 type veth peer name up0p
ExecStart=/usr/sbin/ip addr add 203.0.113.1/24 dev up0
ExecStart=/usr/sbin/ip link set up0 up
ExecStart=/usr/sbin/ip link add br0 type bridge
ExecStart=/usr/sbin/ip addr add 192.168.122.1/24 dev br0
ExecStart=/usr/sbin/ip link set br0 up

[Install]
WantedBy=multi-user.target
"""
# What libvirt gives a hook: no NFTFWD_* variables.
LIBVIRT_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME=/root", "LC_ALL=C"]  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("systemd") / "root"
    started = time.monotonic()
    make_root(directory)
    (directory / "etc/systemd/system/nftfwd-test-net.service").write_text(NET_UNIT)
    (directory / "root/model.yaml").write_text(MODEL)
    enter(directory, "systemctl", "enable", "nftables.service", "nftfwd-test-net.service")
    print(f"root made in {time.monotonic() - started:.1f} s")
    yield directory
    started = time.monotonic()
    shutil.rmtree(directory, ignore_errors=True)
    print(f"root removed in {time.monotonic() - started:.1f} s")


@pytest.fixture(scope="module")
def box(root: Path) -> Iterator[Booted]:
    booted = Booted(root, root.parent / "nspawn.log")
    try:
        started = time.monotonic()
        booted.boot()
        print(f"booted in {time.monotonic() - started:.1f} s")
        yield booted
    finally:
        started = time.monotonic()
        booted.shutdown()
        print(f"shut down in {time.monotonic() - started:.1f} s")


def table_handle(box: Booted, name: str = "nftfwd") -> int | None:
    """The handle of table inet NAME, or None: a table deleted and added again (by a
    flush of the ruleset and a reload) comes back with a new handle."""
    listed = json.loads(box.run("nft", "-j", "list", "tables").stdout)["nftables"]
    for item in listed:
        table = item.get("table")
        if table and table["family"] == "inet" and table["name"] == name:
            return int(table["handle"])
    return None


def tables(box: Booted) -> list[str]:
    return box.run("nft", "list", "tables").stdout.splitlines()


def loaded(box: Booted) -> int:
    """Wait until nftfwd.service is active with its table in place; the table's handle."""
    wait_for(
        "nftfwd.service active with table inet nftfwd",
        lambda: (
            box.run("systemctl", "is-active", "nftfwd", check=False).stdout.strip() == "active"
            and table_handle(box) is not None
        ),
    )
    handle = table_handle(box)
    assert handle is not None
    return handle


def test_install_in_the_root_as_a_chroot_is_done_in_part(root: Path) -> None:
    """No systemd runs in a chroot (as in an image build): the files go in place, the
    unit is enabled offline, nothing is loaded, and the output says what is left; exit 1."""
    result = enter(root, "nftfwd", "install", "/root/model.yaml", check=False)
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        "wrote /etc/systemd/system/nftfwd.service: systemd unit: loads the model at boot and "
        "when nftables.service restarts",
        "wrote /etc/nftfwd/nftfwd.yaml: the model the unit loads (copy of /root/model.yaml)",
        "wrote /etc/libvirt/hooks/network: libvirt network hook; libvirt is not installed: "
        "in place for when it is",
    ]
    assert result.stderr.endswith(
        "done in part: systemd is not running here (no /run/systemd/system: a chroot, or an "
        "image being built): nftfwd.service is enabled and loads the model at boot, but "
        "nothing was loaded now.\nstill to do:\n"
        "  load the rules now, on the system that forwards: /usr/local/bin/nftfwd load "
        "--atomic /etc/nftfwd/nftfwd.yaml\n"
    )
    units = root / "etc/systemd/system"
    assert sorted(p.name for p in units.iterdir() if (p / "nftfwd.service").is_symlink()) == [
        "multi-user.target.wants",
        "nftables.service.wants",
    ]


def test_the_first_boot_loads_the_table(box: Booted) -> None:
    """What the chroot's install enabled loads the model at the first boot."""
    loaded(box)


def test_install_enables_the_unit_and_loads_the_table(box: Booted) -> None:
    result = box.run("nftfwd", "install", "/root/model.yaml", check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(
        "enabled nftfwd.service; it loads the model now and at every boot.\n"
    )
    assert box.run("systemctl", "is-enabled", "nftfwd").stdout.strip() == "enabled"
    loaded(box)
    listed = box.run("nft", "list", "map", "inet", "nftfwd", "dnat_port_any4").stdout
    assert "tcp . 8080 : 80" in listed


def test_the_unit_passes_systemd_analyze_verify(box: Booted) -> None:
    result = box.run("systemd-analyze", "verify", "/etc/systemd/system/nftfwd.service", check=False)
    assert result.returncode == 0, result.stderr
    assert "nftfwd" not in result.stderr, result.stderr


def test_the_table_is_loaded_after_a_reboot(box: Booted) -> None:
    loaded(box)
    box.shutdown()
    started = time.monotonic()
    box.boot()
    handle = loaded(box)
    print(f"rebooted, table loaded in {time.monotonic() - started:.1f} s")
    # nftables.service ran first (its flush would have deleted a table loaded before it).
    assert "table inet filter" in tables(box)
    assert handle is not None
    log = box.run("journalctl", "-b", "-u", "nftables", "-u", "nftfwd", "-o", "cat").stdout
    assert "applied; the last good ruleset is kept in /var/lib/nftfwd/last-good.json." in log


@pytest.mark.parametrize("operation", ["restart", "reload"])
def test_nftables_flushing_the_ruleset_brings_the_table_back(box: Booted, operation: str) -> None:
    """Debian's nftables.conf starts with `flush ruleset`: every table goes, nftfwd's
    too; PartOf= (restart) and ReloadPropagatedFrom= (reload) bring it back."""
    before = loaded(box)
    box.run("systemctl", operation, "nftables")
    wait_for(
        f"table inet nftfwd again after `systemctl {operation} nftables`",
        lambda: table_handle(box) not in (None, before),
    )
    loaded(box)
    assert "table inet filter" in tables(box)


def flush_finding(box: Booted) -> str:
    """The severity doctor gives Debian's `flush ruleset` in /etc/nftables.conf."""
    done = box.run("nftfwd", "doctor", "--format", "json", check=False)
    assert done.returncode in (0, 1), done.stderr
    (severity,) = [f["severity"] for f in json.loads(done.stdout)["findings"]
                   if f["id"] == "flush-ruleset-on-boot"]  # fmt: skip
    return str(severity)


def test_without_reload_propagation_a_reload_of_nftables_loses_the_table(box: Booted) -> None:
    """The negative control of the test above, and what doctor says of each unit: the unit
    `install` writes follows nftables.service (a note); one without
    ReloadPropagatedFrom=, as older installs wrote it, loses every forward at `systemctl
    reload nftables` (a warning)."""
    unit = "/etc/systemd/system/nftfwd.service"
    loaded(box)
    assert flush_finding(box) == "note"
    original = box.run("cat", unit).stdout
    box.run("sed", "-i", "/^ReloadPropagatedFrom=/d", unit)
    try:
        box.run("systemctl", "daemon-reload")
        loaded(box)
        assert flush_finding(box) == "warning"
        box.run("systemctl", "reload", "nftables")
        time.sleep(2)  # what would bring the table back has had its time
        assert table_handle(box) is None
    finally:
        box.run("sh", "-c", f"cat > {unit}", input=original)
        box.run("systemctl", "daemon-reload")
        box.run("systemctl", "restart", "nftfwd")
    loaded(box)


def test_reload_nftfwd_is_one_transaction(box: Booted) -> None:
    """A changed model shows after `systemctl reload nftfwd`, and the kernel saw one
    transaction (one new generation) that replaced the table."""
    loaded(box)
    box.run(
        "sh", "-c", "cat > /etc/nftfwd/nftfwd.yaml",
        input=MODEL + "              - {port: 8443, to: 443}\n",
    )  # fmt: skip
    monitor = Monitor(box)
    try:
        box.run("systemctl", "reload", "nftfwd")
        events = monitor.probe(timeout=10)  # what the reload did, then the probe
    finally:
        monitor.stop()
    assert events is not None
    generations = [e for e in events if e.startswith("# new generation")]
    assert len(generations) == 2, events  # nftfwd's reload, then the closing probe
    assert generations[0].endswith("(nftfwd)"), generations
    reload = events[: events.index(generations[0])]
    assert "delete table inet nftfwd" in reload
    assert "add element inet nftfwd dnat_port_any4 { tcp . 8443 : 443 }" in reload
    listed = box.run("nft", "list", "map", "inet", "nftfwd", "dnat_port_any4").stdout
    assert "tcp . 8443 : 443" in listed and "tcp . 8080 : 80" in listed


def test_stop_removes_nftfwds_table_and_nothing_else(box: Booted) -> None:
    loaded(box)
    box.run(
        "nft",
        "add table inet admin; add chain inet admin input { type filter hook input priority 10; }; "
        "add table ip other",
    )
    before = tables(box)
    box.run("systemctl", "stop", "nftfwd")
    assert tables(box) == [t for t in before if t != "table inet nftfwd"]
    assert "table inet admin" in before and "table ip other" in before
    box.run("systemctl", "start", "nftfwd")
    loaded(box)


def test_the_hook_logs_whole_messages_to_the_journal(box: Booted) -> None:
    """The hook as libvirt runs it (its environment, the script `nftfwd install` wrote):
    each message is one journal entry with its priority, newlines kept."""
    loaded(box)
    cursor = box.run("journalctl", "-n", "0", "--show-cursor", "-q").stdout.split()[-1]
    result = box.run(
        "env", "-i", *LIBVIRT_ENV, "/etc/libvirt/hooks/network", "default", "started", "begin",
        "-", input="<network><name>default</name></network>\n",
    )  # fmt: skip
    assert result.returncode == 0
    entries = hook_entries(box, cursor)
    assert entries[0][0] == "6", entries
    assert entries[0][1].startswith(
        "libvirt network default started begin: reloaded /etc/nftfwd/nftfwd.yaml (exit 0)\n"
        "host box, table inet nftfwd: no changes\n"
    )
    # doctor's findings at their severity (err 3, warning 4), each with its fix of several
    # lines in the same entry.
    findings = [
        m
        for p, m in entries[1:]
        if (p, m.split(" ", 2)[:2]) in (("3", ["doctor", "error"]), ("4", ["doctor", "warning"]))
    ]
    assert any("\nFix:\n" in m and m.count("\n") >= 3 for m in findings), entries
    assert result.stderr.startswith("nftfwd: libvirt network default started begin: reloaded")


def test_the_hook_does_not_wait_while_a_load_holds_the_lock(box: Booted) -> None:
    loaded(box)
    box.run(
        "systemd-run", "--unit=nftfwd-test-lock", "--collect",
        "flock", "/var/lib/nftfwd/lock", "sleep", "300",
    )  # fmt: skip
    try:
        wait_for(
            "the lock held",
            lambda: (
                box.run("flock", "-n", "/var/lib/nftfwd/lock", "true", check=False).returncode != 0
            ),
        )
        cursor = box.run("journalctl", "-n", "0", "--show-cursor", "-q").stdout.split()[-1]
        started = time.monotonic()
        result = box.run(
            "env", "-i", *LIBVIRT_ENV, "/etc/libvirt/hooks/network", "default", "started",
            "begin", "-", input="<network/>\n", timeout=60,
        )  # fmt: skip
        took = time.monotonic() - started
    finally:
        box.run("systemctl", "stop", "nftfwd-test-lock")
    assert result.returncode == 0
    assert took < 10, took
    [(priority, message)] = hook_entries(box, cursor)
    assert priority == "4"
    assert message.startswith(
        "libvirt network default started begin: not reloaded: another nftfwd run holds the "
        "lock /var/lib/nftfwd/lock."
    )


def test_install_says_what_is_left_when_the_unit_fails_to_start(box: Booted) -> None:
    """The files are in place but the load fails (here: the state directory is a file):
    install reports systemd's error and what to do, exit 1; nothing is half-written."""
    loaded(box)
    box.run("systemctl", "stop", "nftfwd")
    box.run("sh", "-c", "mv /var/lib/nftfwd /var/lib/nftfwd.away && touch /var/lib/nftfwd")
    try:
        result = box.run("nftfwd", "install", check=False)  # the model in /etc/nftfwd
    finally:
        box.run("sh", "-c", "rm /var/lib/nftfwd && mv /var/lib/nftfwd.away /var/lib/nftfwd")
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(
        "done in part: the files are in place, but `systemctl enable --now nftfwd.service` failed: "
    ), result.stderr
    assert result.stderr.endswith(
        "still to do:\n"
        "  see why: systemctl status nftfwd.service; journalctl -u nftfwd.service\n"
        "  then: systemctl daemon-reload && systemctl enable --now nftfwd.service\n"
    )
    log = box.run("journalctl", "-u", "nftfwd", "-n", "20", "-o", "cat").stdout
    assert "cannot use the state directory /var/lib/nftfwd" in log
    # The failed start counts toward systemd's start rate limit, which the many restarts
    # of this container's tests can reach within its 10 s window.
    box.run("systemctl", "reset-failed", "nftfwd")
    box.run("systemctl", "restart", "nftfwd")
    loaded(box)


def test_uninstall_disables_the_unit_and_removes_only_nftfwds_table(box: Booted) -> None:
    loaded(box)
    before = tables(box)
    result = box.run("nftfwd", "uninstall", check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "removed table inet nftfwd.",
        "removed /etc/systemd/system/nftfwd.service",
        "removed /etc/libvirt/hooks/network",
    ]
    assert tables(box) == [t for t in before if t != "table inet nftfwd"]
    state = box.run("systemctl", "is-enabled", "nftfwd", check=False).stdout.strip()
    assert state in ("", "not-found"), state
    assert box.run("test", "-f", "/etc/nftfwd/nftfwd.yaml", check=False).returncode == 0
    # After a restart of nftables nothing brings the table back.
    box.run("systemctl", "restart", "nftables")
    time.sleep(2)
    assert table_handle(box) is None


def hook_entries(box: Booted, cursor: str) -> list[tuple[str, str]]:
    """The hook's journal entries after `cursor`: (PRIORITY, MESSAGE). The unit's own
    output has the same tag but comes through stdout, not the native protocol."""
    out = box.run(
        "journalctl", "--after-cursor", cursor, "-t", "nftfwd", "_TRANSPORT=journal",
        "-o", "json", "--output-fields=PRIORITY,MESSAGE",
    ).stdout  # fmt: skip
    return [(e["PRIORITY"], e["MESSAGE"]) for e in map(json.loads, out.splitlines())]
