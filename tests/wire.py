"""Shared helpers of the end-to-end kernel tests: load a model into a topology's host
namespace with the real `nftfwd` command, and probe it (several probes at once, so
the expected-failure probes, each waiting its timeout, cost one timeout together).
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from harness import Reply, Topology

TESTS = Path(__file__).resolve().parent
DATA = TESTS / "data" / "e2e"
NFTFWD = Path(sys.executable).parent / "nftfwd"
_STATE_ROOT = Path(tempfile.mkdtemp(prefix="nftfwd-e2e-state-"))
atexit.register(shutil.rmtree, _STATE_ROOT, True)

# A probe that must fail waits this long (connections that are dropped never answer).
FAIL_TIMEOUT = 1.0
# A probe that must succeed may take this long (a first packet may wait for ARP/ND).
OK_TIMEOUT = 3.0
# How the host refuses, or drops, what it must not forward.
BLOCKED = ("refused", "timeout")
# How a dropped packet looks to the sender: nobody ever answers.
DROPPED = ("timeout",)


def model_path(name: str) -> Path:
    """A purpose-made model of tests/data/e2e (``name`` without ``.yaml``)."""
    path = DATA / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


def read_model(path: Path) -> dict[str, Any]:
    model: dict[str, Any] = yaml.safe_load(path.read_text())
    return model


def state_dir(topo: Topology) -> Path:
    """nftfwd's state directory for one topology (NFTFWD_STATE_DIR): its lock, last good
    ruleset and pending confirmation stay with the test, never in /var/lib/nftfwd."""
    return _STATE_ROOT / topo.prefix.rstrip("-")


def nftfwd(topo: Topology, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``nftfwd ARGS`` inside the host namespace (never raises on its exit code).

    Its stdin is an empty pipe, not the terminal pytest runs in: it never asks.
    """
    argv = ["env", f"NFTFWD_STATE_DIR={state_dir(topo)}", str(NFTFWD), *args]
    return topo.run("host", argv, check=False, input="", timeout=timeout)


def load(
    topo: Topology, model: Path, host: str, *extra: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``nftfwd load MODEL --host HOST --atomic --yes`` inside the host namespace.

    With ``check`` (the default) a non-zero exit fails the test with nftfwd's output.
    """
    args = ["load", str(model), "--host", host, "--atomic", "--yes", *extra]
    done = nftfwd(topo, *args)
    if check and done.returncode != 0:
        raise AssertionError(
            f"nftfwd {' '.join(args)} exited {done.returncode}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    return done


def ruleset(topo: Topology, *what: str) -> str:
    """``nft list ruleset`` (or ``nft list <what>``) in the host namespace."""
    argv = ["nft", "list", *what] if what else ["nft", "list", "ruleset"]
    return topo.run("host", argv).stdout


@dataclass(frozen=True)
class Probe:
    """One request of ``Topology.request``."""

    src: str
    proto: str
    dst: str
    port: int
    source: str | None = None

    def __str__(self) -> str:
        via = f" from {self.source}" if self.source else ""
        return f"{self.src}{via} -> {self.proto} {self.dst} port {self.port}"


def tcp(src: str, dst: str, port: int, source: str | None = None) -> Probe:
    return Probe(src, "tcp", dst, port, source)


def udp(src: str, dst: str, port: int, source: str | None = None) -> Probe:
    return Probe(src, "udp", dst, port, source)


def send(topo: Topology, probes: Sequence[Probe], timeout: float) -> list[Reply]:
    """Run the probes concurrently; the replies in the probes' order."""

    def one(probe: Probe) -> Reply:
        return topo.request(
            probe.src, probe.proto, probe.dst, probe.port, source=probe.source, timeout=timeout
        )

    with ThreadPoolExecutor(max_workers=max(1, min(len(probes), 16))) as pool:
        return list(pool.map(one, probes))


Seen = tuple[str | None, str | None, int | None]


def seen(reply: Reply) -> Seen:
    """What the answering server saw: (its name, the peer address, its local port)."""
    return (reply.guest, reply.peer, reply.port)


def expect_reached(topo: Topology, expected: Sequence[tuple[Probe, Seen]]) -> None:
    """Each probe is answered, and the server saw exactly (name, peer, port)."""
    replies = send(topo, [probe for probe, _ in expected], OK_TIMEOUT)
    wrong = [
        f"{probe}: expected {want}, got {seen(reply)} (error {reply.error})"
        for (probe, want), reply in zip(expected, replies, strict=True)
        if not reply.ok or seen(reply) != want
    ]
    assert not wrong, "\n".join(wrong)


def expect_blocked(
    topo: Topology, probes: Sequence[Probe], errors: Sequence[str] = BLOCKED
) -> None:
    """No probe is answered by anyone; each fails with one of ``errors``.

    ``("timeout",)`` asserts a drop; the default also accepts the host's own refusal
    (TCP reset or ICMP port unreachable: the packet was not forwarded).
    """
    expect_failures(topo, [(probe, errors) for probe in probes])


def expect_failures(topo: Topology, expected: Sequence[tuple[Probe, Sequence[str]]]) -> None:
    """Like expect_blocked, with the accepted errors given per probe (one wait for all)."""
    replies = send(topo, [probe for probe, _ in expected], FAIL_TIMEOUT)
    wrong = [
        f"{probe}: expected {'/'.join(errors)}, got "
        + (f"an answer {seen(reply)}" if reply.ok else f"error {reply.error}")
        for (probe, errors), reply in zip(expected, replies, strict=True)
        if reply.ok or reply.error not in errors
    ]
    assert not wrong, "\n".join(wrong)
