"""Fuzzing `build`: generated YAML documents, mutated models and random bytes.

Whatever the input, `build` either compiles it or refuses it with a located error
(NftfwdError, exit 2): never a traceback, never more than a few seconds, never more than
a few hundred MB. In-process for volume (hypothesis, derandomized so CI runs the same
cases), and a few through the command line under an address-space limit (RLIMIT_AS).
Bounded to a few seconds of CI time in all.
"""

from __future__ import annotations

import resource
import runpy
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nftfwd.compiler import compile_host, render
from nftfwd.errors import NftfwdError
from nftfwd.schema import validate_shape
from nftfwd.semantic import build_model
from nftfwd.source import decode_utf8, load_text

EXAMPLE = (REPO / "examples" / "homelab.yaml").read_text(encoding="utf-8")
HOSTILE = runpy.run_path(str(REPO / "bench" / "hostile.py"))
SECONDS_EACH = 5.0
MEMORY_LIMIT = 768 * 1024 * 1024  # address space of a CLI run: Python, its imports, the work


def build(data: bytes) -> str | None:
    """What `nftfwd build` does with a file of `data` for every host of it: the rules,
    or None if the model is refused (NftfwdError). Anything else escapes."""
    try:
        model = build_model(_shaped(load_text(decode_utf8(data, "fuzz.yaml"), "fuzz.yaml")))
        return "".join(
            render(compile_host(model, host), fmt)
            for host in model.hosts
            for fmt in ("nft", "json")
        )
    except NftfwdError as err:
        assert str(err), "an error must say what is wrong"
        return None


def _shaped(doc: Any) -> Any:
    validate_shape(doc)
    return doc


def check(data: bytes) -> None:
    start = time.perf_counter()
    build(data)
    assert time.perf_counter() - start < SECONDS_EACH, data[:200]


# ---- generated documents --------------------------------------------------------------

KEYS = [
    "version", "table", "hosts", "uplinks", "addresses", "hairpin", "bridges", "subnet",
    "subnet6", "masquerade", "guests", "address", "address6", "forwards", "port", "to",
    "proto", "sources", "snat", "kvm1", "br0", "web", "<<", "1", "yes", "~",
]  # fmt: skip
SCALARS = [
    "1", "0", "80", "65535", "65536", "0x50", "0777", "1:20", "8_080", "+80", "8080.0",
    "1e3", ".inf", ".nan", "-1", "'80'", '"8080-8081"', '"8080-8081\\n"', "yes", "no", "~",
    "''", "tcp", "udp", "[tcp, udp]", "eth0", '"eth0\\n"', "10.0.0.2", "10.0.0.0/24",
    '"fd00::1%eth0"', '"::ffff:10.0.0.2"', "0.0.0.0/0", '"::/0"', "fd00::/64", "2024-13-45",
    "!!int abc", "!!timestamp abc", "!custom x", "!!python/name:os.system x", "!!binary aGk=",
    "!!float 1", "&a 1", "*a", "&b [1, *b]", "{}", "[]", "9" * 200, "=",
]  # fmt: skip


@st.composite
def documents(draw: st.DrawFn) -> str:
    """Block and flow YAML built from the model's keys and tricky scalars, with tags,
    anchors and aliases: mostly near-models, so the later stages are reached too."""

    def node(depth: int, indent: int) -> str:
        kind = draw(
            st.sampled_from(["scalar", "scalar", "map", "seq", "flow"] if depth else ["scalar"])
        )
        pad = " " * indent
        if kind == "scalar":
            return " " + draw(st.sampled_from(SCALARS)) + "\n"
        if kind == "flow":
            return (
                " [" + ", ".join(draw(st.lists(st.sampled_from(SCALARS[:30]), max_size=4))) + "]\n"
            )
        size = draw(st.integers(1, 4))
        anchor = draw(st.sampled_from(["", "", " &m", " &n"]))
        lines = [anchor + "\n"]
        for _ in range(size):
            if kind == "map":
                lines.append(f"{pad}{draw(st.sampled_from(KEYS))}:{node(depth - 1, indent + 2)}")
            else:
                lines.append(f"{pad}-{node(depth - 1, indent + 2)}")
        return "".join(lines)

    top = "".join(
        f"{key}:{node(4, 2)}" for key in draw(st.lists(st.sampled_from(KEYS), max_size=3))
    )
    return draw(st.sampled_from(["version: 1\n", ""])) + "hosts:\n  h:" + node(5, 4) + top


@settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(documents())
def test_generated_documents_build_or_are_refused(text: str) -> None:
    check(text.encode("utf-8"))


NEAR_MODEL = """version: {version}
hosts:
  {host}:
    uplinks: [{uplink}]
    addresses: [{address}]
    bridges:
      {bridge}:
        subnet: {subnet}
        subnet6: {subnet6}
        guests:
          {guest}:
            address: {guest4}
            address6: {guest6}
            forwards:
              - {{port: {port}, to: {to}, proto: {proto}, sources: [{source}]}}
              - {{port: {port2}, snat: {snat}, address: {address}}}
"""
GOOD = {
    "version": ["1"],
    "host": ["kvm1", "web1.example.com"],
    "uplink": ["eth0", "enp2s0"],
    "address": ["203.0.113.1", '"2001:db8::1"'],
    "bridge": ["virbr0", "br0"],
    "subnet": ["192.168.122.0/24", "10.0.0.0/8"],
    "subnet6": ["fd00:122::/64", '"fd00::/48"'],
    "guest": ["web", "g1"],
    "guest4": ["192.168.122.10", "10.0.0.2"],
    "guest6": ['"fd00:122::10"', '"fd00::2"'],
    "port": ["8080", '"27015-27020"'],
    "to": ["80", '"27015-27020"', "8080"],
    "proto": ["tcp", "[tcp, udp]"],
    "source": ["198.51.100.0/24", '"2001:db8:100::/48"'],
    "port2": ["2222", "5432"],
    "snat": ["true", "false"],
}


@st.composite
def near_models(draw: st.DrawFn) -> str:
    """The model of README with each value good (mostly) or hostile: later stages too."""
    values = {
        key: draw(st.sampled_from(good if draw(st.integers(0, 5)) else SCALARS))
        for key, good in GOOD.items()
    }
    return NEAR_MODEL.format(**values)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(near_models())
def test_near_models_build_or_are_refused(text: str) -> None:
    check(text.encode("utf-8"))


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.data())
def test_mutated_models_build_or_are_refused(data: st.DataObject) -> None:
    # An example model with a few of its characters replaced, removed or repeated.
    text = EXAMPLE
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text) - 1))
        cut = data.draw(st.integers(0, 8))
        insert = data.draw(
            st.sampled_from(
                [
                    "",
                    " ",
                    "\n",
                    ":",
                    "- ",
                    "[",
                    "]",
                    "{",
                    "}",
                    "&a ",
                    "*a",
                    "!x ",
                    "0x",
                    "%",
                    "\t",
                    "\x00",
                    "é",
                    '"',
                    "'",
                ]
            )
        )
        text = text[:at] + insert + text[at + cut :]
    check(text.encode("utf-8"))


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_are_refused(data: bytes) -> None:
    check(data)


@settings(max_examples=100, derandomize=True, deadline=None)
@given(st.binary(max_size=256))
def test_random_bytes_inside_a_model_are_refused_or_build(data: bytes) -> None:
    check(EXAMPLE.encode("utf-8")[:600] + data + EXAMPLE.encode("utf-8")[600:])


# ---- through the command line, under a memory limit -----------------------------------


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


CLI_CASES = {
    "valid example": EXAMPLE.encode(),
    "alias bomb": HOSTILE["alias_bomb"]().encode(),
    "deep nesting": b"version: 1\nhosts: " + b"[" * 200_000,
    "random bytes": bytes(range(256)) * 16,
    "tags and aliases": b"version: 1\nhosts: &h {h: {uplinks: [!custom eth0, *h]}}\n",
    "junk keys": b"version: 1\n" + b"".join(b"junk%d: [1, 2]\n" % i for i in range(50_000)),
}


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_cli_build_never_crashes_hangs_or_grows(name: str, tmp_path: Path) -> None:
    model = tmp_path / "model.yaml"
    model.write_bytes(CLI_CASES[name])
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "nftfwd", "build", str(model)],
        capture_output=True,
        timeout=30,
        preexec_fn=_limited,
        check=False,
    )
    assert time.perf_counter() - start < 2 * SECONDS_EACH  # the process's start included
    assert run.returncode in (0, 2), run.stderr
    assert b"Traceback" not in run.stderr and b"MemoryError" not in run.stderr
    if run.returncode == 2:
        assert run.stdout == b""
        assert run.stderr.startswith(b"error: ")
        assert len(run.stderr) < 20_000
