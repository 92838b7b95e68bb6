"""The collection's example playbook, nftfwd.fleet.rollout, on three hypervisors: one host
at a time, a health check through one forward of each, and the first host that fails
is rolled back by its guard and stops the rollout."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet import COLLECTION, HOSTS, PLAYBOOKS, Fleet, fleet, fleet_model, write_model

pytestmark = pytest.mark.kernel

ROLLOUT = COLLECTION / "playbooks" / "rollout.yml"


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Fleet]:
    with fleet(tmp_path) as made:
        yield made


def test_the_rollout_stops_at_the_first_failed_host_and_rolls_it_back(
    hosts: Fleet, tmp_path: Path
) -> None:
    first = fleet_model()
    model = write_model(tmp_path / "fleet.yaml", first)
    run = hosts.play(PLAYBOOKS / "apply.yml", model=str(model))
    assert run.code == 0, run.output
    before = hosts.rulesets()
    second = copy.deepcopy(first)
    for number, name in enumerate(HOSTS, start=1):
        guest = second["hosts"][name]["bridges"]["br0"]["guests"][f"web{number}"]
        guest["forwards"].append({"port": 9000 + number, "to": 9000})
    write_model(model, second)
    # kvm1's and kvm3's guests answer on port 80 (their forward 808N); kvm2's does not.
    for name in ("kvm1", "kvm3"):
        number = HOSTS.index(name) + 1
        hosts.topologies[name].serve(f"web{number}", [80])

    seconds = 15
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
    kept = run.results("Keep the new forwards")
    assert kept["kvm1"]["changed"] is True and "kvm2" not in kept
    assert run.results("Show that this host is back on its previous rules")["kvm2"]["changed"]
    stop = run.results("Stop the rollout")["kvm2"]
    assert "its new rules were rolled back; no further host is touched." in stop["msg"]

    now = hosts.rulesets()
    assert "9001" in now["kvm1"]  # checked and confirmed: kept
    assert now["kvm2"] == before["kvm2"]  # failed its check: rolled back, byte for byte
    assert now["kvm3"] == before["kvm3"]  # never touched
