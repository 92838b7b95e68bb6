"""The command line: host selection, model search order, formats and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run_cli
from conftest import REPO

from nftfwd.compiler import load_model
from nftfwd.config import select_host
from nftfwd.errors import NftfwdError

HOMELAB = REPO / "examples" / "homelab.yaml"
FLEET = REPO / "examples" / "fleet.yaml"


def test_build_prints_nft_and_json_for_the_only_host() -> None:
    text = run_cli("build", str(HOMELAB))
    assert text.code == 0 and text.stdout.startswith("#!/usr/sbin/nft -f")
    data = run_cli("build", str(HOMELAB), "--format", "json")
    assert data.code == 0
    commands = json.loads(data.stdout)["nftables"]
    assert commands[1] == {"add": {"table": {"family": "inet", "name": "nftfwd"}}}
    assert commands[2] == {"delete": {"table": {"family": "inet", "name": "nftfwd"}}}


def test_several_hosts_need_host_or_a_matching_hostname() -> None:
    result = run_cli("build", str(FLEET))
    assert result.code == 2
    assert "describes several hosts (kvm1, kvm2)" in result.stderr
    model = load_model(FLEET)
    assert select_host(model, None, hostname="KVM2.example.org").name == "kvm2"
    assert select_host(model, None, hostname="kvm1").name == "kvm1"
    with pytest.raises(NftfwdError, match="no host 'kvm9'"):
        select_host(model, "kvm9")


def test_model_is_found_by_env_then_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NFTFWD_CONFIG", raising=False)
    (tmp_path / "nftfwd.yaml").write_text(HOMELAB.read_text())
    assert run_cli("build").code == 0
    monkeypatch.setenv("NFTFWD_CONFIG", str(tmp_path / "missing.yaml"))
    result = run_cli("build")
    assert result.code == 2 and "missing.yaml: no such model file" in result.stderr


def test_unknown_format_is_an_error() -> None:
    result = run_cli("build", str(HOMELAB), "--format", "xml")
    assert result.code == 2 and "'xml' is not one of 'nft', 'json'" in result.stderr


def test_diff_from_compares_two_models_without_root(tmp_path: Path) -> None:
    new = tmp_path / "new.yaml"
    new.write_text(HOMELAB.read_text().replace("{port: 8443, to: 443}", "{port: 9443, to: 443}"))
    same = run_cli("diff", "--from", str(HOMELAB), str(HOMELAB))
    assert same.code == 0 and "no changes" in same.stdout
    changed = run_cli("diff", "--from", str(HOMELAB), str(new))
    assert changed.code == 1
    assert "  - tcp 8443 on any IPv4 host address -> web 192.168.122.10 port 443" in changed.stdout
    assert "  + tcp 9443 on any IPv4 host address -> web 192.168.122.10 port 443" in changed.stdout
    markdown = run_cli("diff", "--from", str(HOMELAB), str(new), "--format", "markdown")
    assert markdown.code == 1
    assert "| removed | tcp 8443 on any IPv4 host address -> web" in markdown.stdout
    assert "```diff" in markdown.stdout


def test_diff_from_covers_every_host_of_a_fleet(tmp_path: Path) -> None:
    result = run_cli("diff", "--from", str(FLEET), str(FLEET))
    assert result.code == 0
    assert "host kvm1" in result.stdout and "host kvm2" in result.stdout


def test_schema_command_prints_the_published_schema() -> None:
    result = run_cli("schema")
    assert json.loads(result.stdout)["title"] == "nftfwd model"


RANGE_MODEL = """\
version: 1
hosts:
  kvm1:
    uplinks: [eth0]
    bridges:
      virbr0:
        subnet: 192.168.122.0/24
        guests:
          web:
            address: 192.168.122.10
            forwards:
              - {FORWARDS}
"""


def test_a_range_onto_one_port_builds_and_diffs_as_one_range(tmp_path: Path) -> None:
    """model.md: `to` is one port or a range as long as `port`; with one port every port
    of the range goes to it (as iptables' DNAT does), and the diff says so in one line."""
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(RANGE_MODEL.replace("{FORWARDS}", '{port: "7100-7102", to: "9100-9102"}'))
    new.write_text(
        RANGE_MODEL.replace(
            "{FORWARDS}",
            '{port: "7100-7102", to: 9100}\n              - {port: "7200-7203", to: 9200, '
            "proto: udp}",
        )
    )
    built = run_cli("build", str(new))
    assert built.code == 0, built.stderr
    for port in (7100, 7101, 7102):
        assert f"tcp . {port} : 9100" in built.stdout
    changed = run_cli("diff", "--from", str(old), str(new))
    assert changed.code == 1
    assert changed.stdout.splitlines()[1:4] == [
        "forwards:",
        "  ~ tcp 7101-7102 on any IPv4 host address -> web 192.168.122.10 port 9100"
        " (was web 192.168.122.10 port 9101-9102)",
        "  + udp 7200-7203 on any IPv4 host address -> web 192.168.122.10 port 9200",
    ], changed.stdout
    markdown = run_cli("diff", "--from", str(old), str(new), "--format", "markdown")
    assert "| added | udp 7200-7203 on any IPv4 host address -> web 192.168.122.10 port 9200 |" in (
        markdown.stdout
    )
    document = json.loads(run_cli("diff", "--from", str(old), str(new), "--format", "json").stdout)
    (moved,) = document["hosts"][0]["forwards"]["changed"]
    assert (moved["host_port"], moved["old"]["guest_port"], moved["new"]["guest_port"]) == (
        {"first": 7101, "last": 7102},
        {"first": 9101, "last": 9102},
        {"first": 9100, "last": 9100},
    )
