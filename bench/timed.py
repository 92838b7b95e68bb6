"""Timed commands for the benchmark, in a network namespace or not (standard library only).

The namespaces are the test harness's (tests/harness, see bench/setup.py). A command is
stopped by the process group it leads (``start_new_session``) when its time is up.

Commands run inside a namespace by ``setns(2)`` in the child just before ``exec``: the
same network namespace ``ip netns exec`` would enter, without its extra mount
namespace and /sys remount (a few milliseconds that would land on every sample).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")
MB = 1024.0
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


def med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summary(samples: list[Timed]) -> dict[str, Any]:
    """Median/min/max of the successful samples, and the first error if any failed."""
    good = [s for s in samples if s.ok]
    out: dict[str, Any] = {
        "n_ok": len(good),
        "n_failed": len(samples) - len(good),
        "median_s": med([s.seconds for s in good]),
        "min_s": min((s.seconds for s in good), default=None),
        "max_s": max((s.seconds for s in good), default=None),
        "samples_s": [round(s.seconds, 4) for s in samples],
        "maxrss_mb": round(max((s.maxrss_kb for s in samples), default=0) / MB, 1),
    }
    failed = [s for s in samples if not s.ok]
    if failed:
        f = failed[0]
        out["error"] = "timed out" if f.timed_out else f.first_error_line()
        out["error_seconds"] = round(f.seconds, 3)
        out["error_exit"] = f.returncode
        out["error_stderr_tail"] = f.stderr_tail()
    return out
