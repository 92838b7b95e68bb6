"""Network namespaces and timed commands for the benchmark (standard library only).

Every namespace is made here and removed by ``Namespaces.close()``; every process is
started here and stopped by its own pid (or the process group it leads, which this
module created with ``start_new_session``). Every wait has a time limit.

Commands run inside a namespace by ``setns(2)`` in the child just before ``exec``: the
same network namespace ``ip netns exec`` would enter, without its extra mount
namespace and /sys remount (a few milliseconds that would land on every sample).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")
_libc = ctypes.CDLL(None, use_errno=True)


class BenchError(RuntimeError):
    """The benchmark could not set something up (not a measured result)."""


def _enter(fd: int | None) -> None:
    if fd is not None and _libc.setns(fd, CLONE_NEWNET) != 0:
        os._exit(127)  # the parent sees the exit code; nothing else is safe here


@dataclass
class Timed:
    """One finished command: wall time, peak RSS, exit code and what it said."""

    argv: list[str]
    seconds: float
    maxrss_kb: int  # largest resident set of the process or any child it waited for
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def first_error_line(self) -> str:
        """The line that says what went wrong: an `error:` line, else a traceback's last."""
        lines = [line.strip() for line in (self.stderr or self.stdout).splitlines() if line.strip()]
        for line in lines:
            if line.lower().startswith("error:"):
                return line[:400]
        if any(line.startswith("Traceback") for line in lines):
            return f"{lines[-1][:400]} (a Python traceback)"
        return lines[0][:400] if lines else f"exit {self.returncode}"

    def stderr_tail(self, count: int = 15) -> list[str]:
        return [line[:300] for line in self.stderr.splitlines()[-count:]]


def run_timed(
    argv: Sequence[str],
    *,
    netns: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    input_text: str | None = None,
    keep_stdout: bool = False,
) -> Timed:
    """Run argv to completion (killed after `timeout`) and measure it with wait4(2)."""
    fd = os.open(NETNS_DIR / netns, os.O_RDONLY | os.O_CLOEXEC) if netns else None
    out_file = open(os.devnull, "wb") if not keep_stdout else None  # noqa: SIM115
    try:
        with tempfile.TemporaryFile() as err_file, tempfile.TemporaryFile() as stdout_file:
            started = time.perf_counter()
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
                stdout=stdout_file if keep_stdout else out_file,
                stderr=err_file,
                env=dict(env) if env is not None else None,
                preexec_fn=(lambda: _enter(fd)) if fd is not None else None,
                start_new_session=True,
            )
            killed = threading.Event()

            def kill() -> None:
                killed.set()
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)

            timer = threading.Timer(timeout, kill)
            timer.daemon = True
            timer.start()
            try:
                if input_text is not None:
                    assert proc.stdin is not None
                    with contextlib.suppress(BrokenPipeError):
                        proc.stdin.write(input_text.encode())
                    proc.stdin.close()
                _, status, usage = os.wait4(proc.pid, 0)
                seconds = time.perf_counter() - started
            finally:
                timer.cancel()
            proc.returncode = os.waitstatus_to_exitcode(status)
            err_file.seek(0)
            stdout_file.seek(0)
            return Timed(
                list(argv),
                seconds,
                usage.ru_maxrss,
                proc.returncode,
                stdout_file.read().decode(errors="replace") if keep_stdout else "",
                err_file.read().decode(errors="replace"),
                killed.is_set(),
            )
    finally:
        if fd is not None:
            os.close(fd)
        if out_file is not None:
            out_file.close()


def run(
    argv: Sequence[str],
    *,
    netns: str | None = None,
    timeout: float = 30.0,
    input_text: str | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> Timed:
    """An untimed helper command; its failure is a setup error unless check=False."""
    result = run_timed(
        argv, netns=netns, timeout=timeout, input_text=input_text, keep_stdout=True, env=env
    )
    if check and not result.ok:
        raise BenchError(
            f"{' '.join(argv)} (in {netns or 'the root namespace'}) failed: "
            f"{'timed out' if result.timed_out else result.first_error_line()}"
        )
    return result


@dataclass
class Namespaces:
    """The namespaces and background processes of one benchmark run."""

    prefix: str
    made: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def add(self, role: str) -> str:
        name = f"{self.prefix}-{role}"
        if (NETNS_DIR / name).exists():
            raise BenchError(f"namespace {name} already exists")
        run(["ip", "netns", "add", name])
        self.made.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def remove(self, name: str) -> None:
        if name in self.made:
            subprocess.run(
                ["ip", "netns", "del", name], capture_output=True, timeout=30, check=False
            )
            self.made.remove(name)

    def start(
        self,
        argv: Sequence[str],
        netns: str,
        env: Mapping[str, str] | None = None,
        ready: str = "READY",
        timeout: float = 10.0,
    ) -> subprocess.Popen[bytes]:
        """Start a background process in `netns`; wait (bounded) for its `ready` line."""
        fd = os.open(NETNS_DIR / netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                preexec_fn=lambda: _enter(fd),
                start_new_session=True,
            )
        finally:
            os.close(fd)
        self.procs.append(proc)
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            ready_fds, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
            if ready_fds:
                line = proc.stdout.readline()
                break
        if line.decode().strip() != ready:
            self.stop(proc)
            raise BenchError(f"{' '.join(argv)} in {netns} did not start: {line!r}")
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=3)
        if proc.stdout is not None:
            proc.stdout.close()
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> None:
        for proc in list(self.procs):
            self.stop(proc)
        for name in list(reversed(self.made)):
            self.remove(name)

    def __enter__(self) -> Namespaces:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
