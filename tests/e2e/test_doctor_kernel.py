"""`nftfwd doctor` against real packets, for seed004 (host port 2222 -> centos port 22).

For each foreign setup (libvirt's iptables rules, libvirt's nftables table, Docker's
FORWARD policy drop, an admin's `policy drop`), in the host namespace of the standard
topology (tests/harness): nftfwd's rules work on the wire; with the foreign rules added
the forward fails; doctor exits 1 naming the exact table and chain, in one finding;
the fix it prints is applied (for libvirt: the switch to open mode, which on a real
host makes libvirt remove its own rules, is emulated by removing exactly those rules);
then the forward works again, the guest seeing the client's address, and doctor finds
nothing. Also: a healthy host gives exit 0 and "no findings"; hairpin mode off under
br_netfilter is found and its fix works; a table with `flags owner` (firewalld >= 2.0)
is read although nft 1.0.6 cuts the ruleset's JSON listing there, and its fix goes
through its owner. Everything runs inside the topology's namespaces (`ip netns exec`),
never in the root namespace.

The foreign rules are the files in tests/data/doctor/setups/, which
tests/data/doctor/make_fixtures.sh loads too.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import REPO, TEST_DATA
from harness import Topology
from jsonschema import Draft202012Validator
from seed004_host import (
    BRIDGE,
    GUEST,
    HOST,
    MODEL,
    NO_FLUSH,
    OUTSIDE_PORT,
    load_setup,
    seed004,
    start,
)
from wire import Probe, expect_failures, expect_reached, load, nftfwd, tcp

# --- the foreign setups -----------------------------------------------------------------

# What libvirt removes when the network leaves NAT mode: its rules (it keeps its chains).
LIBVIRT_IPTABLES_RULES = [
    ("filter", "LIBVIRT_FWI"), ("filter", "LIBVIRT_FWO"), ("filter", "LIBVIRT_FWX"),
    ("filter", "LIBVIRT_INP"), ("filter", "LIBVIRT_OUT"), ("nat", "LIBVIRT_PRT"),
    ("mangle", "LIBVIRT_PRT"),
]  # fmt: skip

# --- doctor's output ----------------------------------------------------------------------


@dataclass
class Reported:
    """One finding as `nftfwd doctor` prints it."""

    id: str
    subject: str
    lines: list[str] = field(default_factory=list)
    fix: list[str] = field(default_factory=list)

    @property
    def commands(self) -> list[str]:
        return [line for line in self.fix if not line.startswith("#")]


def parse(stdout: str) -> list[Reported]:
    """FINDING id: subject / message / `fix:` and its continuation lines."""
    found: list[Reported] = []
    for line in stdout.splitlines():
        if line.startswith("FINDING "):
            ident, _, subject = line.removeprefix("FINDING ").partition(": ")
            found.append(Reported(ident, subject))
        elif found and line.startswith("  fix: "):
            found[-1].fix.append(line.removeprefix("  fix: "))
        elif found and found[-1].fix and line.startswith("       "):
            found[-1].fix.append(line.removeprefix("       "))
        elif found:
            found[-1].lines.append(line.strip())
    return found


def doctor(topo: Topology, conf: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    done = nftfwd(topo, "doctor", str(MODEL), "--host", HOST, "--nftables-conf", str(conf),
                  *extra)  # fmt: skip
    assert done.returncode in (0, 1), f"doctor exited {done.returncode}: {done.stderr}"
    return done


def in_host(topo: Topology, command: str) -> None:
    """One shell command line of a fix, in the host namespace (never the root one)."""
    topo.run("host", ["sh", "-c", command])


# --- the traffic --------------------------------------------------------------------------


def forward(topo: Topology) -> tuple[Probe, tuple[str, str, int]]:
    """client0 -> host:2222 reaches centos:22, which sees the client's address."""
    host4 = topo.host_address(4)
    return tcp("client0", host4, 2222), (GUEST, topo.client_address(4), 22)


def outbound(topo: Topology) -> tuple[Probe, tuple[str, str, int]]:
    """centos reaches the outside, masqueraded as the host."""
    client4 = topo.client_address(4)
    return tcp(f"guest:{GUEST}", client4, OUTSIDE_PORT), ("client0", topo.host_address(4), 7100)


def hairpin(topo: Topology) -> tuple[Probe, tuple[str, str, int]]:
    """centos reaches its own forward at the host's address (masqueraded to the gateway)."""
    host4 = topo.host_address(4)
    return tcp(f"guest:{GUEST}", host4, 2222), (GUEST, topo.gateway(BRIDGE, 4), 22)


