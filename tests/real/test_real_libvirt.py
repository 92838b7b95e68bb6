"""nftfwd beside a real libvirtd: Debian 12's libvirt 9 (iptables-nft rules) on this host,
Debian 13's libvirt 11 (its nftables backend, `table ip libvirt_network`) in a throwaway
Debian 13 root. libvirt itself defines and starts its default NAT network; a veth from
another namespace on virbr0 stands in for a guest (libvirtd.py has the setup).

- README's libvirt path: `nftfwd libvirt import <(virsh net-dumpxml default)`, a forward
  added, `load`; doctor names libvirt's real rejecting rule, packets prove the forward
  fails; the fixes doctor prints, run as printed one finding at a time (as an admin
  would), end with doctor exiting 0 and packets through the forward.
- `nftfwd trace` follows a real connection to the forward and names libvirt's rejecting
  rule, with doctor's finding id, before the fix.
- The hook, laid out by `nftfwd install --root`, is run by libvirtd itself on net-start
  and net-update and reloads nftfwd's table; a broken model never stops a network.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from libvirtd import CLIENT_ADDRESS, GUEST_ADDRESS, GUEST_MAC, GUEST_PORT, Libvirt, debian13_root

pytestmark = pytest.mark.kernel

MODEL = "/etc/nftfwd/nftfwd.yaml"  # where `nftfwd install` puts it; the hook reads it there


@dataclass(frozen=True)
class Backend:
    """What a libvirt version is expected to set up for a NAT network."""

    version: str  # `libvirtd --version` ends with this prefix of the version
    rejecting_rule: str  # doctor's subject for libvirt's rule that rejects the forward
    ruleset_mark: str  # in `nft list ruleset` once the NAT network runs


BACKENDS = {
    # iptables-nft: `ip filter` chains LIBVIRT_FWI, LIBVIRT_FWO, ... jumped to from FORWARD.
    "9": Backend("9.", "table ip filter, chain LIBVIRT_FWI, rule 2 ", "chain LIBVIRT_FWI {"),
    # Debian builds libvirt 11 with the backend order [iptables, nftables] (see
    # firewall_backend in /etc/libvirt/network.conf, unset there); a Debian 13 host has
    # nftables installed, which satisfies the network driver's `iptables | nftables`, so
    # without iptables libvirt picks nftables, as in this root.
    "11": Backend(
        "11.", "table ip libvirt_network, chain guest_input, rule ", "table ip libvirt_network {"
    ),
}


@pytest.fixture(scope="module")
def debian13(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The Debian 13 root, on a tmpfs: unpacked in seconds, gone with one umount."""
    root = tmp_path_factory.mktemp("debian13")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(root)], check=True)
    try:
        yield debian13_root(root)
    finally:
        subprocess.run(["umount", "--lazy", str(root)], check=True)


@pytest.fixture(params=sorted(BACKENDS, key=int), ids=lambda v: f"libvirt{v}")
def libvirt(request: pytest.FixtureRequest) -> Iterator[tuple[Libvirt, Backend]]:
    root = request.getfixturevalue("debian13") if request.param == "11" else None
    if root is not None:  # libvirt picks its firewall backend itself: nftables here
        conf = (root / "etc/libvirt/network.conf").read_text()
        assert not re.search(r"^\s*firewall_backend", conf, re.MULTILINE)
        assert not (root / "usr/sbin/iptables").exists()
    with Libvirt(root) as lv:
        lv.start_daemon()
        version = lv.run("libvirtd", "--version").stdout.split()[-1]
        backend = BACKENDS[request.param]
        assert version.startswith(backend.version), version
        yield lv, backend


