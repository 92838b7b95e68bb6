"""A forward removed by a load no longer carries a connection opened through it, while a
connection through a forward that stays keeps working (conntrack entries are deleted
per removed forward, not flushed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e import load, read_model
from harness import Topology

pytestmark = pytest.mark.kernel

MODEL = """
version: 1
hosts:
  kvm:
    uplinks: [eth0]
    bridges:
      virbr0:
        subnet: 192.168.122.0/24
        guests:
          web:
            address: 192.168.122.10
            forwards:
              - {port: 8080, to: 80}
              - {port: 8443, to: 443}
"""


def test_removed_forward_stops_carrying_an_established_connection(tmp_path: Path) -> None:
    before = tmp_path / "before.yaml"
    before.write_text(MODEL)
    after = tmp_path / "after.yaml"
    after.write_text(MODEL.replace("              - {port: 8080, to: 80}\n", ""))
    with Topology(read_model(before), "kvm") as topo:
        topo.serve("web", [80, 443], protos=("tcp",))
        load(topo, before, "kvm")
        host = topo.host_address(4)
        removed = topo.open_session("client0", host, 8080)
        kept = topo.open_session("client0", host, 8443)
        assert removed.exchange("one").guest == "web"
        assert kept.exchange("one").port == 443
        load(topo, after, "kvm")
        gone = removed.exchange("two", timeout=1.0)
        assert not gone.ok, f"removed forward still carried the connection: {gone}"
        assert kept.exchange("two").port == 443  # untouched by the load
        assert not topo.request("client0", "tcp", host, 8080, timeout=1.0).ok
        removed.close()
        kept.close()
