"""load, diff, --confirm and the lock against a real kernel, each in its own namespace."""

from __future__ import annotations

import fcntl
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kernel_ns import HOMELAB, Namespace, changed_model, namespace

pytestmark = pytest.mark.kernel


@pytest.fixture
def ns(tmp_path: Path) -> Iterator[Namespace]:
    with namespace(tmp_path, "nffload") as made:
        yield made


def test_load_then_diff_is_empty_and_a_second_load_changes_nothing(ns: Namespace) -> None:
    first = ns.nftfwd("load", str(HOMELAB), "--atomic", "--yes")
    assert first.returncode == 0, first.stderr
    assert "+ tcp 8080 on any IPv4 host address -> web 192.168.122.10 port 80" in first.stdout
    diff = ns.nftfwd("diff", str(HOMELAB))
    assert (diff.returncode, diff.stdout) == (0, "host homelab, table inet nftfwd: no changes\n")
    again = ns.nftfwd("load", str(HOMELAB), "--atomic", "--yes")
    assert again.returncode == 0 and "nothing to change" in again.stderr


def test_the_kept_files_restore_the_last_good_and_the_previous_table(
    ns: Namespace, tmp_path: Path
) -> None:
    assert ns.nftfwd("load", str(HOMELAB), "--atomic", "--yes").returncode == 0
    first = ns.ruleset()
    changed = changed_model(tmp_path)
    assert ns.nftfwd("load", str(changed), "--atomic", "--yes").returncode == 0
    second = ns.ruleset()
    assert second != first
    ns.nft("-j", "-f", str(ns.state / "previous.json"))
    assert ns.ruleset() == first
    assert ns.nftfwd("diff", str(HOMELAB)).returncode == 0
    ns.nft("flush", "ruleset")
    ns.nft("-j", "-f", str(ns.state / "last-good.json"))
    assert ns.ruleset() == second
    assert ns.nftfwd("diff", str(changed)).returncode == 0


def test_dry_run_shows_the_change_and_changes_nothing(ns: Namespace, tmp_path: Path) -> None:
    assert ns.nftfwd("load", str(HOMELAB), "--atomic", "--yes").returncode == 0
    before = ns.ruleset()
    dry = ns.nftfwd("load", str(changed_model(tmp_path)), "--atomic", "--dry-run")
    assert dry.returncode == 1
    assert "+ tcp 8081 on any IPv4 host address -> web 192.168.122.10 port 80" in dry.stdout
    assert ns.ruleset() == before


def test_unconfirmed_load_rolls_back(ns: Namespace, tmp_path: Path) -> None:
    assert ns.nftfwd("load", str(HOMELAB), "--atomic", "--yes").returncode == 0
    before = ns.ruleset()
    result = ns.nftfwd("load", str(changed_model(tmp_path)), "--atomic", "--yes", "--confirm", "1")
    assert result.returncode == 3
    assert "not confirmed within 1 s: rolled back" in result.stderr
    assert ns.ruleset() == before


def test_confirmed_load_keeps_the_new_rules(ns: Namespace, tmp_path: Path) -> None:
    assert ns.nftfwd("load", str(HOMELAB), "--atomic", "--yes").returncode == 0
    changed = changed_model(tmp_path)
    pending = ns.popen("load", str(changed), "--atomic", "--yes", "--confirm", "20")
    deadline = time.monotonic() + 10
    while not (ns.state / "pending-confirm.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    confirm = ns.nftfwd("confirm")
    assert confirm.returncode == 0, confirm.stderr
    _, err = pending.communicate(timeout=20)
    assert pending.returncode == 0, err
    assert ns.nftfwd("diff", str(changed)).returncode == 0
    assert ns.nftfwd("confirm").returncode == 2  # nothing waits any more


def test_a_second_load_waits_for_the_first(ns: Namespace) -> None:
    ns.state.mkdir(parents=True)
    with open(ns.state / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        waiting = ns.popen("load", str(HOMELAB), "--atomic", "--yes")
        # Wait for it to reach the lock (a fixed sleep was too short on a busy machine:
        # the lock was gone before the second load got there).
        assert waiting.stderr is not None
        reached, _, _ = select.select([waiting.stderr], [], [], 30)
        assert reached, "the second load said nothing within 30 s"
        assert waiting.stderr.readline() == "waiting for another nftfwd run to finish...\n"
        time.sleep(0.2)
        assert waiting.poll() is None  # blocked behind the lock
        assert "nftfwd" not in ns.ruleset()
        fcntl.flock(lock, fcntl.LOCK_UN)
    _, err = waiting.communicate(timeout=30)
    assert waiting.returncode == 0, err
    assert "table inet nftfwd" in ns.ruleset()


REFUSED_LOAD = """
import dataclasses, sys
from ipaddress import IPv6Address
from pathlib import Path
from nftfwd.compiler import load_model
from nftfwd.lower import lower_host
from nftfwd.kernel.load import LoadOptions, load
from nftfwd.errors import NftfwdError
model = load_model(Path(sys.argv[1]))
table = lower_host(model.table, model.hosts[0])
# An IPv6 guest in an IPv4 map: libnftables refuses the whole batch.
target = next(s for s in table.sets if s.name == "dnat_addr_any4")
bad = dataclasses.replace(target, elements=(dataclasses.replace(
    target.elements[0], data=IPv6Address("fd00::1")),))
table = dataclasses.replace(table, sets=tuple(bad if s is target else s for s in table.sets))
try:
    load(model.hosts[0], table, LoadOptions(yes=True))
except NftfwdError as err:
    print(err, file=sys.stderr)
    sys.exit(2)
"""


def test_a_refused_transaction_leaves_the_host_as_it_was(ns: Namespace, tmp_path: Path) -> None:
    assert ns.nftfwd("load", str(HOMELAB), "--atomic", "--yes").returncode == 0
    before = ns.ruleset()
    result = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            ns.name,
            sys.executable,
            "-c",
            REFUSED_LOAD,
            str(changed_model(tmp_path)),
        ],
        capture_output=True,
        text=True,
        env=ns.env(),
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    # The outline passed the throwaway namespace; the kernel refused the whole transaction.
    assert "the kernel refused the new table inet nftfwd" in result.stderr
    assert "nothing was changed" in result.stderr
    assert "fd00::1" in (ns.state / "refused.json").read_text()
    assert ns.ruleset() == before


def test_a_change_of_rules_shows_as_a_diff_of_the_outlines(ns: Namespace, tmp_path: Path) -> None:
    assert ns.nftfwd("load", str(HOMELAB), "--atomic", "--yes").returncode == 0
    two_uplinks = tmp_path / "two-uplinks.yaml"
    two_uplinks.write_text(
        HOMELAB.read_text().replace("uplinks: [enp2s0]", "uplinks: [enp2s0, enp3s0]")
    )
    diff = ns.nftfwd("diff", str(two_uplinks))
    assert diff.returncode == 1, diff.stderr
    rules = diff.stdout.split("rules:\n", 1)[1]
    assert rules.startswith("--- live\n+++ compiled\n@@ ")
    added = [line for line in rules.splitlines() if line.startswith("+\t")]
    assert added and all("enp3s0" in line for line in added), rules
    assert "forwards:" not in diff.stdout and "elements:" not in diff.stdout
