"""A real libvirtd for tests, with a client and a guest around it (testing.md's recipe).

::

    client ns --veth-- libvirtd's ns: eno1 203.0.113.1/24, virbr0 (made by libvirt itself)
    (eth0 .100)                        |-- vnet0 --veth-- guest ns (eth0 192.168.122.133)

libvirtd runs in a network namespace of its own and a private mount namespace, either on
this host (Debian 12: libvirt 9) or chrooted into a throwaway Debian root
(`debian13_root`: libvirt 11). A holder process (`sleep`) keeps that mount namespace
while libvirtd is stopped and started again; every command of a test runs in it with
`nsenter -t HOLDER -m -n` (plus `-r -w`: the root). In it, tmpfs hides the host's
/run/libvirt, /var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt and /etc/libvirt,
so libvirt starts with no network at all; on this host also /run is a tmpfs and /etc,
/var and /tmp are overlays whose writes stay in the namespace: the libvirt-qemu user
libvirtd needs, nftfwd's model in /etc/nftfwd, its state in /var/lib/nftfwd, and the
libvirt hook find their fixed paths there and never touch the host's.

`close()` ends every process in the namespaces (the holder, libvirtd, its dnsmasq),
each by its pid, and deletes the namespaces; the mounts go with the holder.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import Reply
from harness.topology import _PipeLines, stop_process

REPO = Path(__file__).resolve().parents[2]
DEBIAN_ROOT = REPO / ".ci" / "debian-root"
HARNESS = REPO / "tests" / "harness"
PYTHON = [sys.executable, "-I", "-S"]  # the harness scripts need the standard library only
CACHE = Path(os.environ.get("NFTFWD_CI_CACHE", "/var/cache/nftfwd-ci"))

UPLINK, HOST_ADDRESS, CLIENT_ADDRESS = "eno1", "203.0.113.1", "203.0.113.100"
GUEST_PORT, GUEST_ADDRESS, GUEST_MAC = "vnet0", "192.168.122.133", "52:54:00:00:01:33"
# The environment of every command run beside libvirtd: no NFTFWD_* variable, as for an
# admin's shell (the hook gets even less from libvirt).
ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}

# Debian 13's libvirt and what nftfwd needs there, from Debian's packages (python3-nftables
# is the binding nftfwd uses; the rest are nftfwd's dependencies and its build backend).
DEBIAN13_PACKAGES = (
    "libvirt-daemon libvirt-clients libvirt-daemon-config-network dnsmasq-base nftables "
    "python3-nftables python3-yaml python3-jinja2 python3-jsonschema python3-typer "
    "python3-venv python3-setuptools iproute2 procps"
)
# This kernel has no act_csum tc action, which libvirt 11's nftables backend adds to the
# DHCP traffic of a network's bridge (`tc ... action csum ...`): net-start fails with
# "Failed to load TC action module". The wrapper skips only those tc calls.
TC_WRAPPER = """#!/bin/sh
# Test root only: this kernel has no act_csum; skip the tc calls that need it.
for arg in "$@"; do [ "$arg" = csum ] && exit 0; done
exec /usr/sbin/tc.real "$@"
"""

# Run by the holder in its new mount namespace; $1 is "host" (this host's /) or "root".
SETUP = r"""
set -e
if [ "$1" = host ]; then
    mount -t tmpfs -o mode=0755 tmpfs /run
    for d in etc var tmp; do
        o=/run/.overlay/$d
        mkdir -p $o/upper $o/work
        mount -t overlay overlay -o "lowerdir=/$d,upperdir=$o/upper,workdir=$o/work" /$d
    done
    chmod 1777 /tmp
fi
for d in /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt /etc/libvirt; do
    mkdir -p "$d"
    mount -t tmpfs -o mode=0755 tmpfs "$d"
