"""`load --confirm` rolls back on every way out but a confirmation: the timeout, SIGINT,
SIGTERM, an error after the transaction, SIGKILL of the load (its guard does it), and
`--detach` without `nftfwd confirm`. Each rollback is checked against the ruleset as it
was before the load, byte for byte, in a network namespace of the test's own."""

from __future__ import annotations

import fcntl
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kernel_ns import HOMELAB, Namespace, changed_model, namespace, wait_until

pytestmark = pytest.mark.kernel


@pytest.fixture
def ns(tmp_path: Path) -> Iterator[Namespace]:
    with namespace(tmp_path, "nffconf") as made:
        yield made


def _loaded(ns: Namespace) -> str:
    """The homelab example loaded; the ruleset as it is then."""
    first = ns.nftfwd("load", str(HOMELAB), "--atomic", "--yes")
    assert first.returncode == 0, first.stderr
    return ns.ruleset()


def _new_rules_live(ns: Namespace, before: str) -> None:
    wait_until(lambda: ns.ruleset() != before, 20, "the new rules to be live")


def _settled(ns: Namespace) -> None:
    """Nothing pending any more, and no guard left."""
    wait_until(lambda: not ns.guards(), 10, "the guard to end")
    assert not (ns.state / "pending-confirm.json").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_the_countdown_rolls_back(
    ns: Namespace, tmp_path: Path, signum: signal.Signals
) -> None:
    before = _loaded(ns)
    load = ns.popen("load", str(changed_model(tmp_path)), "--atomic", "--yes", "--confirm", "60")
    _new_rules_live(ns, before)
    load.send_signal(signum)
    _, err = load.communicate(timeout=20)
    assert load.returncode == 3, err
    assert f"interrupted by {signum.name}: rolled back to the previous table." in err
    assert "Traceback" not in err
    assert ns.ruleset() == before
    _settled(ns)


def test_sighup_does_not_stop_the_countdown(ns: Namespace, tmp_path: Path) -> None:
    before = _loaded(ns)
    changed = changed_model(tmp_path)
    load = ns.popen("load", str(changed), "--atomic", "--yes", "--confirm", "60")
    _new_rules_live(ns, before)
    load.send_signal(signal.SIGHUP)  # the terminal went away
    time.sleep(0.5)
    assert load.poll() is None, "the load ended on SIGHUP"
    assert ns.nftfwd("confirm").returncode == 0
    _, err = load.communicate(timeout=20)
    assert load.returncode == 0, err
    assert ns.nftfwd("diff", str(changed)).returncode == 0
    _settled(ns)


def test_the_timeout_rolls_back_and_keeps_the_last_good_files(
    ns: Namespace, tmp_path: Path
) -> None:
    before = _loaded(ns)
    last_good = (ns.state / "last-good.json").read_text()
    result = ns.nftfwd("load", str(changed_model(tmp_path)), "--atomic", "--yes", "--confirm", "1")
    assert result.returncode == 3, result.stderr
    assert "not confirmed within 1 s: rolled back to the previous table." in result.stderr
    assert ns.ruleset() == before
    assert (ns.state / "last-good.json").read_text() == last_good
    assert not list(ns.state.glob(".*.staged"))
    _settled(ns)


# The second write of the pending record (the countdown starts: after the transaction)
# fails as on a full disk.
FULL_AFTER_APPLY = """
import errno, sys
import nftfwd.kernel.state as state
real = state.write_atomically
writes = []
def write_atomically(path, data, mode=0o644):
    if path.name == "pending-confirm.json":
        writes.append(path)
        if len(writes) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
    real(path, data, mode)
state.write_atomically = write_atomically
from nftfwd.cli import main
sys.argv = ["nftfwd", *sys.argv[1:]]
main()
"""