TRAFFIC = {"forward": forward, "outbound": outbound, "hairpin": hairpin}


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    """An /etc/nftables.conf without `flush ruleset` (this machine's real one has it)."""
    path = tmp_path / "nftables.conf"
    path.write_text(NO_FLUSH)
    return path


# --- the cases ----------------------------------------------------------------------------


def libvirt_open_mode(topo: Topology, finding: Reported) -> None:
    assert [c.split()[:2] for c in finding.commands] == [
        ["virsh", "net-dumpxml"],
        ["sed", "-z"],
        ["virsh", "net-define"],
        ["virsh", "net-destroy"],
    ], finding.fix
    assert any(line.startswith("# or interactively: virsh net-edit ") for line in finding.fix)


def remove_libvirt_iptables(topo: Topology, finding: Reported) -> None:
    libvirt_open_mode(topo, finding)
    for table, chain in LIBVIRT_IPTABLES_RULES:
        topo.run("host", ["iptables", "-t", table, "-F", chain])


def remove_libvirt_nftables(topo: Topology, finding: Reported) -> None:
    libvirt_open_mode(topo, finding)
    topo.load_ruleset("delete table ip libvirt_network\ndelete table ip6 libvirt_network\n")


def run_fix(topo: Topology, finding: Reported) -> None:
    assert finding.commands, finding.fix
    for command in finding.commands:
        assert command.split()[0] in ("iptables", "nft"), command
        in_host(topo, command)


@dataclass(frozen=True)
class Foreign:
    setup: str  # its file in SETUPS
    finding: str  # its id
    where: str  # table and chain, as doctor names them
    subject: str  # the start of the finding's subject (the rule, or the policy)
    broken: dict[str, tuple[str, ...]]  # traffic that fails, and how it fails
    fix: Callable[[Topology, Reported], None]


CASES = {
    "libvirt-iptables": Foreign(
        "libvirt-iptables.rules",
        "foreign-chain-rejects",
        "table ip filter, chain LIBVIRT_FWI",
        "table ip filter, chain LIBVIRT_FWI, rule 2 (handle ",
        {"forward": ("refused",)},  # REJECT: icmp port unreachable
        remove_libvirt_iptables,
    ),
    "libvirt-nftables": Foreign(
        "libvirt-nftables.nft",
        "foreign-chain-rejects",
        "table ip libvirt_network, chain guest_input",
        "table ip libvirt_network, chain guest_input, rule 2 (handle ",
        {"forward": ("refused",)},
        remove_libvirt_nftables,
    ),
    "docker": Foreign(
        "docker.rules",
        "foreign-policy-drop",
        "table ip filter, chain FORWARD",
        "table ip filter, chain FORWARD, policy drop",
        {"forward": ("timeout",), "outbound": ("timeout",), "hairpin": ("timeout",)},
        run_fix,
    ),
    "admin-policy-drop": Foreign(
        "admin-policy-drop.nft",
        "foreign-policy-drop",
        "table inet filter, chain forward",
        "table inet filter, chain forward, policy drop",
        {"forward": ("timeout",), "outbound": ("timeout",), "hairpin": ("timeout",)},
        run_fix,
    ),
}


@pytest.mark.kernel
@pytest.mark.parametrize("name", list(CASES))
def test_foreign_rules_break_the_forward_doctor_names_them_and_its_fix_works(
    name: str, conf: Path
) -> None:
    case = CASES[name]
    with seed004() as topo:
        start(topo)
        everything = [make(topo) for make in TRAFFIC.values()]
        expect_reached(topo, everything)  # the control: nftfwd's rules alone work

        load_setup(topo, case.setup)
        broken = [(TRAFFIC[kind](topo)[0], errors) for kind, errors in case.broken.items()]
        expect_failures(topo, broken)
        working = [TRAFFIC[kind](topo) for kind in TRAFFIC if kind not in case.broken]
        expect_reached(topo, working)  # what doctor does not report still works

        done = doctor(topo, conf)
        assert done.returncode == 1, done.stdout
        assert f"FINDING {case.finding}: {case.where}" in done.stdout
        found = parse(done.stdout)
        assert [(f.id, f.subject.startswith(case.subject)) for f in found] == [
            (case.finding, True)
        ], done.stdout  # one finding, no other

        case.fix(topo, found[0])
        expect_reached(topo, everything)
        after = doctor(topo, conf)
        assert (after.returncode, after.stdout) == (0, "no findings\n"), after.stdout


