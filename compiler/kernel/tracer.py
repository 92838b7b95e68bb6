"""The host side of `nftfwd trace`: its table added and removed through libnftables, and
`nft monitor` run as a child process (libnftables' `monitor` never returns) whose lines
are read until a deadline. The child is ended by its pid, never by name."""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import select
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from nftfwd.errors import NftfwdError
from nftfwd.kernel.libnft import Nft, table_outlines
from nftfwd.model import IPAddress
from nftfwd.trace_plan import READY_CHAIN, TRACE_FAMILY, TRACE_TABLE, owner_pid

# How long the monitor may take to start listening (nft reads the ruleset first).
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 2.0
PR_SET_PDEATHSIG = 1  # prctl(2)
# How long to wait for the monitor to report the first change before making the next.
READY_POKE = 0.02


class TraceRunning(NftfwdError):
    """Another trace holds the trace table."""


def _alive(pid: int) -> bool:
    """The process `pid` exists and is an nftfwd (a reused pid of another program is not)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"nftfwd" in cmdline


def add_trace_table(nft: Nft, script: str, outline: str) -> bool:
    """Put the trace table in place in one transaction. A table left by a trace that is
    gone is removed in the same transaction (True is returned then); one of a running
    trace is refused."""
    existing = table_outlines(outline).get((TRACE_FAMILY, TRACE_TABLE))
    stale = False
    if existing is not None:
        pid = owner_pid(existing)
        if pid is not None and pid != os.getpid() and _alive(pid):
            raise TraceRunning(
                f"another trace is running (pid {pid}): one trace at a time; wait for it "
                f"to end, or stop it (kill {pid})."
            )
        stale = True
    delete = f"delete table {TRACE_FAMILY} {TRACE_TABLE}\n" if stale else ""
    try:
        nft.apply_text(delete + script, what="adding the trace table")
    except NftfwdError as err:
        if "File exists" in str(err):
            raise TraceRunning(
                "another trace started at the same time: one trace at a time; try again."
            ) from None
        raise
    return stale


def remove_trace_table(nft: Nft) -> None:
    """Remove the trace table, if it is there (a `destroy` would need nft 1.0.8)."""
    if nft.table_outline(TRACE_FAMILY, TRACE_TABLE) is not None:
        with contextlib.suppress(NftfwdError):  # gone meanwhile: what was wanted
            nft.apply_text(f"delete table {TRACE_FAMILY} {TRACE_TABLE}\n", "removing the trace")


def _die_with_parent() -> None:
    """In the monitor child before it runs nft: the kernel kills it when nftfwd ends,
    however nftfwd ends (SIGKILL included), so that no monitor outlives its trace."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Monitor:
    """`nft -a monitor` (every event: the trace events, and the ruleset change that says
    the monitor listens) as a child process in a session of its own, so that Ctrl-C on
    the terminal reaches nftfwd, which ends the child itself."""

    def __init__(self) -> None:
        nft = shutil.which("nft")
        if nft is None:
            raise NftfwdError(
                "trace needs the nft program; install nftables (apt-get install nftables)."
            )
        self.process = subprocess.Popen(
            [nft, "-a", "monitor"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self._buffer = b""

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, nft: Nft) -> None:
        """Make changes the monitor reports (an empty chain in the trace table, a new one
        each time) until it reports one: it has then subscribed, and reports every trace
        event from here on. nft reads the whole ruleset first, set elements included (2
        to 3 s for 10,000 forwards with nft 1.0.6), so the changes come further and
        further apart: each one is an event the monitor must handle once it listens."""
        give_up = time.monotonic() + READY_TIMEOUT
        pause = READY_POKE
        marker = f"chain {TRACE_FAMILY} {TRACE_TABLE} {READY_CHAIN}"
        for n in itertools.count():
            chain = f"{READY_CHAIN}{n}"
            nft.apply_text(f"add chain {TRACE_FAMILY} {TRACE_TABLE} {chain}\n", "tracing")
            for line in self.lines(min(give_up, time.monotonic() + pause)):
                if line.startswith("add chain") and marker in line:
                    return
            if time.monotonic() >= give_up or self.process.poll() is not None:
                break
            pause = min(pause * 2, 1.0)
        raise NftfwdError(f"`nft monitor` did not start within {READY_TIMEOUT:.0f} s{self._why()}.")

    def _why(self) -> str:
        if self.process.poll() is None:
            return ""
        assert self.process.stderr is not None
        err = self.process.stderr.read().decode(errors="replace").strip()
        return f" (it exited {self.process.returncode}: {err})" if err else ""

    def lines(self, deadline: float) -> Iterator[str]:
        """Each line the monitor prints until the deadline (or until it ends)."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                yield line.decode(errors="replace")
            left = deadline - time.monotonic()
            if left <= 0:
                return
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return
            chunk = os.read(fd, 65536)
            if not chunk:
                if self.process.poll() not in (None, 0, -signal.SIGTERM):
                    raise NftfwdError(f"`nft monitor` ended{self._why()}.")
                return
            self._buffer += chunk

    def stop(self) -> None:
        """End the child by its pid: SIGTERM, then SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


class Probe:
    """`--probe`: one connection from the host to the forward (hairpin from the host),
    opened without waiting; closed when the trace ends."""

    def __init__(self, proto: str, address: IPAddress, port: int) -> None:
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        self.sock = socket.socket(family, kind)
        self.sock.setblocking(False)
        try:
            if proto == "tcp":
                self.sock.connect_ex((str(address), port))
            else:
                self.sock.sendto(b"nftfwd trace\n", (str(address), port))
        except OSError as err:
            self.sock.close()
            raise NftfwdError(f"--probe: cannot connect to {address} port {port}: {err}") from None

    def close(self) -> None:
        self.sock.close()


def uplink_addresses(uplinks: tuple[str, ...]) -> tuple[IPAddress, ...]:
    """The addresses of the host's uplinks, for --probe (doctor's reader of `ip addr`)."""
    from nftfwd.kernel.hoststate import read_links, run_command  # --probe only: doctor's

    links = read_links(run_command)
    return tuple(a for name in uplinks if name in links for a in links[name].addresses)
