"""--enable-forwarding: sysctls set now and persisted, SLAAC uplinks keep their routes."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from nftfwd.config import SYSCTL_FILE
from nftfwd.kernel.forwarding import enable_forwarding
from nftfwd.model import Bridge, Host


def _host(v6: bool) -> Host:
    bridge = Bridge(
        "virbr0",
        IPv4Network("192.168.122.0/24"),
        IPv6Network("fd00::/64") if v6 else None,
        True,
        (),
    )
    return Host("h", ("eth0", "eth0.100"), (), True, (bridge,))


def _proc(root: Path, values: dict[str, str]) -> None:
    for key, value in values.items():
        path = root / "proc/sys" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")


def test_ipv4_only_host_sets_ip_forward_now_and_at_boot(tmp_path: Path) -> None:
    _proc(tmp_path, {"net/ipv4/ip_forward": "0"})
    changed = enable_forwarding(_host(v6=False), tmp_path)
    assert [s.key for s in changed] == ["net/ipv4/ip_forward"]
    assert (tmp_path / "proc/sys/net/ipv4/ip_forward").read_text() == "1\n"
    persisted = (tmp_path / SYSCTL_FILE).read_text()
    assert "net/ipv4/ip_forward = 1" in persisted and "ipv6" not in persisted


def test_ipv6_forwarding_keeps_slaac_uplinks_accepting_router_advertisements(
    tmp_path: Path,
) -> None:
    _proc(
        tmp_path,
        {
            "net/ipv4/ip_forward": "1",
            "net/ipv6/conf/all/forwarding": "0",
            "net/ipv6/conf/eth0/accept_ra": "1",
            "net/ipv6/conf/eth0/autoconf": "1",
            "net/ipv6/conf/eth0.100/accept_ra": "0",
            "net/ipv6/conf/eth0.100/autoconf": "1",
        },
    )
    changed = enable_forwarding(_host(v6=True), tmp_path)
    assert [s.key for s in changed] == [
        "net/ipv6/conf/all/forwarding",
        "net/ipv6/conf/eth0/accept_ra",
    ]
    assert (tmp_path / "proc/sys/net/ipv6/conf/eth0/accept_ra").read_text() == "2\n"
    assert (tmp_path / "proc/sys/net/ipv6/conf/eth0.100/accept_ra").read_text() == "0\n"
    persisted = (tmp_path / SYSCTL_FILE).read_text()
    assert "net/ipv6/conf/eth0/accept_ra = 2" in persisted
    assert enable_forwarding(_host(v6=True), tmp_path) == []  # idempotent
    assert (tmp_path / SYSCTL_FILE).read_text() == persisted