# --- doctor's output ----------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """One doctor run: its exit code, its text (as an admin reads it), its findings (as
    `--format json` gives them: id, severity, subject, message, fix)."""

    code: int
    text: str
    findings: list[dict[str, str]]

    def errors(self) -> list[dict[str, str]]:
        return [f for f in self.findings if f["severity"] == "error"]


def commands(finding: dict[str, str]) -> list[str]:
    """The fix's shell lines, as printed (lines starting with # are comments)."""
    return [line for line in finding["fix"].splitlines() if not line.startswith("#")]


def doctor(lv: Libvirt) -> Report:
    text = lv.nftfwd_cmd("doctor")
    data = lv.nftfwd_cmd("doctor", "--format", "json")
    assert text.returncode in (0, 1), f"doctor exited {text.returncode}:\n{text.stderr}"
    document = json.loads(data.stdout)
    assert document["exit_code"] == data.returncode == text.returncode, data.stdout
    return Report(text.returncode, text.stdout, document["findings"])


def load(lv: Libvirt, *extra: str) -> None:
    done = lv.nftfwd_cmd("load", "--atomic", "--yes", *extra)
    assert done.returncode == 0, f"load exited {done.returncode}:\n{done.stdout}{done.stderr}"


def trace(lv: Libvirt, port: int) -> subprocess.CompletedProcess[str]:
    """`nftfwd trace PORT`, the client connecting once trace says to (its first line)."""
    process = lv.nftfwd_popen("trace", str(port), "--timeout", "20")
    assert process.stderr is not None
    prompt = process.stderr.readline()
    assert " now; waiting up to 20 s" in prompt, prompt
    lv.request("tcp", port)
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, out, prompt + err)


def hostname(lv: Libvirt) -> str:
    return lv.run("uname", "-n").stdout.strip()


# Where libvirt keeps network XML: the persistent definitions, and the running networks'
# status (<networkstatus> around the <network>).
READ_NETWORKS_FROM = ("etc/libvirt/qemu/networks", "run/libvirt/network")


def networks_read_from(lv: Libvirt, folder: str) -> dict[str, str]:
    """What doctor's reader makes of the XML files libvirt wrote to `folder`, alone."""
    script = (
        "import json, shutil, sys, tempfile\n"
        "from nftfwd.kernel.hoststate import read_libvirt_networks\n"
        "root = tempfile.mkdtemp()\n"
        "shutil.copytree('/' + sys.argv[1], root + '/' + sys.argv[1])\n"
        "print(json.dumps(read_libvirt_networks(root)))\n"
    )
    python = str(Path(lv.nftfwd).with_name("python"))
    found: dict[str, str] = json.loads(lv.run(python, "-c", script, folder).stdout)
    return found


def start_default_network(lv: Libvirt) -> None:
    """What libvirt-daemon-config-network does on a fresh host, then a start."""
    lv.run("virsh", "net-define", "/usr/share/libvirt/networks/default.xml")
    lv.run("virsh", "net-start", "default")


# --- README's libvirt path ----------------------------------------------------------------


