"""nftfwd.fleet.nftfwd on three hypervisors (network namespaces): check mode, apply,
idempotence, a change to one host, a broken model, confirm and rollback, state absent."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet import HOSTS, PLAYBOOKS, Fleet, fleet, fleet_model, write_model

pytestmark = pytest.mark.kernel

APPLY = PLAYBOOKS / "apply.yml"
TASK = "Apply each host's part of the model"


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Fleet]:
    with fleet(tmp_path) as made:
        yield made


def test_check_mode_changes_nothing_and_reports_the_hosts_that_would_change(
    hosts: Fleet, tmp_path: Path
) -> None:
    model = write_model(tmp_path / "fleet.yaml", fleet_model())
    before = hosts.rulesets()
    run = hosts.play(APPLY, "--check", "--diff", model=str(model))
    assert run.code == 0, run.output
    assert run.changed_hosts() == set(HOSTS)
    assert hosts.rulesets() == before  # nothing loaded anywhere
    results = run.results(TASK)
    for number, name in enumerate(HOSTS, start=1):
        diff = results[name]["diff"]
        assert diff["before"] == ""
        assert (
            f"forward tcp {8080 + number} on any IPv4 host address -> "
            f"web{number} 10.0.{number}.10 port 80\n"
        ) in diff["after"]
        assert results[name]["findings"]["host"] == name  # doctor's JSON, before the load
    # Ansible's own diff output shows each host's forwards as added lines
    assert "+forward tcp 8082 on any IPv4 host address -> web2 10.0.2.10 port 80" in run.output


def test_apply_loads_each_hosts_own_table_and_a_second_run_changes_nothing(
    hosts: Fleet, tmp_path: Path
) -> None:
    model = write_model(tmp_path / "fleet.yaml", fleet_model())
    run = hosts.play(APPLY, model=str(model))
    assert run.code == 0, run.output
    assert run.changed_hosts() == set(HOSTS)
    for number, name in enumerate(HOSTS, start=1):
        table = hosts.nft(name, "list", "table", "inet", "nftfwd")
        others = {8080 + n for n in range(1, 4)} - {8080 + number}
        assert f"tcp . {8080 + number} : 10.0.{number}.10" in table, table
        assert not any(str(port) in table for port in others), table
        assert run.results(TASK)[name]["pending_confirmation"] is False
    loaded = hosts.rulesets()

    again = hosts.play(APPLY, "--diff", model=str(model))
    assert again.code == 0, again.output
    assert again.changed_hosts() == set()
    assert all(r["changed"] is False for r in again.results(TASK).values())
    assert hosts.rulesets() == loaded


def test_removing_one_forward_changes_only_its_host(hosts: Fleet, tmp_path: Path) -> None:
    first = fleet_model()
    loaded = hosts.load(write_model(tmp_path / "fleet.yaml", first))
    second = copy.deepcopy(first)
    guest = second["hosts"]["kvm2"]["bridges"]["br0"]["guests"]["web2"]
    guest["forwards"] = [f for f in guest["forwards"] if f["port"] != 2202]
    model = write_model(tmp_path / "fleet.yaml", second)

    check = hosts.play(APPLY, "--check", "--diff", model=str(model))
    assert check.code == 0, check.output
    assert check.changed_hosts() == {"kvm2"}
    diff = check.results(TASK)["kvm2"]["diff"]
    assert diff == {
        "before": "forward tcp 2202 on any IPv4 host address -> web2 10.0.2.10 port 22\n",
        "after": "",
        "before_header": "kvm2: table inet nftfwd as loaded",
        "after_header": "kvm2: table inet nftfwd of the model",
    }
    assert hosts.rulesets() == loaded

    run = hosts.play(APPLY, model=str(model))
    assert run.code == 0, run.output
    assert run.changed_hosts() == {"kvm2"}
    now = hosts.rulesets()
    assert now["kvm1"] == loaded["kvm1"] and now["kvm3"] == loaded["kvm3"]
    assert "2202" in loaded["kvm2"] and "2202" not in now["kvm2"]


def test_a_broken_model_fails_every_host_before_any_changes(hosts: Fleet, tmp_path: Path) -> None:
    loaded = hosts.load(write_model(tmp_path / "fleet.yaml", fleet_model()))
    broken = fleet_model()
    broken["hosts"]["kvm3"]["bridges"]["br0"]["guests"]["web3"]["forwards"][0]["port"] = 70000
    model = write_model(tmp_path / "broken.yaml", broken)
    run = hosts.play(APPLY, model=str(model))
    assert run.code != 0
    assert run.failed_hosts() == set(HOSTS)
    for result in run.results(TASK).values():
        assert result["outcome"] == "failed"
        assert "the model does not compile (checked on the controller" in result["msg"]
        assert "hosts.kvm3.bridges.br0.guests.web3.forwards[0].port: 70000" in result["msg"]
    assert hosts.rulesets() == loaded


def test_an_unconfirmed_load_rolls_back_and_a_confirmed_one_stays(
    hosts: Fleet, tmp_path: Path
) -> None:
    first = fleet_model()
    loaded = hosts.load(write_model(tmp_path / "fleet.yaml", first))
    second = copy.deepcopy(first)
    for number, name in enumerate(HOSTS, start=1):
        guest = second["hosts"][name]["bridges"]["br0"]["guests"][f"web{number}"]
        guest["forwards"].append({"port": 9000 + number, "to": 9000})
    model = write_model(tmp_path / "fleet.yaml", second)
    seconds = 20  # the play's two tasks take some seconds on a busy machine
    began = time.monotonic()
    run = hosts.play(
        APPLY, model=str(model), confirm_seconds=seconds, confirm_hosts=["kvm1", "kvm3"]
    )
    assert run.code == 0, run.output  # kvm1 and kvm3 confirmed in time (else "too late")
    assert all(r["pending_confirmation"] for r in run.results(TASK).values())
    confirmed = run.results("Confirm on the hosts listed in confirm_hosts")
    assert {h for h, r in confirmed.items() if r.get("changed")} == {"kvm1", "kvm3"}
    assert "9002" in hosts.ruleset("kvm2")  # live, and not confirmed
    deadline = began + seconds + 15
    while hosts.ruleset("kvm2") != loaded["kvm2"]:
        assert time.monotonic() < deadline, "kvm2 was not rolled back"
        time.sleep(0.2)
    time.sleep(max(0.0, began + seconds + 1 - time.monotonic()))
    now = hosts.rulesets()
    assert now["kvm2"] == loaded["kvm2"]  # rolled back, byte for byte
    assert "9001" in now["kvm1"] and "9003" in now["kvm3"]  # confirmed: kept


def test_state_absent_removes_only_nftfwds_table(hosts: Fleet, tmp_path: Path) -> None:
    hosts.load(write_model(tmp_path / "fleet.yaml", fleet_model()))
    foreign = tmp_path / "foreign.nft"
    foreign.write_text(
        "table ip other {\n\tchain forward {\n\t\ttype filter hook forward priority 0;\n\t}\n}\n"
    )
    for name in HOSTS:
        hosts.nft(name, "-f", str(foreign))
    other = {name: hosts.nft(name, "list", "table", "ip", "other") for name in HOSTS}
    loaded = hosts.rulesets()

    check = hosts.play(APPLY, "--check", "--diff", "--limit", "kvm1", nftfwd_state="absent")
    assert check.code == 0, check.output
    assert check.changed_hosts() == {"kvm1"}
    assert check.results(TASK)["kvm1"]["diff"]["before"] == "table inet nftfwd\n"
    assert hosts.rulesets() == loaded

    run = hosts.play(APPLY, "--limit", "kvm1", nftfwd_state="absent")
    assert run.code == 0, run.output
    assert run.changed_hosts() == {"kvm1"}
    assert hosts.ruleset("kvm1") == other["kvm1"]  # the other table, and nothing else
    assert hosts.ruleset("kvm2") == loaded["kvm2"]
    again = hosts.play(APPLY, "--limit", "kvm1", nftfwd_state="absent")
    assert again.code == 0 and again.changed_hosts() == set(), again.output


def test_fail_on_findings_fails_only_the_host_doctor_finds_errors_on(
    hosts: Fleet, tmp_path: Path
) -> None:
    hosts.sysctl("kvm1", "net.ipv4.ip_forward", "0")
    model = write_model(tmp_path / "fleet.yaml", fleet_model())
    run = hosts.play(APPLY, model=str(model), fail_on_findings=True)
    assert run.code != 0
    assert run.failed_hosts() == {"kvm1"}
    results = run.results(TASK)
    kvm1 = results["kvm1"]
    assert (
        kvm1["msg"]
        == "nftfwd doctor found errors on kvm1: ipv4-forwarding-off; the rules stay loaded"
    )
    assert kvm1["changed"] is True and "table inet nftfwd" in hosts.ruleset("kvm1")
    assert [f["id"] for f in kvm1["findings"]["findings"] if f["severity"] == "error"] == [
        "ipv4-forwarding-off"
    ]
    for name in ("kvm2", "kvm3"):
        assert (
            results[name]["outcome"] == "ok" and results[name]["findings"]["counts"]["error"] == 0
        )