done
mkdir -p /etc/libvirt/hooks /etc/nftfwd /var/lib/nftfwd
# The Debian 13 root has libvirt's network driver only (the qemu driver would pull QEMU):
# virsh's default URI, qemu:///system there, then finds no driver; name the network's.
[ "$1" = host ] || echo 'uri_default = "network:///system"' >/etc/libvirt/libvirt.conf
# libvirtd refuses to start without the user its qemu driver runs guests as.
grep -q '^libvirt-qemu:' /etc/passwd ||
    echo 'libvirt-qemu:x:64055:64055:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin' >>/etc/passwd
grep -q '^libvirt-qemu:' /etc/group || echo 'libvirt-qemu:x:64055:' >>/etc/group
grep -q '^kvm:' /etc/group || echo 'kvm:x:64056:' >>/etc/group
ip link set lo up
echo "READY $$"
exec sleep 86400
"""

_counter = itertools.count()


def _adopt_orphans() -> None:
    """Become the subreaper of what libvirtd starts: dnsmasq daemonizes, and where pid 1
    does not reap (as in some containers) every one killed would stay a zombie."""
    import ctypes

    pr_set_child_subreaper = 36
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0)


class LibvirtdError(RuntimeError):
    pass


def _run(argv: list[str], *, input: str | None = None, check: bool = True,
         timeout: float = 60) -> subprocess.CompletedProcess[str]:  # fmt: skip
    done = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise LibvirtdError(
            f"{' '.join(argv)} exited {done.returncode}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    return done


def _readline(process: subprocess.Popen[bytes], timeout: float) -> str:
    """The first line `process` prints, within `timeout` seconds ("" if none)."""
    assert process.stdout is not None
    line = _PipeLines(process.stdout.fileno()).readline(time.monotonic() + timeout)
    return line or ""


def _reap_dnsmasq() -> None:
    """Reap the dnsmasq processes libvirt stopped (net-destroy) that we adopted."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError):
            pid, rest = stat.read_text().split(" (", 1)
            comm, _, fields = rest.rpartition(") ")
            state, ppid = fields.split()[:2]
            if comm == "dnsmasq" and state == "Z" and int(ppid) == os.getpid():
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(int(pid), 0)


# --------------------------------------------------------------------------- Debian 13 root


