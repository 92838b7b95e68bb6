"""A network namespace of one's own for kernel tests of `nftfwd load`, with its own
state directory (NFTFWD_STATE_DIR), and the guards of `load --confirm` it leaves behind
stopped (by pid) when the test ends."""

from __future__ import annotations

import contextlib
import itertools
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOMELAB = REPO / "examples" / "homelab.yaml"
NFTFWD = str(Path(sys.executable).parent / "nftfwd")
_counter = itertools.count()


@dataclass
class Namespace:
    name: str
    state: Path

    def argv(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, NFTFWD, *args]

    def nftfwd(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(),
            stdin=subprocess.DEVNULL,
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
            stdin=subprocess.DEVNULL,
        )

    def in_mounts(self, setup: str, *args: str) -> subprocess.CompletedProcess[str]:
        """`nftfwd ARGS` in a private mount namespace prepared by the shell `setup`
        (a tmpfs or a read-only bind mount over the state directory, say): the mounts
        go with the namespace when nftfwd ends, and nothing else sees them."""
        script = f"set -e\n{setup}\nexec {shlex.join(self.argv(*args))}"
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            env=self.env(),
            stdin=subprocess.DEVNULL,
        )

    def env(self) -> dict[str, str]:
        return {**os.environ, "NFTFWD_STATE_DIR": str(self.state), "NO_COLOR": "1"}

    def nft(self, *args: str) -> str:
        return subprocess.run(
            ["ip", "netns", "exec", self.name, "nft", *args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def ruleset(self) -> str:
        return self.nft("list", "ruleset")

    def guards(self) -> list[int]:
        """The pids of the guards `load --confirm` started for this state directory."""
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                if b"nftfwd.kernel.guard" in argv and str(self.state).encode() in argv:
                    found.append(int(proc.name))
        return found


def changed_model(tmp_path: Path) -> Path:
    """The homelab example with one forward moved (8080 -> 8081)."""
    path = tmp_path / "changed.yaml"
    path.write_text(HOMELAB.read_text().replace("{port: 8080, to: 80}", "{port: 8081, to: 80}"))
    return path


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        time.sleep(0.05)


@contextlib.contextmanager
def namespace(tmp_path: Path, prefix: str) -> Iterator[Namespace]:
    name = f"{prefix}-{os.getpid()}-{next(_counter)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    made = Namespace(name, tmp_path / "state")
    try:
        yield made
    finally:
        for pid in made.guards():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", name], check=False)
