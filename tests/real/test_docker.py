"""nftfwd beside a real dockerd (Debian's docker.io) in the host namespace of the standard
topology: Docker's own FORWARD policy drop and DOCKER-USER chain, doctor's finding and
its printed fix, proven with packets; Docker's tables never edited by nftfwd.

dockerd runs with its own data root, exec root, pidfile and socket, in the host
namespace and a private mount namespace. `ip netns exec` mounts a fresh /sys without
the cgroup hierarchy, which dockerd needs ("Devices cgroup isn't mounted"): it is
mounted again there as this machine has it.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from harness import Topology

pytestmark = pytest.mark.kernel

NFTFWD = str(Path(sys.executable).parent / "nftfwd")
MODEL = (Path(__file__).parents[1] / "data" / "real" / "box.yaml").read_text()


def cgroup_mounts() -> str:
    """Shell commands that mount this machine's cgroup hierarchy again (v1 or v2)."""
    commands = []
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            source, target, fstype, options = line.split()[:4]
            under = target == "/sys/fs/cgroup" or target.startswith("/sys/fs/cgroup/")
            if under and fstype in ("tmpfs", "cgroup", "cgroup2"):
                commands.append(
                    f"mkdir -p {shlex.quote(target)} && mount -t {fstype} -o "
                    f"{shlex.quote(options)} {shlex.quote(source)} {shlex.quote(target)}"
                )
    assert commands, "this machine has no cgroup hierarchy under /sys/fs/cgroup"
    return " && ".join(commands)


class Docker:
    """dockerd in the host namespace of `topo`, with everything of its own under `home`."""

    def __init__(self, topo: Topology, home: Path) -> None:
        self.topo, self.home = topo, home
        self.log = home / "dockerd.log"
        home.mkdir(parents=True)
        dockerd = [
            "dockerd", "--data-root", str(home / "data"), "--exec-root", str(home / "exec"),
            "--pidfile", str(home / "docker.pid"), "-H", f"unix://{home / 'docker.sock'}",
            "--iptables=true",
        ]  # fmt: skip
        shell = f"{cgroup_mounts()} && exec {shlex.join(dockerd)}"
        with open(self.log, "wb") as log:
            # ip netns exec, unshare and sh each exec the next: this PID is dockerd's.
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", topo.ns["host"], "unshare", "--mount",
                 "--propagation", "private", "sh", "-c", shell],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while "API listen on" not in self.log.read_text(errors="replace"):
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, self.log.read_text()[-3000:]
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Topology, Path]]:
    """The topology with dockerd running in its host namespace; (topology, a work dir)."""
    work = tmp_path_factory.mktemp("docker")
    (work / "model.yaml").write_text(MODEL)
    with Topology(yaml.safe_load(MODEL), "box") as topo:
        # As on a fresh host: forwarding off until Docker turns it on, and with it the
        # policy drop on iptables' FORWARD chain.
        topo.run("host", ["sysctl", "-qw", "net.ipv4.ip_forward=0"])
        docker = Docker(topo, work / "docker")
        try:
            started = time.monotonic()
            docker.wait_ready()
            print(f"dockerd ready in {time.monotonic() - started:.1f} s")
            topo.serve("web", [80], ["tcp"])
            yield topo, work
        finally:
            docker.stop()
    shutil.rmtree(work, ignore_errors=True)


def nftfwd(topo: Topology, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = ["env", f"NFTFWD_STATE_DIR={work / 'state'}", NFTFWD, *args]
    return topo.run("host", argv, check=False, timeout=120)


def foreign_tables(topo: Topology) -> dict[str, str]:
    """Every table but nftfwd's, as nft lists it with handles and without counters:
    a rule deleted and added again would show a new handle."""
    names = topo.run("host", ["nft", "list", "tables"]).stdout.splitlines()
    return {
        name: topo.run("host", ["nft", "-a", "-s", "list", *name.split()]).stdout
        for name in names
        if name != "table inet nftfwd"
    }


def finding(doctor_output: str, finding_id: str) -> tuple[str, str]:
    """The header line of one finding in doctor's text output, and its fix as printed."""
    lines = doctor_output.splitlines()
    start = next(i for i, line in enumerate(lines) if f" {finding_id}: " in line)
    for i in range(start + 1, len(lines)):
        found = re.match(r"(\s+)fix: (.*)", lines[i])
        if found:
            indent = " " * (len(found.group(1)) + len("fix: "))
            fix = [found.group(2)]
            for line in lines[i + 1 :]:
                if not line.startswith(indent):
                    break
                fix.append(line[len(indent) :])
            return lines[start], "\n".join(fix)
    raise AssertionError(f"no fix for {finding_id} in:\n{doctor_output}")


def test_docker_set_its_forward_policy_to_drop(host: tuple[Topology, Path]) -> None:
    topo, _ = host
    assert topo.run("host", ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == "1"
    chains = topo.run("host", ["nft", "list", "table", "ip", "filter"]).stdout
    forward = r"chain FORWARD \{\n\s+type filter hook forward priority filter; policy drop;"
    assert re.search(forward, chains), chains
    assert "chain DOCKER-USER {" in chains


def test_nftfwd_never_edits_dockers_tables(host: tuple[Topology, Path]) -> None:
    topo, work = host
    docker = foreign_tables(topo)
    assert {"table ip filter", "table ip nat"} <= docker.keys()
    loaded = nftfwd(topo, work, "load", "--atomic", "--yes", str(work / "model.yaml"))
    assert loaded.returncode == 0, loaded.stderr
    assert foreign_tables(topo) == docker
    doctor = nftfwd(topo, work, "doctor", str(work / "model.yaml"))
    assert doctor.returncode == 1, doctor.stderr
    assert foreign_tables(topo) == docker
    changed = work / "changed.yaml"
    changed.write_text(MODEL + "              - {port: 8443, to: 443}\n")
    reloaded = nftfwd(topo, work, "load", "--atomic", "--yes", str(changed))
    assert reloaded.returncode == 0, reloaded.stderr
    assert foreign_tables(topo) == docker
    back = nftfwd(topo, work, "load", "--atomic", "--yes", str(work / "model.yaml"))
    assert back.returncode == 0, back.stderr
    assert foreign_tables(topo) == docker


def test_doctor_names_dockers_drop_and_its_printed_fix_works(host: tuple[Topology, Path]) -> None:
    topo, work = host
    model = str(work / "model.yaml")
    assert nftfwd(topo, work, "load", "--atomic", "--yes", model).returncode == 0
    address = topo.host_address(4)
    before = topo.request("client0", "tcp", address, 8080)
    assert (before.ok, before.error) == (False, "timeout")  # dropped, not refused

    doctor = nftfwd(topo, work, "doctor", model)
    assert doctor.returncode == 1
    header, fix = finding(doctor.stdout, "foreign-policy-drop")
    assert "table ip filter, chain FORWARD, policy drop" in header
    assert "iptables -I DOCKER-USER" in fix
    commands = [line for line in fix.splitlines() if not line.startswith("#")]
    assert commands and all(c.startswith("iptables -I DOCKER-USER ") for c in commands), fix

    topo.run("host", ["sh", "-e", "-c", fix])  # the fix, run as printed
    after = topo.request("client0", "tcp", address, 8080)
    assert after.ok, after.error
    assert after.guest == "web"
    assert after.peer == topo.client_address(4)  # DNATed, not masqueraded
    again = nftfwd(topo, work, "doctor", model)
    assert "foreign-policy-drop" not in again.stdout, again.stdout