def test_doctor_names_libvirts_rule_and_the_fix_it_prints_opens_the_forward(
    libvirt: tuple[Libvirt, Backend],
) -> None:
    lv, backend = libvirt
    start_default_network(lv)
    assert backend.ruleset_mark in lv.run("nft", "list", "ruleset").stdout
    # doctor maps virbr0 to its network from either of libvirt's own files, each alone.
    for folder in READ_NETWORKS_FROM:
        assert networks_read_from(lv, folder) == {"virbr0": "default"}, folder

    # README: nftfwd libvirt import <(virsh net-dumpxml default) > /etc/nftfwd/nftfwd.yaml
    lv.run("bash", "-c", f"{lv.nftfwd} libvirt import --uplink eno1 "
           f"<(virsh net-dumpxml default) > {MODEL}")  # fmt: skip
    skeleton = lv.run("cat", MODEL).stdout
    assert "libvirt network 'default' (/dev/fd/" in skeleton
    assert "forward mode nat." in skeleton
    assert "#   virsh net-define /tmp/default.xml\n" in skeleton
    model = yaml.safe_load(skeleton)
    # README's other form: libvirt's persistent file (`<forward mode='nat'/>`, a comment).
    persistent = lv.nftfwd_cmd(
        "libvirt", "import", "--uplink", "eno1", "/etc/libvirt/qemu/networks/default.xml"
    )
    assert persistent.returncode == 0, persistent.stderr
    assert yaml.safe_load(persistent.stdout) == model
    assert "# WARNING: in NAT mode libvirt" in persistent.stdout
    bridge = model["hosts"][hostname(lv)]["bridges"]["virbr0"]
    assert bridge == {"subnet": "192.168.122.0/24"}
    bridge["guests"] = {
        "centos": {"address": GUEST_ADDRESS, "forwards": [{"port": 2222, "to": 22}]}
    }
    lv.write(MODEL, yaml.safe_dump(model))

    lv.attach_guest()
    lv.serve("centos", 22)
    load(lv, "--enable-forwarding")
    refused = lv.request("tcp", 2222)
    assert not refused.ok and refused.error == "refused", refused  # libvirt's reject

    traced = trace(lv, 2222)  # the kernel names the same rule, on a real connection
    assert traced.returncode == 1, traced.stdout + traced.stderr
    assert "\nstopped: rejected by " in traced.stdout, traced.stdout
    assert f"doctor: foreign-chain-rejects: {backend.rejecting_rule}" in traced.stdout
    assert "nftfwd_trace" not in lv.run("nft", "list", "ruleset").stdout

    report = doctor(lv)
    history = [report.text]
    assert report.code == 1, report.text
    (rejects,) = [f for f in report.errors() if f["id"] == "foreign-chain-rejects"]
    assert rejects["subject"].startswith(backend.rejecting_rule), report.text
    assert "this is libvirt's NAT mode for virbr0" in rejects["message"], report.text
    assert "NETWORK" not in rejects["fix"], rejects["fix"]  # libvirt's files name it: default
    assert commands(rejects)[-2:] == [
        "virsh net-define /tmp/default.xml",
        "virsh net-destroy default && virsh net-start default",
    ], rejects["fix"]

    # As an admin would: the first error's fix as printed, re-attach the guests and load
    # again as its last comment says, then ask doctor again.
    for _ in range(5):
        if report.code == 0:
            break
        first = report.errors()[0]
        assert commands(first), report.text
        lv.sh("\n".join(commands(first)))
        if lv.run("ip", "-j", "link", "show", GUEST_PORT).stdout.find('"master"') < 0:
            lv.attach_guest()  # net-destroy took the guest's port off the bridge
        load(lv)
        report = doctor(lv)
        history.append(report.text)
    assert report.code == 0 and not report.errors(), "\n".join(history)
    left = {f["id"] for f in report.findings}
    assert not left & {"foreign-chain-rejects", "libvirt-nat-network"}, report.text
    assert "<forward mode='open'/>" in lv.run("virsh", "net-dumpxml", "default").stdout

    reply = lv.request("tcp", 2222)
    assert reply.ok, reply
    assert reply.text == f"centos {CLIENT_ADDRESS} 22 hello"  # the client's own address
    print("\n---\n".join(history))  # the real doctor output, shown with pytest -rP


# --- the hook -------------------------------------------------------------------------


def install_hook(lv: Libvirt, model_text: str) -> str:
    """`nftfwd install --root` into a staging tree, then its hook and model where a real
    install puts them; libvirtd restarted, as README says (it looks for hooks at start).
    Returns the hook's text."""
    lv.write("/run/model.yaml", model_text)
    lv.sh("mkdir -p /run/stage/etc/libvirt")
    installed = lv.nftfwd_cmd("install", "/run/model.yaml", "--root", "/run/stage")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    lv.sh(f"cp -a /run/stage/etc/libvirt/hooks/network /etc/libvirt/hooks/network\n"
          f"cp /run/stage/etc/nftfwd/nftfwd.yaml {MODEL}")  # fmt: skip
    lv.stop_daemon()
    lv.start_daemon()
    return lv.run("cat", "/etc/libvirt/hooks/network").stdout