def debian13_root(directory: Path) -> Path:
    """A fresh Debian 13 root in `directory` (an empty directory, for instance a tmpfs)
    with libvirt 11 and nftfwd (this checkout).

    The root with its packages is kept as a tarball in the CI cache (keyed by the package
    list), so only the first run on a machine pays for apt (about 45 s); nftfwd itself is
    installed anew each time, with pip from Debian's own Python packages.
    """
    key = hashlib.sha256(DEBIAN13_PACKAGES.encode()).hexdigest()[:12]
    tarball = CACHE / f"trixie-libvirt-{key}.tar"
    if not tarball.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="trixie-libvirt-", dir=CACHE))
        try:
            _run([str(DEBIAN_ROOT), "make", "trixie", str(staging)], timeout=600)
            install = (
                "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install "
                f"-y -qq --no-install-recommends {DEBIAN13_PACKAGES} && apt-get clean"
            )
            _run([str(DEBIAN_ROOT), "enter", str(staging), "sh", "-c", install], timeout=900)
            part = tarball.with_suffix(".part")
            _run(["tar", "-C", str(staging), "-cf", str(part), "."], timeout=300)
            part.rename(tarball)
        finally:
            shutil.rmtree(staging)
    directory.chmod(0o755)
    _run(["tar", "-C", str(directory), "-xf", str(tarball)], timeout=300)
    tc = directory / "usr/sbin/tc"
    tc.rename(tc.with_name("tc.real"))
    tc.write_text(TC_WRAPPER)
    tc.chmod(0o755)
    source = directory / "opt/nftfwd-src"
    for name in ("compiler", "templates", "schemas"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    pip = (
        "python3 -m venv --system-site-packages /opt/nftfwd && /opt/nftfwd/bin/pip install -q "
        "--no-deps --no-build-isolation --no-index /opt/nftfwd-src"
    )
    _run([str(DEBIAN_ROOT), "enter", str(directory), "sh", "-c", pip], timeout=300)
    return directory


# --------------------------------------------------------------------------- the daemon


class Libvirt:
    """libvirtd in namespaces of its own, a client on its uplink, a guest for virbr0.

    `root` None runs this host's libvirtd and `nftfwd` (this checkout's); else the
    Debian root's (/opt/nftfwd/bin/nftfwd, installed by `debian13_root`).
    """

    def __init__(self, root: Path | None = None) -> None:
        _adopt_orphans()
        self.root = root
        self.nftfwd = (
            "/opt/nftfwd/bin/nftfwd" if root else str(Path(sys.executable).parent / "nftfwd")
        )
        prefix = f"nfr-{os.getpid()}-{next(_counter)}"
        self.ns = {role: f"{prefix}-{role}" for role in ("host", "client", "guest")}
        self.holder: subprocess.Popen[bytes] | None = None
        self.holder_pid = 0
        self.daemon: subprocess.Popen[bytes] | None = None
        self.servers: list[subprocess.Popen[bytes]] = []
        self.log = ""  # what libvirtd printed, for failure messages

    def __enter__(self) -> Libvirt:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- setup and teardown

    def _build(self) -> None:
        for name in self.ns.values():
            _run(["ip", "netns", "add", name])
        host, client, guest = self.ns["host"], self.ns["client"], self.ns["guest"]
        for argv in (
            ["ip", "-n", host, "link", "add", UPLINK, "type", "veth", "peer", "name", "eth0",
             "netns", client],
            ["ip", "-n", host, "addr", "add", f"{HOST_ADDRESS}/24", "dev", UPLINK],
            ["ip", "-n", host, "link", "set", UPLINK, "up"],
            ["ip", "-n", client, "addr", "add", f"{CLIENT_ADDRESS}/24", "dev", "eth0"],
            ["ip", "-n", host, "link", "add", GUEST_PORT, "type", "veth", "peer", "name", "eth0",
             "netns", guest],
            ["ip", "-n", guest, "link", "set", "eth0", "address", GUEST_MAC],
            ["ip", "-n", guest, "addr", "add", f"{GUEST_ADDRESS}/24", "dev", "eth0"],
        ):  # fmt: skip
            _run(argv)
        for ns in (client, guest):
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        _run(["ip", "-n", guest, "route", "add", "default", "via", "192.168.122.1"])
        if self.root:
            enter, mode = [str(DEBIAN_ROOT), "enter", str(self.root)], "root"
        else:
            enter, mode = ["unshare", "-m", "--propagation", "private"], "host"
        self.holder = subprocess.Popen(
            ["ip", "netns", "exec", host, *enter, "sh", "-c", SETUP, "setup", mode],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        line = _readline(self.holder, 20)
        if not line.startswith("READY "):
            raise LibvirtdError(f"the mount namespace was not set up: {line!r}")
        self.holder_pid = int(line.split()[1])
        # Never let a libvirtd loose on the host's own /etc/libvirt: the holder must see
        # tmpfs there (else its pid was not the one inside the namespace).
        mounts = Path(f"/proc/{self.holder_pid}/mountinfo").read_text()
        if not any(m.split()[4] == "/etc/libvirt" for m in mounts.splitlines()):
            raise LibvirtdError("the holder does not see its private /etc/libvirt")

    def close(self) -> None:
        for server in self.servers:
            stop_process(server, timeout=10)
        if self.daemon is not None:
            stop_process(self.daemon, timeout=10)
        # Everything still in the namespaces is ours: the holder, libvirt's dnsmasq.
        for name in self.ns.values():
            pids = _run(["ip", "netns", "pids", name], check=False).stdout.split()
            for pid in map(int, pids):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):  # reap what we adopted
                    os.waitpid(pid, 0)
        if self.holder is not None:
            stop_process(self.holder, timeout=10)
        _reap_dnsmasq()
        for name in self.ns.values():
            _run(["ip", "netns", "delete", name], check=False)

    # ----- commands in libvirtd's namespaces

    def run(self, *argv: str, input: str | None = None, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """`argv` beside libvirtd: its network and mount namespaces (and root)."""
        return _run([*self._enter(), *argv], input=input, check=check, timeout=timeout)

    def _enter(self) -> list[str]:
        """The command prefix that runs a program beside libvirtd, with ENV only."""
        where = ["-r", "-w"] if self.root else ["--wd=/"]
        command = ["nsenter", "-t", str(self.holder_pid), "-m", "-n", *where, "env", "-i"]
        return command + [f"{k}={v}" for k, v in ENV.items()]

    def sh(self, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("sh", "-ec", script, check=check)

    def write(self, path: str, text: str) -> None:
        self.run("sh", "-c", 'cat >"$1"', "write", path, input=text)

    def nftfwd_cmd(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return self.run(self.nftfwd, *args, check=check)

    def nftfwd_popen(self, *args: str) -> subprocess.Popen[str]:
        """`nftfwd ARGS` beside libvirtd, running on (its stdout and stderr piped)."""
        return subprocess.Popen(
            [*self._enter(), self.nftfwd, *args], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def start_daemon(self) -> None:
        """Start libvirtd (foreground, its own pid) and wait until virsh reaches it."""
        self.daemon = subprocess.Popen(
            [*self._enter(), "libvirtd"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.daemon.poll() is not None:
                break
            if self.run("virsh", "-q", "net-list", "--all", check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise LibvirtdError(f"libvirtd did not start:\n{self.stop_daemon()}")

    def stop_daemon(self) -> str:
        """Stop libvirtd (its networks keep running, as on a real host); its output."""
        assert self.daemon is not None
        stop_process(self.daemon, timeout=10)
        assert self.daemon.stdout is not None
        self.log += self.daemon.stdout.read().decode("utf-8", "replace")
        self.daemon.stdout.close()
        self.daemon = None
        return self.log

    # ----- the guest and traffic

    def attach_guest(self, timeout: float = 20) -> None:
        """Put the guest's port on virbr0 (a guest's start does that) and wait until STP
        lets it forward (libvirt's bridges run STP: listening, learning, forwarding)."""
        host = self.ns["host"]
        _run(["ip", "-n", host, "link", "set", GUEST_PORT, "master", "virbr0", "up"])
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            ports = json.loads(_run(["bridge", "-n", host, "-j", "link", "show"]).stdout)
            state = next((p.get("state", "") for p in ports if p["ifname"] == GUEST_PORT), "")
            if state == "forwarding":
                return
            time.sleep(0.2)
        raise LibvirtdError(f"{GUEST_PORT} on virbr0 is {state!r}, not forwarding")

    def serve(self, name: str, port: int) -> None:
        """A server in the guest answering TCP and UDP on `port` with `name`."""
        args = ["--name", name, "--ports", str(port), "--protos", "tcp,udp"]
        server = subprocess.Popen(
            ["ip", "netns", "exec", self.ns["guest"], *PYTHON, str(HARNESS / "server.py"), *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.servers.append(server)
        if _readline(server, 5) != "READY":
            raise LibvirtdError(f"the server in the guest did not start on port {port}")

    def request(self, proto: str, port: int, timeout: float = 2.0) -> Reply:
        """One TCP line or UDP datagram from the client to the host's uplink address."""
        args = ["request", "--proto", proto, "--dst", HOST_ADDRESS, "--port", str(port)]
        args += ["--timeout", str(timeout), "--text", "hello"]
        probe = [*PYTHON, str(HARNESS / "probe.py"), *args]
        done = _run(["ip", "netns", "exec", self.ns["client"], *probe], timeout=timeout + 10)
        reply = json.loads(done.stdout.strip().splitlines()[-1])
        return Reply(bool(reply["ok"]), str(reply["text"]), reply["error"])
