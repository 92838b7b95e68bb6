"""Faults around the compiler that need no kernel: each is one clear error, never a
traceback, and changes nothing it should not."""

from __future__ import annotations

import os
import subprocess
import sys
from ipaddress import IPv4Network, ip_address
from pathlib import Path

import pytest
from cli_runner import run_cli
from conftest import REPO

from nftfwd.config import SYSCTL_FILE
from nftfwd.errors import NftfwdError
from nftfwd.kernel.conntrack import Flow, gone_entries
from nftfwd.kernel.forwarding import enable_forwarding
from nftfwd.kernel.netlink import Tracked
from nftfwd.kernel.service import installed_table
from nftfwd.kernel.state import read_state_json
from nftfwd.model import Bridge, Host

HOMELAB = REPO / "examples" / "homelab.yaml"


def test_enable_forwarding_changes_nothing_when_it_cannot_persist(tmp_path: Path) -> None:
    proc = tmp_path / "proc/sys/net/ipv4/ip_forward"
    proc.parent.mkdir(parents=True)
    proc.write_text("0\n")
    (tmp_path / SYSCTL_FILE.parent).parent.mkdir(parents=True)
    (tmp_path / SYSCTL_FILE.parent).write_text("a file where a directory belongs\n")
    bridge = Bridge("virbr0", IPv4Network("192.168.122.0/24"), None, True, ())
    with pytest.raises(NftfwdError, match=r"cannot write .*90-nftfwd.conf .*nothing was changed"):
        enable_forwarding(Host("h", ("eth0",), (), True, (bridge,)), tmp_path)
    assert proc.read_text() == "0\n"


def test_install_into_a_root_that_is_a_file_is_a_located_error(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.write_text("")
    result = run_cli("install", str(HOMELAB), "--root", str(root))
    assert result.code == 2
    assert f"--root {root}: not a directory" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("model", "state", "table", "source"),
    [
        ("version: 1\ntable: forwards  # ours\nhosts: [\n", None, "forwards", "`table:` line"),
        (
            "version: 1\nhosts: [\n",
            '{"family": "inet", "table": "fromstate"}',
            "fromstate",
            "state",
        ),
        ("version: 1\nhosts: [\n", '{"table": "x; flush ruleset"}', "nftfwd", "the default"),
    ],
    ids=["table-line", "state-record", "default"],
)
def test_uninstall_finds_the_table_of_a_broken_model(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    model: str,
    state: str | None,
    table: str,
    source: str,
) -> None:
    path = tmp_path / "nftfwd.yaml"
    path.write_text(model)
    monkeypatch.setenv("NFTFWD_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "state").mkdir()
    if state is not None:
        (tmp_path / "state" / "table.json").write_text(state)
    name, note = installed_table(path)
    assert name == table
    assert note is not None and "is broken" in note and source in note


def test_uninstall_reads_a_good_model_as_it_is(tmp_path: Path) -> None:
    assert installed_table(HOMELAB, use_state=False) == ("nftfwd", None)
    assert installed_table(tmp_path / "absent.yaml", use_state=False) == ("nftfwd", None)


def test_a_corrupt_state_file_is_set_aside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pending-confirm.json"
    path.write_bytes(b'{"generation": \xff')
    assert read_state_json(path) is None
    assert not path.exists() and (tmp_path / "pending-confirm.json.corrupt").exists()
    assert "set aside as" in capsys.readouterr().err


BROKEN_BINDINGS = {
    "mismatched": "class Nftables:\n    def __init__(self):\n        self.lib.nft_ctx_new()\n",
    "import-fails": "raise AttributeError('libnftables.so.1 has no symbol nft_ctx_new')\n",
    "too-old": "class Nftables:\n    def cmd(self, text):\n        return 0, '', ''\n",
}


@pytest.mark.parametrize("source", BROKEN_BINDINGS.values(), ids=BROKEN_BINDINGS.keys())
def test_a_broken_nftables_binding_names_the_package(tmp_path: Path, source: str) -> None:
    fake = tmp_path / "nftables"
    fake.mkdir()
    (fake / "__init__.py").write_text(source)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "nftfwd"), "check", str(HOMELAB)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "python3-nftables" in result.stderr and "Traceback" not in result.stderr


def _tracked(
    family: str, proto: int, dport: int, guest: str, guest_port: int, zone: int = 0
) -> Tracked:
    client, host = (
        ("198.51.100.7", "203.0.113.1") if family == "ip" else ("2001:db8::7", "2001:db8::1")
    )
    return Tracked(
        family,
        proto,
        ip_address(client).packed,
        ip_address(host).packed,
        40000 + dport % 1000,
        dport,
        ip_address(guest).packed,
        guest_port,
        zone,
    )


def test_one_listing_selects_only_the_flows_of_removed_forwards() -> None:
    # 8080-8090 went to .10 port 80-90, over tcp: the same offsets only, in any zone.
    removed = [Flow("ip", "tcp", 8080, 8090, "192.168.122.10", 80)]
    through_it = [_tracked("ip", 6, 8080, "192.168.122.10", 80)]
    through_it.append(_tracked("ip", 6, 8085, "192.168.122.10", 85, zone=3))
    elsewhere = [
        _tracked("ip", 6, 8085, "192.168.122.10", 80),  # another offset: another forward
        _tracked("ip", 6, 8443, "192.168.122.11", 443),  # a forward that stays
        _tracked("ip", 17, 8080, "192.168.122.10", 80),  # udp: not this forward
        _tracked("ip", 6, 8091, "192.168.122.10", 91),  # past the range
    ]
    assert gone_entries([*elsewhere, *through_it], removed) == through_it


def test_a_range_onto_one_port_selects_every_host_port_to_that_port() -> None:
    # 7100-7102 all went to .10 port 80 (step 0); 8000-8002 to 9000-9002 (offsets kept).
    removed = [
        Flow("ip", "tcp", 7100, 7102, "192.168.122.10", 80, step=0),
        Flow("ip", "tcp", 8000, 8002, "192.168.122.10", 9000),
    ]
    through_it = [_tracked("ip", 6, port, "192.168.122.10", 80) for port in (7100, 7101, 7102)]
    through_it.append(_tracked("ip", 6, 8001, "192.168.122.10", 9001))
    elsewhere = [
        _tracked("ip", 6, 7101, "192.168.122.10", 81),  # an offset: not the one-port forward
        _tracked("ip", 6, 7103, "192.168.122.10", 80),  # past the range
        _tracked("ip", 6, 8001, "192.168.122.10", 9000),  # not the offset of 8000-8002
    ]
    assert gone_entries([*elsewhere, *through_it], removed) == through_it
    assert Flow.from_json(removed[0].as_json()) == removed[0]  # a pending --confirm keeps it


def test_ipv6_flows_match_whatever_the_spelling_of_the_address() -> None:
    removed = [Flow("ip6", "udp", 1, 65535, "fd00:122::10", 1)]
    entry = _tracked("ip6", 17, 27015, "fd00:122:0:0:0:0:0:10", 27015)
    assert gone_entries([entry], removed) == [entry]