def model_text(lv: Libvirt, *ports: int) -> str:
    forwards = [{"port": port, "to": 22} for port in ports]
    guest = {"address": GUEST_ADDRESS, "forwards": forwards}
    bridge = {"subnet": "192.168.122.0/24", "guests": {"centos": guest}}
    host = {"uplinks": ["eno1"], "bridges": {"virbr0": bridge}}
    return yaml.safe_dump({"version": 1, "hosts": {hostname(lv): host}})


def forwarded_ports(lv: Libvirt) -> list[int] | None:
    """Host ports in nftfwd's live table, or None when the table does not exist."""
    done = lv.run("nft", "-j", "list", "map", "inet", "nftfwd", "dnat_port_any4", check=False)
    if done.returncode != 0:
        return None
    for item in json.loads(done.stdout)["nftables"]:
        if "map" in item:
            return sorted(e[0]["concat"][1] for e in item["map"].get("elem", []))
    return []


def test_libvirtd_runs_the_installed_hook_on_net_start_and_net_update(
    libvirt: tuple[Libvirt, Backend],
) -> None:
    lv, _ = libvirt
    start_default_network(lv)
    hook = install_hook(lv, model_text(lv, 2222))
    # libvirt passes a hook no NFTFWD_* variables: the model and state are written into it.
    fixed_paths = f"--model {MODEL} --state-dir /var/lib/nftfwd"
    assert hook.endswith(f'exec {lv.nftfwd} libvirt hook {fixed_paths} "$@"\n'), hook
    assert forwarded_ports(lv) is None  # a restart of libvirtd runs no hook

    lv.sh("virsh net-destroy default && virsh net-start default")
    assert forwarded_ports(lv) == [2222], lv.log  # the hook loaded the model on "started"

    lv.write(MODEL, model_text(lv, 2222, 2223))
    host = f"<host mac='{GUEST_MAC}' name='centos' ip='{GUEST_ADDRESS}'/>"
    lv.run("virsh", "net-update", "default", "add", "ip-dhcp-host", host, "--live", "--config")
    assert forwarded_ports(lv) == [2222, 2223]  # ... and reloaded it on "updated"
    # Beside libvirtd there is no journal (/run is a tmpfs) and no syslog: the hook's
    # messages land whole in the state directory, where an admin reads them.
    log = lv.run("cat", "/var/lib/nftfwd/hook.log").stdout
    assert "libvirt network default started begin: reloaded" in log, log
    assert "libvirt network default updated begin: reloaded" in log, log


@pytest.mark.parametrize(
    "broken",
    ["hosts: [\n", "", "version: 1\nhosts: {}\n"],
    ids=["bad-yaml", "empty", "no-host"],
)
def test_a_broken_model_never_stops_the_network(
    libvirt: tuple[Libvirt, Backend], broken: str
) -> None:
    lv, _ = libvirt
    install_hook(lv, model_text(lv, 2222))
    start_default_network(lv)
    assert forwarded_ports(lv) == [2222]  # the hook runs on every start

    lv.write(MODEL, broken)
    lv.run("virsh", "net-destroy", "default")
    started = lv.run("virsh", "net-start", "default", check=False)
    assert started.returncode == 0, started.stderr
    assert "Active:         yes" in lv.run("virsh", "net-info", "default").stdout
    host = f"<host mac='{GUEST_MAC}' name='centos' ip='{GUEST_ADDRESS}'/>"
    updated = lv.run("virsh", "net-update", "default", "add", "ip-dhcp-host", host, "--live",
                     check=False)  # fmt: skip
    assert updated.returncode == 0, updated.stderr
    assert forwarded_ports(lv) == [2222]  # the last good table stays
