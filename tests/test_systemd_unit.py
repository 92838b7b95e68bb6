"""nftfwd's unit under a real systemd: PID 1 of a Debian 13 container (systemd-nspawn,
with its own network namespace, so the root namespace's ruleset is never touched).

`systemctl restart nftables` and `systemctl reload nftables` both run `nft -f
/etc/nftables.conf`, whose `flush ruleset` deletes nftfwd's table: PartOf= brings it back
after a restart, ReloadPropagatedFrom= after a reload. A unit without the second (as
older installs wrote it) loses the table at a reload, and doctor warns about exactly that.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEBIAN_ROOT = REPO / ".ci" / "debian-root"
CACHE = Path(os.environ.get("NFTFWD_CI_CACHE", "/var/cache/nftfwd-ci"))
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "nftables", "python3-nftables", "python3-typer",
    "python3-jinja2", "python3-jsonschema", "python3-yaml", "python3-setuptools",
    "python3-pip", "iproute2",
)  # fmt: skip
SOURCES = ("pyproject.toml", "README.md", "compiler", "templates", "schemas")
MODEL = """version: 1
hosts:
  lab:
    uplinks: [host0]
    bridges:
      br0:
        subnet: 192.168.50.0/24
        guests:
          web:
            address: 192.168.50.10
            forwards:
              - {port: 8080, to: 80}
"""

BOTH = ["table inet filter", "table inet nftfwd"]  # Debian's nftables.conf, and nftfwd's

pytestmark = pytest.mark.kernel


def _run(*argv: str, timeout: float = 600) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stdout}{done.stderr}"
    return done.stdout


def make_root(root: Path) -> None:
    """A Debian 13 root with systemd, nftables and nftfwd's dependencies (kept as a tarball
    in the CI cache, keyed by the package list), then nftfwd from this checkout."""
    key = hashlib.sha256(" ".join(PACKAGES).encode()).hexdigest()[:12]
    tarball = CACHE / f"trixie-systemd-{key}.tar"
    if not tarball.is_file():
        _run(str(DEBIAN_ROOT), "make", "trixie", str(root))
        _run(str(DEBIAN_ROOT), "enter", str(root), "env", "DEBIAN_FRONTEND=noninteractive",
             "apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES)  # fmt: skip
        _run("tar", "-C", str(root), "-cf", f"{tarball}.part", ".")
        os.replace(f"{tarball}.part", tarball)
    else:
        root.mkdir()
        root.chmod(0o755)  # a booted root's / must be readable by dbus
        _run("tar", "-C", str(root), "-xf", str(tarball))
    source = root / "opt" / "nftfwd-src"
    source.mkdir(parents=True)
    for name in SOURCES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(REPO / name, source / name)
    _run(str(DEBIAN_ROOT), "enter", str(root), "pip", "install", "-q", "--no-deps",
         "--no-build-isolation", "--break-system-packages", "/opt/nftfwd-src")  # fmt: skip


class Container:
    """The booted root: `run` executes a command in all of its namespaces."""

    def __init__(self, root: Path, log: Path) -> None:
        self.process = subprocess.Popen(
            ["systemd-nspawn", "-D", str(root), "--register=no", "--keep-unit", "--boot",
             "--private-network"],
            stdin=subprocess.DEVNULL, stdout=log.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.init = 0
        try:
            self._boot()
        except BaseException:
            self.close()
            raise

    def _boot(self) -> None:
        deadline = time.monotonic() + 60
        state = ""
        while state not in ("running", "degraded"):  # the boot ends in one or the other
            assert time.monotonic() < deadline, f"the container did not boot: {state}"
            time.sleep(0.5)
            self.init = self._init_pid()
            done = self.run("systemctl", "is-system-running", "--wait", check=False)
            state = done.stdout.strip()

    def _init_pid(self) -> int:
        """The container's PID 1 as this namespace sees it: the child of systemd-nspawn."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "systemd-nspawn ended"
            with contextlib.suppress(OSError):
                pids = children.read_text().split()
                if pids:
                    return int(pids[0])
            time.sleep(0.1)
        raise AssertionError("the container's init did not start")

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["nsenter", "-t", str(self.init), "-a", *argv],
                              capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        if check:
            assert done.returncode == 0, f"{' '.join(argv)}: {done.stdout}{done.stderr}"
        return done

    def tables(self, expected: list[str], seconds: float = 10) -> list[str]:
        """The tables once they are as expected, or as they are after `seconds`: the jobs
        that PartOf= and ReloadPropagatedFrom= add run after systemctl returns."""
        deadline = time.monotonic() + seconds
        while True:
            found = self.run("nft", "list", "tables").stdout.splitlines()
            if found == expected or time.monotonic() > deadline:
                return found
            time.sleep(0.2)

    def settled(self, unit: str) -> str:
        """The unit's state once its jobs are done (activating and reloading pass)."""
        deadline = time.monotonic() + 30
        while True:
            state = self.run("systemctl", "is-active", unit, check=False).stdout.strip()
            if state not in ("activating", "reloading") or time.monotonic() > deadline:
                return state
            time.sleep(0.2)

    def close(self) -> None:
        self.process.terminate()  # systemd-nspawn powers the container off
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    if shutil.which("systemd-nspawn") is None:
        pytest.fail("systemd-nspawn is missing (apt-get install systemd-container; .ci/run does)")
    root = tmp_path / "root"
    make_root(root)
    booted = Container(root, tmp_path / "nspawn.log")
    try:
        yield booted
    finally:
        booted.close()
        shutil.rmtree(root, ignore_errors=True)


def flush_finding(box: Container) -> str:
    done = box.run("nftfwd", "doctor", "/tmp/model.yaml", "--format", "json", check=False)
    assert done.returncode in (0, 1), done.stderr
    (severity,) = [f["severity"] for f in json.loads(done.stdout)["findings"]
                   if f["id"] == "flush-ruleset-on-boot"]  # fmt: skip
    return str(severity)


def test_restart_and_reload_of_nftables_bring_nftfwds_table_back(container: Container) -> None:
    box = container
    box.run("sh", "-c", f"cat > /tmp/model.yaml <<'EOF'\n{MODEL}EOF")
    box.run("systemctl", "enable", "--now", "nftables.service")  # Debian's: flush ruleset
    assert flush_finding(box) == "error"  # the next boot flushes; nothing loads the table
    box.run("nftfwd", "install", "/tmp/model.yaml")
    assert box.tables(BOTH) == BOTH

    for action in ("restart", "reload"):
        box.run("systemctl", action, "nftables.service")
        assert box.tables(BOTH) == BOTH, action
        assert box.settled("nftfwd.service") == "active", action
    assert flush_finding(box) == "note"  # the unit follows nftables.service

    # the unit as older installs wrote it: a reload of nftables leaves no forward behind
    box.run("sed", "-i", "/^ReloadPropagatedFrom=/d", "/etc/systemd/system/nftfwd.service")
    box.run("systemctl", "daemon-reload")
    box.run("systemctl", "restart", "nftfwd.service")
    assert box.tables(BOTH) == BOTH
    box.run("systemctl", "reload", "nftables.service")
    time.sleep(2)  # what would bring the table back has had its time
    assert box.tables(BOTH, seconds=0) == ["table inet filter"]
    assert flush_finding(box) == "warning"
