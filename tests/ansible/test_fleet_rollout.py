"""The collection's example playbook, nftfwd.fleet.rollout, on three hypervisors, after a
model change (kvm2 loses its forward 2202, kvm3 gains a UDP forward 9003):

- its check run changes nothing, reports kvm2 and kvm3, and prints README's block ("Fleets
  with Ansible") line for line (`pytest tests/ansible/test_fleet_rollout.py
  --update-readme` rewrites that block from the real output; review with git diff);
- the rollout goes one host at a time: kvm1 (nothing to change) passes its health check,
  kvm2's guest does not answer, so kvm2 is rolled back by its guard and the rollout stops
  before kvm3.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fleet import COLLECTION, HOSTS, REPO, Fleet, fleet, fleet_model, write_model

pytestmark = pytest.mark.kernel

ROLLOUT = COLLECTION / "playbooks" / "rollout.yml"
README = REPO / "README.md"
FIRST_LINE = "PLAY [Roll the nftfwd model out, one hypervisor at a time] "
BLOCK = re.compile(r"^```\n(" + re.escape(FIRST_LINE) + r".*?)^```\n", re.M | re.S)


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Fleet]:
    with fleet(tmp_path) as made:
        yield made


def changed_model() -> dict[str, Any]:
    changed = copy.deepcopy(fleet_model())
    guests = {name: changed["hosts"][name]["bridges"]["br0"]["guests"] for name in HOSTS}
    web2 = guests["kvm2"]["web2"]
    web2["forwards"] = [f for f in web2["forwards"] if f["port"] != 2202]
    guests["kvm3"]["web3"]["forwards"].append({"port": 9003, "to": 9000, "proto": "udp"})
    return changed


def _readme_block(real: str, update: bool) -> None:
    text = README.read_text()
    found = BLOCK.search(text)
    assert found is not None, f"README has no block starting {FIRST_LINE!r}"
    if update:
        README.write_text(text[: found.start(1)] + real + text[found.end(1) :])
        return
    assert found.group(1) == real
    # and the example playbook README shows is the collection's, byte for byte
    assert "```yaml\n" + ROLLOUT.read_text() + "```\n" in text


def test_the_check_run_and_the_rollout_that_stops_at_the_first_failed_host(
    hosts: Fleet, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    model = write_model(tmp_path / "fleet.yaml", fleet_model())
    before = hosts.load(model)
    write_model(model, changed_model())

    # The check run README shows: -e nftfwd_model=fleet.yaml, relative to the current
    # directory (the fleet's runs start in tmp_path).
    check = hosts.play(
        ROLLOUT, "--check", "--diff", nftfwd_model="fleet.yaml", nftfwd_hosts="fleet"
    )
    assert check.code == 0, check.output
    assert check.changed_hosts() == {"kvm2", "kvm3"}
    assert hosts.rulesets() == before
    _readme_block(check.stdout.lstrip("\n"), bool(request.config.getoption("--update-readme")))

    # kvm1's guest answers on port 80 (its forward 8081); kvm2's does not.
    hosts.topologies["kvm1"].serve("web1", [80])
    seconds = 12
    run = hosts.play(
        ROLLOUT,
        nftfwd_model=str(model),
        nftfwd_hosts="fleet",
        nftfwd_confirm_seconds=seconds,
        nftfwd_health_check_seconds=3,
    )
    assert run.code != 0, run.output
    assert run.failed_hosts() == {"kvm2"}
    assert set(run.recap) == {"kvm1", "kvm2"}  # kvm3 never played
    loaded = run.results("Load this host's forwards, rolled back unless confirmed")
    assert loaded["kvm1"]["changed"] is False and loaded["kvm2"]["pending_confirmation"]
    assert run.results("Connect to one forward of this host")["kvm1"]["outcome"] == "ok"
    assert "kvm2" not in run.results("Keep the new forwards")
    assert run.results("Show that this host is back on its previous rules")["kvm2"]["changed"]
    stop = run.results("Stop the rollout")["kvm2"]["msg"]
    assert stop.startswith("kvm2 failed (Timeout when waiting for ")
    assert stop.endswith("; its new rules were rolled back; no further host is touched.")
    now = hosts.rulesets()
    assert now == before  # kvm2 rolled back byte for byte, kvm3 never touched
