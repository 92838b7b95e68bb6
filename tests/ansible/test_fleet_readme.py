"""README's "Fleets with Ansible": its check run of the example playbook is real output.

The scene: the three namespace hypervisors of tests/ansible/fleet.py with the fleet
model loaded, then a model in which kvm2 loses its forward 2202 and kvm3 gains 9003;
`ansible-playbook nftfwd.fleet.rollout --check --diff` must print README's block, line
for line. `pytest tests/ansible/test_fleet_readme.py --update-readme` rewrites the block
from the real output (review with `git diff README.md`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet import COLLECTION, HOSTS, PLAYBOOKS, REPO, Fleet, fleet, fleet_model, write_model

pytestmark = pytest.mark.kernel

README = REPO / "README.md"
# The block that follows the paragraph ending in "prints:" under the check run's command.
FIRST_LINE = "PLAY [Roll the nftfwd model out, one hypervisor at a time] "
BLOCK = re.compile(r"^```\n(" + re.escape(FIRST_LINE) + r".*?)^```\n", re.M | re.S)


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Fleet]:
    with fleet(tmp_path) as made:
        yield made


def changed_model() -> dict[str, object]:
    model = fleet_model()
    changed = copy.deepcopy(model)
    hosts = changed["hosts"]
    web2 = hosts["kvm2"]["bridges"]["br0"]["guests"]["web2"]
    web2["forwards"] = [f for f in web2["forwards"] if f["port"] != 2202]
    web3 = hosts["kvm3"]["bridges"]["br0"]["guests"]["web3"]
    web3["forwards"].append({"port": 9003, "to": 9000, "proto": "udp"})
    return changed


def test_readme_shows_a_real_check_run(
    hosts: Fleet, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    model = write_model(tmp_path / "fleet.yaml", fleet_model())
    assert hosts.play(PLAYBOOKS / "apply.yml", model=str(model)).code == 0
    write_model(model, changed_model())
    before = hosts.rulesets()
    run = hosts.play(
        COLLECTION / "playbooks" / "rollout.yml",
        "--check",
        "--diff",
        nftfwd_model="fleet.yaml",
        nftfwd_hosts="fleet",
    )
    assert run.code == 0, run.output
    assert run.changed_hosts() == {"kvm2", "kvm3"}
    assert hosts.rulesets() == before
    real = run.stdout.lstrip("\n")
    text = README.read_text()
    found = BLOCK.search(text)
    assert found is not None, f"README has no block starting {FIRST_LINE!r}"
    if request.config.getoption("--update-readme"):
        README.write_text(text[: found.start(1)] + real + text[found.end(1) :])
        return
    assert found.group(1) == real
    # and the example playbook README shows is the collection's, byte for byte
    assert "```yaml\n" + (COLLECTION / "playbooks" / "rollout.yml").read_text() + "```\n" in text
    assert set(HOSTS) <= set(run.recap)
