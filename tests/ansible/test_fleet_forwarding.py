"""nftfwd.fleet.nftfwd's enable_forwarding on three hypervisors (network namespaces), each
with its own /etc/sysctl.d (fleet's own_sysctl_d), so that the file `nftfwd load
--enable-forwarding` writes stays in the test's directories: check mode, the load, a
second run, and a host with forwarding off loaded without it. fail_on_findings, the
failing side, is in test_fleet_module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet import HOSTS, PLAYBOOKS, Fleet, fleet, fleet_model, write_model

pytestmark = pytest.mark.kernel

APPLY = PLAYBOOKS / "apply.yml"
TASK = "Apply each host's part of the model"
FORWARD = "net.ipv4.ip_forward"  # the models here are IPv4 only: the one sysctl they need
MACHINE_SYSCTL_D = Path("/etc/sysctl.d")
WRITTEN = (  # compiler/kernel/forwarding.py's file for an IPv4 host
    "# Written by nftfwd load --enable-forwarding.\n"
    "# forward IPv4 to the guests\n"
    "net/ipv4/ip_forward = 1\n"
)


def snapshot(directory: Path) -> dict[str, tuple[int, int, str]]:
    """Every entry (not followed, a link is its target) with its inode and mtime, and the
    directory's own mtime, which a file written and renamed away would move too."""
    entries: dict[str, tuple[int, int, str]] = {}
    stat = directory.stat()
    entries["."] = (stat.st_ino, stat.st_mtime_ns, "")
    for entry in sorted(directory.iterdir()):
        stat = entry.lstat()
        content = os.readlink(entry) if entry.is_symlink() else entry.read_text()
        entries[entry.name] = (stat.st_ino, stat.st_mtime_ns, content)
    return entries


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Fleet]:
    machine = snapshot(MACHINE_SYSCTL_D)
    machine_forward = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    with fleet(tmp_path, own_sysctl_d=True) as made:
        yield made
        etc = [directory.parent for directory in made.sysctl_d.values()]
    assert not any(directory.exists() for directory in etc)  # /etc/netns/NS, removed
    # The machine's own: nothing written there, nothing set in its namespace.
    assert snapshot(MACHINE_SYSCTL_D) == machine
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == machine_forward


def test_enable_forwarding_turns_it_on_in_each_hosts_namespace_and_own_sysctl_d(
    hosts: Fleet, tmp_path: Path
) -> None:
    model = write_model(tmp_path / "fleet.yaml", fleet_model())
    loaded = hosts.load(model)  # the tables first: then forwarding is all a run changes
    for name in HOSTS:
        hosts.sysctl(name, FORWARD, "0")

    check = hosts.play(APPLY, "--check", model=str(model), enable_forwarding=True)
    assert check.code == 0, check.output
    assert check.changed_hosts() == set(HOSTS)
    for name, result in check.results(TASK).items():
        assert result["plan"]["changed"] is False, name
        assert result["forwarding"] == [f"{FORWARD} = 1"], name
        assert hosts.sysctl(name, FORWARD) == "0"  # check mode: nothing set
        assert list(hosts.sysctl_d[name].iterdir()) == []  # nor written
    assert hosts.rulesets() == loaded

    run = hosts.play(APPLY, model=str(model), enable_forwarding=True)
    assert run.code == 0, run.output
    assert run.changed_hosts() == set(HOSTS)
    for name, result in run.results(TASK).items():
        assert result["changed"] is True and result["forwarding"] == [f"{FORWARD} = 1"], name
        assert result["findings"]["counts"]["error"] == 0, result["findings"]  # after the load
        assert hosts.sysctl(name, FORWARD) == "1"
        assert {f.name: f.read_text() for f in hosts.sysctl_d[name].iterdir()} == {
            "90-nftfwd.conf": WRITTEN
        }
    assert hosts.rulesets() == loaded  # the tables were the model's already
    written = {name: snapshot(hosts.sysctl_d[name]) for name in HOSTS}

    again = hosts.play(APPLY, model=str(model), enable_forwarding=True)
    assert again.code == 0, again.output
    assert again.changed_hosts() == set()
    for name, result in again.results(TASK).items():
        assert result["changed"] is False and result["forwarding"] == [], name
        assert snapshot(hosts.sysctl_d[name]) == written[name]  # not even rewritten
        assert hosts.sysctl(name, FORWARD) == "1"


def test_without_enable_forwarding_a_host_with_forwarding_off_is_loaded_with_doctors_finding(
    hosts: Fleet, tmp_path: Path
) -> None:
    hosts.sysctl("kvm2", FORWARD, "0")
    model = write_model(tmp_path / "fleet.yaml", fleet_model())
    run = hosts.play(APPLY, model=str(model))
    assert run.code == 0, run.output
    assert run.changed_hosts() == set(HOSTS) and run.failed_hosts() == set()
    results = run.results(TASK)
    kvm2 = results["kvm2"]
    assert kvm2["outcome"] == "ok" and "forwarding" not in kvm2
    assert "tcp . 8082 : 10.0.2.10" in hosts.nft("kvm2", "list", "table", "inet", "nftfwd")
    errors = [f for f in kvm2["findings"]["findings"] if f["severity"] == "error"]
    assert [(f["id"], f["subject"]) for f in errors] == [("ipv4-forwarding-off", FORWARD)]
    assert errors[0]["fix"].startswith("nftfwd load --enable-forwarding\n")
    assert hosts.sysctl("kvm2", FORWARD) == "0"  # left as it was
    assert list(hosts.sysctl_d["kvm2"].iterdir()) == []
    for name in ("kvm1", "kvm3"):
        assert results[name]["findings"]["counts"]["error"] == 0, results[name]["findings"]