@pytest.mark.kernel
def test_healthy_host_has_no_findings(conf: Path, tmp_path: Path) -> None:
    with seed004() as topo:
        start(topo)
        expect_reached(topo, [make(topo) for make in TRAFFIC.values()])
        done = doctor(topo, conf)
        assert (done.returncode, done.stdout, done.stderr) == (0, "no findings\n", "")
        # the file nftables.service loads is read from --nftables-conf
        flushing = tmp_path / "flushing.conf"
        flushing.write_text("flush ruleset\n" + NO_FLUSH)
        found = parse(doctor(topo, flushing, "--root", str(tmp_path)).stdout)
        assert [(f.id, f.subject) for f in found] == [("flush-ruleset-on-boot", str(flushing))]


# --- a stock Debian 12 or 13 host: what its /etc/nftables.conf weighs -------------------------

STOCK_CONF = TEST_DATA / "doctor" / "debian-nftables.conf"
DOCTOR_SCHEMA = REPO / "schemas" / "doctor.schema.json"


def stock_debian(root: Path) -> Path:
    """A tree as Debian 12 and 13 leave it after `apt-get install nftables`: its
    /etc/nftables.conf (`flush ruleset` first), nftables.service installed, not enabled."""
    (root / "etc").mkdir(parents=True)
    (root / "etc/nftables.conf").write_text(STOCK_CONF.read_text())
    (root / "lib/systemd/system").mkdir(parents=True)
    (root / "lib/systemd/system/nftables.service").write_text(
        "[Unit]\nDescription=nftables\n[Service]\nType=oneshot\n"
        "ExecStart=/usr/sbin/nft -f /etc/nftables.conf\n"
        "ExecReload=/usr/sbin/nft -f /etc/nftables.conf\n"
        "[Install]\nWantedBy=sysinit.target\n"
    )
    return root


def enable(root: Path, unit: str, target: str) -> None:
    """What `systemctl enable` leaves: a link in TARGET.wants (its target need not exist)."""
    wants = root / f"etc/systemd/system/{target}.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / unit).symlink_to(f"/etc/systemd/system/{unit}")


