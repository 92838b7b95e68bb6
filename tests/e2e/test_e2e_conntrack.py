"""A forward removed by a load no longer carries a connection opened through it, while a
connection through a forward that stays keeps working (conntrack entries are deleted
per removed forward, not flushed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import Topology
from wire import load, read_model

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


def test_a_removed_range_onto_one_port_closes_each_of_its_connections(tmp_path: Path) -> None:
    """Every host port of `{port: "7100-7102", to: 9100}` was DNATed to 9100: the flows to
    delete are found by that port, not by an offset into a range (9101, 9102)."""
    model = MODEL.replace("{port: 8080, to: 80}", '{port: "7100-7102", to: 80}')
    before = tmp_path / "before.yaml"
    before.write_text(model)
    after = tmp_path / "after.yaml"
    after.write_text(model.replace('              - {port: "7100-7102", to: 80}\n', ""))
    with Topology(read_model(before), "kvm") as topo:
        topo.serve("web", [80, 81, 82, 443], protos=("tcp",))
        load(topo, before, "kvm")
        host = topo.host_address(4)
        sessions = [topo.open_session("client0", host, port) for port in (7100, 7101, 7102)]
        kept = topo.open_session("client0", host, 8443)
        assert [s.exchange("one").port for s in sessions] == [80, 80, 80]
        load(topo, after, "kvm")
        for port, session in zip((7100, 7101, 7102), sessions, strict=True):
            gone = session.exchange("two", timeout=1.0)
            assert not gone.ok, f"host port {port}: the removed forward still carried {gone}"
            session.close()
        assert kept.exchange("two").port == 443  # untouched by the load
        kept.close()
