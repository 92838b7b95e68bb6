"""A Debian root booted with real systemd as PID 1 (systemd-nspawn), and commands inside it.

The container has its own network namespace (`--private-network`: only `lo` until a
unit makes more), so nftables inside it is the container's own, never this machine's.
It is not registered with machined (`--register=no`, `--keep-unit`): the host needs no
systemd. Commands run inside with `nsenter` into the namespaces of the container's init.
"""

from __future__ import annotations

import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEBIAN_ROOT = REPO / ".ci" / "debian-root"
# Only what nftfwd's own Debian package would pull in, plus systemd itself.
PACKAGES = [
    "systemd", "systemd-sysv", "dbus", "nftables", "python3-nftables", "iproute2", "procps",
    "util-linux", "python3-jinja2", "python3-jsonschema", "python3-yaml", "python3-typer",
    "python3-pip", "python3-setuptools",
]  # fmt: skip


def make_root(directory: Path, suite: str = "trixie") -> None:
    """A fresh root of `suite` with PACKAGES, and nftfwd installed from this repository
    (its sources only; Debian's packages give its dependencies)."""
    subprocess.run([str(DEBIAN_ROOT), "make", suite, str(directory), *PACKAGES], check=True)
    source = directory / "opt/nftfwd-src"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("compiler", "templates", "schemas"):
        shutil.copytree(REPO / name, source / name, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    enter(
        directory,
        "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--break-system-packages",
        "--root-user-action=ignore", "--no-cache-dir", "/opt/nftfwd-src",
    )  # fmt: skip


def enter(directory: Path, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run argv in the root as a chroot: no systemd runs there."""
    return subprocess.run(
        [str(DEBIAN_ROOT), "enter", str(directory), *argv],
        capture_output=True, text=True, check=check, timeout=300,
    )  # fmt: skip


class Booted:
    """The root at `directory`, booted; `boot()` again after `shutdown()` is a reboot."""

    def __init__(self, directory: Path, log: Path) -> None:
        self.directory = directory
        self.log = log
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.init_pid = 0

    def boot(self, timeout: float = 60) -> None:
        assert self.nspawn is None
        with open(self.log, "ab") as log:
            self.nspawn = subprocess.Popen(
                ["systemd-nspawn", "-D", str(self.directory), "--register=no", "--keep-unit",
                 "--boot", "--private-network", "--console=passive"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self.init_pid:
            assert time.monotonic() < deadline, f"no init started: {self.log.read_text()[-2000:]}"
            assert self.nspawn.poll() is None, f"nspawn ended: {self.log.read_text()[-2000:]}"
            children = subprocess.run(
                ["pgrep", "-P", str(self.nspawn.pid)], capture_output=True, text=True
            ).stdout.split()
            if children:
                self.init_pid = int(children[0])
            else:
                time.sleep(0.1)
        while True:
            # Until the system manager's D-Bus-less private socket answers at all.
            state = self.run("systemctl", "is-system-running", "--wait", check=False).stdout
            if state.strip() in ("running", "degraded"):
                break
            assert time.monotonic() < deadline, f"boot did not finish: {state!r}"
            time.sleep(0.2)
        failed = self.run("systemctl", "--failed", "--plain", "--no-legend").stdout
        assert state.strip() == "running", f"the container booted degraded:\n{failed}"

    def run(
        self, *argv: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """argv inside the container: its mount, network, PID and other namespaces."""
        assert self.init_pid
        result = subprocess.run(
            ["nsenter", "-t", str(self.init_pid), "-a", *argv],
            capture_output=True, text=True, input=input, timeout=timeout,
        )  # fmt: skip
        if check:
            assert result.returncode == 0, (argv, result.stdout, result.stderr)
        return result

    def popen(self, *argv: str, stdout: int | None = subprocess.PIPE) -> subprocess.Popen[str]:
        """argv in the container's mount and network namespaces, as a process of this
        PID namespace (nsenter execs it, no fork): stop it with its own PID."""
        return subprocess.Popen(
            ["nsenter", "-t", str(self.init_pid), "-m", "-n", "-F", *argv],
            stdout=stdout, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    def shutdown(self, timeout: float = 60) -> None:
        """A clean poweroff: nspawn passes SIGTERM on to init as a shutdown request."""
        if self.nspawn is None:
            return
        self.nspawn.send_signal(signal.SIGTERM)
        try:
            self.nspawn.wait(timeout)
        except subprocess.TimeoutExpired:
            self.nspawn.kill()
            self.nspawn.wait()
        self.nspawn, self.init_pid = None, 0


def wait_for(what: str, check: Callable[[], object], timeout: float = 20) -> None:
    """Poll `check()` until it is true, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


class Monitor:
    """`nft monitor` in the container, read with bounded waits. A probe (a table added
    and deleted in one transaction, named anew each time) marks a point in its stream."""

    def __init__(self, box: Booted) -> None:
        self.box = box
        self.probes = 0
        self.process = box.popen("nft", "monitor")
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        # The monitor subscribes a moment after it starts: probe until one shows.
        for _ in range(50):
            if self.probe(timeout=0.5) is not None:
                return
        self.stop()
        raise AssertionError("nft monitor showed none of 50 probes")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def probe(self, timeout: float) -> list[str] | None:
        """Make a probe; every event since the last probe up to this one's generation
        line, or None if it did not show within `timeout`."""
        self.probes += 1
        name = f"nftfwd_probe{self.probes}"
        self.box.run("nft", f"add table inet {name}; delete table inet {name}")
        events: list[str] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                events.append(self.lines.get(timeout=left))
            except queue.Empty:
                return None
            if events[-1].startswith("# new generation") and events[-2:-1] == [
                f"delete table inet {name}"
            ]:
                return events
        return None

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