def doctor_at(topo: Topology, root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """doctor reading the systemd units and /etc/nftables.conf of the tree at root."""
    return nftfwd(topo, "doctor", str(MODEL), "--host", HOST, "--root", str(root), *extra)


def json_findings(done: subprocess.CompletedProcess[str]) -> list[tuple[str, str]]:
    document = json.loads(done.stdout)
    Draft202012Validator(json.loads(DOCTOR_SCHEMA.read_text())).validate(document)
    assert document["exit_code"] == done.returncode, done.stdout
    return [(f["id"], f["severity"]) for f in document["findings"]]


@pytest.mark.kernel
def test_a_stock_debian_host_whose_forwards_work_exits_0(tmp_path: Path) -> None:
    """The flush of Debian's nftables.conf is a warning while nftables.service is not
    enabled (as Debian installs it); --strict fails on it; an error once nftables.service
    is enabled with nothing to load nftfwd's table after it; a note once `nftfwd install`
    put a unit in that follows nftables.service."""
    root = stock_debian(tmp_path / "root")
    conf = str(root / "etc/nftables.conf")
    with seed004() as topo:
        start(topo)
        expect_reached(topo, [make(topo) for make in TRAFFIC.values()])

        done = doctor_at(topo, root)
        assert done.returncode == 0, done.stdout + done.stderr
        assert [(f.id, f.subject) for f in parse(done.stdout)] == [("flush-ruleset-on-boot", conf)]
        assert "\n  warning: " in done.stdout and "nftables.service is not enabled" in done.stdout
        assert done.stdout.endswith("\n0 errors, 1 warning, 0 notes\n")
        strict = doctor_at(topo, root, "--strict")
        assert (strict.returncode, strict.stdout) == (1, done.stdout)
        as_json = doctor_at(topo, root, "--format", "json")
        assert as_json.returncode == 0 and json_findings(as_json) == [
            ("flush-ruleset-on-boot", "warning")
        ]
        as_json = doctor_at(topo, root, "--format", "json", "--strict")
        assert as_json.returncode == 1 and json.loads(as_json.stdout)["strict"] is True

        enable(root, "nftables.service", "sysinit")  # the next boot flushes, nothing reloads
        done = doctor_at(topo, root, "--format", "json")
        assert done.returncode == 1 and json_findings(done) == [("flush-ruleset-on-boot", "error")]

        installed = nftfwd(topo, "install", str(MODEL), "--root", str(root))
        assert installed.returncode == 0, installed.stderr
        enable(root, "nftfwd.service", "multi-user")
        done = doctor_at(topo, root, "--strict")
        assert done.returncode == 0, done.stdout
        assert "\n  note: " in done.stdout and "ReloadPropagatedFrom=" in done.stdout


@pytest.mark.kernel
def test_hairpin_mode_off_with_br_netfilter_and_its_fix(conf: Path) -> None:
    with seed004() as topo:
        bridged = topo.run("host", ["sysctl", "-n", "net.bridge.bridge-nf-call-iptables"],
                           check=False).stdout.strip()  # fmt: skip
        if bridged != "1":
            pytest.skip("br_netfilter is not loaded: hairpin traffic is routed, not bridged")
        load(topo, MODEL, HOST)
        topo.serve(GUEST, [22], ("tcp",))
        expect_reached(topo, [forward(topo)])  # also teaches the bridge the guest's port
        expect_failures(topo, [(hairpin(topo)[0], ("timeout",))])
        found = parse(doctor(topo, conf).stdout)
        assert [(f.id, f.subject) for f in found] == [
            ("hairpin-mode-off", f"bridge port vg0 of {BRIDGE} (guest {GUEST})")
        ]
        assert found[0].commands == ["bridge link set dev vg0 hairpin on"]
        in_host(topo, found[0].commands[0])
        expect_reached(topo, [hairpin(topo), forward(topo)])
        assert doctor(topo, conf).stdout == "no findings\n"


# --- a table only its owner may change (firewalld >= 2.0) ----------------------------------


class Owner:
    """An `nft -i` in the host namespace that made `table inet firewalld { flags owner; }`
    (as firewalld >= 2.0 does): only this process may change the table, which goes when
    the process ends."""

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", topo.ns["host"], "nft", "-i"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip

    def send(self, *commands: str, rules: int) -> None:
        """Run commands in the owner; wait (bounded) until its chain has `rules` rules."""
        assert self.process.stdin is not None
        self.process.stdin.write("".join(f"{c}\n" for c in commands))
        self.process.stdin.flush()
        deadline = time.monotonic() + 5
        while self.rules() != rules:
            assert self.process.poll() is None, "the owner's nft ended"
            assert time.monotonic() < deadline, f"the owned chain has {self.rules()} rules"
            time.sleep(0.05)

    def rules(self) -> int | None:
        done = self.topo.run("host", ["nft", "-a", "list", "chain", "inet", "firewalld",
                                      "filter_FORWARD"], check=False)  # fmt: skip
        return done.stdout.count("# handle") - 1 if done.returncode == 0 else None

    def close(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(3)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(3)


@contextlib.contextmanager
def owner(topo: Topology) -> Iterator[Owner]:
    held = Owner(topo)
    try:
        yield held
    finally:
        held.close()


@pytest.mark.kernel
def test_a_table_with_flags_owner_is_read_and_its_fix_goes_through_its_owner(
    conf: Path,
) -> None:
    """nft 1.0.6 cuts the JSON listing of the ruleset at an owned table's flags: doctor
    reads it anyway; the kernel refuses nft's changes to the table, so doctor prints the
    rules for its owner to add, and those rules, added by the owner, make the forward work."""
    with seed004() as topo, owner(topo) as firewalld:
        start(topo)
        everything = [make(topo) for make in TRAFFIC.values()]
        expect_reached(topo, everything)
        firewalld.send(
            "add table inet firewalld { flags owner; }",
            "add chain inet firewalld filter_FORWARD"
            " { type filter hook forward priority filter + 10; policy drop; }",
            "add rule inet firewalld filter_FORWARD ct state established,related accept",
            # an empty owned table listed last: nft 1.0.6 cuts `nft -j list ruleset` there
            "add table ip owned_last { flags owner; }",
            rules=1,
        )
        expect_failures(topo, [(probe, ("timeout",)) for probe, _ in everything])

        done = doctor(topo, conf)
        found = parse(done.stdout)
        assert [(f.id, f.subject) for f in found] == [
            ("foreign-policy-drop", "table inet firewalld, chain filter_FORWARD, policy drop")
        ], done.stdout + done.stderr
        assert found[0].commands == [], found[0].fix  # nothing nft could do
        changes = [line.removeprefix("#   ") for line in found[0].fix if line.startswith("#   ")]
        assert changes and all(c.startswith("insert rule inet firewalld filter_FORWARD ")
                               for c in changes), found[0].fix  # fmt: skip
        refused = topo.run("host", ["nft", changes[0]], check=False)
        assert "Operation not permitted" in refused.stderr, refused

        firewalld.send(*changes, rules=1 + len(changes))
        expect_reached(topo, everything)
        after = doctor(topo, conf)
        assert (after.returncode, after.stdout) == (0, "no findings\n")