def test_an_error_after_the_transaction_rolls_back(ns: Namespace, tmp_path: Path) -> None:
    before = _loaded(ns)
    argv = ["load", str(changed_model(tmp_path)), "--atomic", "--yes", "--confirm", "60"]
    result = subprocess.run(
        ["ip", "netns", "exec", ns.name, sys.executable, "-c", FULL_AFTER_APPLY, *argv],
        capture_output=True,
        text=True,
        env=ns.env(),
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 3, result.stderr
    assert "applying table inet nftfwd in one transaction" in result.stderr
    assert "(No space left on device); free some space there: rolled back" in result.stderr
    assert "Traceback" not in result.stderr
    assert ns.ruleset() == before
    _settled(ns)


def test_the_guard_rolls_back_a_load_killed_outright(ns: Namespace, tmp_path: Path) -> None:
    before = _loaded(ns)
    load = ns.popen("load", str(changed_model(tmp_path)), "--atomic", "--yes", "--confirm", "3")
    _new_rules_live(ns, before)
    load.kill()  # SIGKILL: no handler runs, the lock goes with the process
    load.communicate(timeout=10)
    assert ns.ruleset() != before  # the guard waits for the deadline: one may still confirm
    wait_until(lambda: ns.ruleset() == before, 15, "the guard's rollback")
    assert "not confirmed in time: rolled back" in (ns.state / "guard.log").read_text()
    _settled(ns)


def test_detach_returns_at_once_and_the_guard_rolls_back(ns: Namespace, tmp_path: Path) -> None:
    before = _loaded(ns)
    started = time.monotonic()
    argv = ["load", str(changed_model(tmp_path)), "--atomic", "--yes"]
    result = ns.nftfwd(*argv, "--confirm", "3", "--detach")
    assert time.monotonic() - started < 3
    assert result.returncode == 0, result.stderr
    assert "confirmation pending: run `nftfwd confirm` within 3 s" in result.stderr
    assert ns.ruleset() != before
    with open(ns.state / "lock", "a") as lock:  # the countdown does not hold the lock
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(lock, fcntl.LOCK_UN)
    wait_until(lambda: ns.ruleset() == before, 15, "the guard's rollback")
    _settled(ns)
    late = ns.nftfwd("confirm")
    assert late.returncode == 2
    assert "no `nftfwd load --confirm` is waiting for confirmation" in late.stderr


def test_detach_then_confirm_keeps_the_rules(ns: Namespace, tmp_path: Path) -> None:
    before = _loaded(ns)
    changed = changed_model(tmp_path)
    result = ns.nftfwd("load", str(changed), "--atomic", "--yes", "--confirm", "3", "--detach")
    assert result.returncode == 0, result.stderr
    confirmed = ns.nftfwd("confirm")
    assert confirmed.returncode == 0, confirmed.stderr
    assert "confirmed: the new rules stay." in confirmed.stdout
    assert "the last good ruleset is kept" in confirmed.stderr
    _settled(ns)
    time.sleep(3.5)  # past the deadline
    after = ns.ruleset()
    assert after != before
    assert ns.nftfwd("diff", str(changed)).returncode == 0
    ns.nft("flush", "ruleset")
    ns.nft("-j", "-f", str(ns.state / "last-good.json"))
    assert ns.ruleset() == after


def test_a_newer_load_supersedes_the_guard_of_an_older_one(ns: Namespace, tmp_path: Path) -> None:
    _loaded(ns)
    first = ns.nftfwd("load", str(changed_model(tmp_path)), "--yes", "--confirm", "2", "--detach")
    assert first.returncode == 0, first.stderr
    newer = tmp_path / "newer.yaml"
    newer.write_text(HOMELAB.read_text().replace("{port: 8080, to: 80}", "{port: 8082, to: 80}"))
    second = ns.nftfwd("load", str(newer), "--atomic", "--yes")
    assert second.returncode == 0, second.stderr
    assert "replaces the rules of an earlier load that waited for confirmation" in second.stderr
    _settled(ns)
    time.sleep(2.5)  # past the first load's deadline
    assert ns.nftfwd("diff", str(newer)).returncode == 0


# A connection through forward 8080 (-> web 192.168.122.10 port 80), as DNAT made it.
REMOVED_FLOW = (
    "-I -p tcp -s 198.51.100.7 -d 203.0.113.1 --sport 40000 --dport 8080 "
    "-r 192.168.122.10 -q 198.51.100.7 --reply-port-src 80 --reply-port-dst 40000 "
    "-t 300 --state ESTABLISHED -u SEEN_REPLY"
)


def test_connections_are_closed_only_after_the_confirmation(ns: Namespace, tmp_path: Path) -> None:
    before = _loaded(ns)

    def tracked() -> str:
        listing = ["ip", "netns", "exec", ns.name, "conntrack", "-L", "-p", "tcp"]
        return subprocess.run(listing, capture_output=True, text=True).stdout

    insert = ["ip", "netns", "exec", ns.name, "conntrack", *shlex.split(REMOVED_FLOW)]
    subprocess.run(insert, check=True)
    assert "dport=8080" in tracked()
    load = ns.popen("load", str(changed_model(tmp_path)), "--atomic", "--yes", "--confirm", "60")
    _new_rules_live(ns, before)
    time.sleep(0.3)
    assert "dport=8080" in tracked()  # the countdown runs: nothing closed yet
    assert ns.nftfwd("confirm").returncode == 0
    _, err = load.communicate(timeout=20)
    assert load.returncode == 0, err
    assert "closed 1 tracked connections of removed or changed forwards" in err
    assert "dport=8080" not in tracked()


def test_confirm_seconds_are_bounded(ns: Namespace) -> None:
    for seconds in ("0", "3601", "100000000000000000000"):
        result = ns.nftfwd("load", str(HOMELAB), "--yes", "--confirm", seconds)
        assert result.returncode == 2, result.stderr
        assert "1<=x<=3600" in result.stderr and "Traceback" not in result.stderr
    detached = ns.nftfwd("load", str(HOMELAB), "--yes", "--detach")
    assert detached.returncode == 2
    assert "--detach needs --confirm SECONDS" in detached.stderr
    assert ns.ruleset() == ""
