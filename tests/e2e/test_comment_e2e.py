"""A load that changes only a forward's comment keeps the connections open through it;
one that retargets the forward as well closes them."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import Topology
from wire import load, read_model, ruleset

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
            comment: "the web guest"
            forwards:
              - {port: 8080, to: 80, comment: "HTTP, before"}
              - {port: 8443, to: 443}
"""


def test_a_new_comment_keeps_the_connection_and_a_new_target_closes_it(tmp_path: Path) -> None:
    before = tmp_path / "before.yaml"
    before.write_text(MODEL)
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(MODEL.replace("HTTP, before", "HTTP, after").replace("the web", "a web"))
    moved = tmp_path / "moved.yaml"
    moved.write_text(MODEL.replace("{port: 8443, to: 443}", "{port: 8443, to: 80}"))
    with Topology(read_model(before), "kvm") as topo:
        topo.serve("web", [80, 443], protos=("tcp",))
        load(topo, before, "kvm")
        host = topo.host_address(4)
        http = topo.open_session("client0", host, 8080)
        https = topo.open_session("client0", host, 8443)
        assert http.exchange("one").port == 80
        assert https.exchange("one").port == 443
        done = load(topo, renamed, "kvm")
        assert "closed" not in done.stdout + done.stderr
        listing = ruleset(topo)
        assert 'tcp . 8080 comment "HTTP, after" : 192.168.122.10' in listing
        assert 'tcp . 8443 comment "a web guest" : 192.168.122.10' in listing
        assert http.exchange("two").port == 80  # both kept through the new comments
        assert https.exchange("two").port == 443
        done = load(topo, moved, "kvm")
        assert "closed 1 tracked connections" in done.stdout + done.stderr
        assert not https.exchange("three", timeout=1.0).ok  # retargeted: closed
        assert http.exchange("three").port == 80
        http.close()
        https.close()
