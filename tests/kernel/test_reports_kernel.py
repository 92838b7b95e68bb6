"""`nftfwd diff --format json` and `--format markdown` against a live table, in a network
namespace made for the test (the root namespace's ruleset is never touched)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from jsonschema import Draft202012Validator

HOMELAB = REPO / "examples" / "homelab.yaml"
NFTFWD = str(Path(sys.executable).parent / "nftfwd")
SCHEMA = json.loads((REPO / "schemas" / "diff.schema.json").read_text())

pytestmark = pytest.mark.kernel


@pytest.fixture
def netns(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    name = f"nffreport-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name, tmp_path / "state"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def nftfwd(netns: tuple[str, Path], *args: str) -> subprocess.CompletedProcess[str]:
    name, state = netns
    return subprocess.run(
        ["ip", "netns", "exec", name, NFTFWD, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NFTFWD_STATE_DIR": str(state)},
        stdin=subprocess.DEVNULL,
    )


def diff_json(netns: tuple[str, Path], model: Path) -> tuple[int, dict[str, Any]]:
    done = nftfwd(netns, "diff", str(model), "--format", "json")
    assert done.returncode in (0, 1), done.stderr
    document = json.loads(done.stdout)
    Draft202012Validator(SCHEMA).validate(document)
    assert (document["format"], document["against"]) == (1, "host")
    return done.returncode, document


def test_diff_json_and_markdown_against_the_live_table(
    netns: tuple[str, Path], tmp_path: Path
) -> None:
    code, first = diff_json(netns, HOMELAB)  # nothing loaded yet: everything is added
    (host,) = first["hosts"]
    assert (code, host["changed"], host["rules_changed"]) == (1, True, True)
    assert host["forwards"]["removed"] == host["forwards"]["changed"] == []
    games = [f for f in host["forwards"]["added"] if f["guest"] == "games"]
    assert [(f["protocol"], f["host_port"], f["guest_port"]) for f in games] == [
        (proto, {"first": 27015, "last": 27017}, {"first": 28015, "last": 28017})
        for proto in ("tcp", "udp")
    ]

    loaded = nftfwd(netns, "load", str(HOMELAB), "--atomic", "--yes")
    assert loaded.returncode == 0, loaded.stderr
    code, same = diff_json(netns, HOMELAB)
    assert code == 0 and same["changed"] is False
    assert same["hosts"][0]["forwards"] == {"added": [], "removed": [], "changed": []}

    new = tmp_path / "new.yaml"
    new.write_text(HOMELAB.read_text().replace("{port: 8080, to: 80}", "{port: 8080, to: 81}"))
    code, moved = diff_json(netns, new)
    (host,) = moved["hosts"]
    assert (code, host["rules_changed"], host["rules_diff"]) == (1, False, [])
    assert host["forwards"]["changed"] == [
        {
            "protocol": "tcp",
            "family": family,
            "listen_address": None,
            "host_port": {"first": 8080, "last": 8080},
            "sources": None,
            "old": {
                "guest": "web",
                "guest_address": address,
                "guest_port": {"first": 80, "last": 80},
            },
            "new": {
                "guest": "web",
                "guest_address": address,
                "guest_port": {"first": 81, "last": 81},
            },
        }
        for family, address in (("ipv4", "192.168.122.10"), ("ipv6", "fd00:122::10"))
    ]
    assert host["elements"] == {"added": 2, "removed": 2}

    markdown = nftfwd(netns, "diff", str(new), "--format", "markdown")
    assert markdown.returncode == 1
    assert "```mermaid\nflowchart LR\n" in markdown.stdout
    assert '["web 192.168.122.10<br>port 81"]' in markdown.stdout
    assert "-.->|was|" in markdown.stdout and "-->|now|" in markdown.stdout
