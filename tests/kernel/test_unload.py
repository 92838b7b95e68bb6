"""`nftfwd unload`: nftfwd's table goes, nothing else does; a pending confirmation cannot
bring it back; without a model, nftfwd's state names the table."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kernel_ns import HOMELAB, Namespace, changed_model, namespace, wait_until

pytestmark = pytest.mark.kernel

FOREIGN = (
    "table ip other {\n\tchain input {\n"
    "\t\ttype filter hook input priority 0; policy accept;\n\t\ttcp dport 22 accept\n\t}\n}\n"
)


@pytest.fixture
def ns(tmp_path: Path) -> Iterator[Namespace]:
    with namespace(tmp_path, "nffunl") as made:
        yield made


def _foreign(ns: Namespace, tmp_path: Path) -> str:
    """Another tool's table beside nftfwd's; its listing as the kernel gives it."""
    script = tmp_path / "other.nft"
    script.write_text(FOREIGN)
    ns.nft("-f", str(script))
    return ns.nft("list", "table", "ip", "other")


def test_unload_removes_only_nftfwds_table(ns: Namespace, tmp_path: Path) -> None:
    other = _foreign(ns, tmp_path)
    assert ns.nftfwd("load", str(HOMELAB), "--atomic", "--yes").returncode == 0
    assert "table inet nftfwd" in ns.ruleset()

    dry = ns.nftfwd("unload", str(HOMELAB), "--dry-run")
    assert (dry.returncode, dry.stdout) == (1, "would remove table inet nftfwd.\n"), dry.stderr
    assert "table inet nftfwd" in ns.ruleset()

    done = ns.nftfwd("unload", str(HOMELAB))
    assert (done.returncode, done.stdout) == (0, "removed table inet nftfwd.\n"), done.stderr
    assert ns.ruleset() == other  # the other table, byte for byte, and nothing else

    again = ns.nftfwd("unload", str(HOMELAB))
    assert (again.returncode, again.stdout) == (
        0,
        "table inet nftfwd is not loaded; nothing to remove.\n",
    )
    dry = ns.nftfwd("unload", str(HOMELAB), "--dry-run")
    assert dry.returncode == 0, dry.stderr


def test_unload_cancels_a_pending_confirmation(ns: Namespace, tmp_path: Path) -> None:
    assert ns.nftfwd("load", str(HOMELAB), "--atomic", "--yes").returncode == 0
    pending = ns.nftfwd(
        "load", str(changed_model(tmp_path)), "--atomic", "--yes", "--confirm", "2", "--detach"
    )
    assert pending.returncode == 0, pending.stderr
    assert (ns.state / "pending-confirm.json").exists()
    done = ns.nftfwd("unload", str(HOMELAB))
    assert done.returncode == 0, done.stderr
    assert not (ns.state / "pending-confirm.json").exists()
    wait_until(lambda: not ns.guards(), 10, "the guard to end")
    time.sleep(0.5)  # past the deadline: the guard has nothing to roll back to
    assert "nftfwd" not in ns.ruleset()


def test_unload_without_a_model_removes_the_table_nftfwd_loaded(
    ns: Namespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(HOMELAB.read_text().replace("version: 1\n", "version: 1\ntable: fleet\n", 1))
    assert ns.nftfwd("load", str(renamed), "--atomic", "--yes").returncode == 0
    monkeypatch.delenv("NFTFWD_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./nftfwd.yaml here
    done = ns.nftfwd("unload")
    assert (done.returncode, done.stdout) == (0, "removed table inet fleet.\n"), done.stderr
    assert ns.ruleset() == ""


def test_unload_of_a_model_that_is_not_there_is_an_error(ns: Namespace, tmp_path: Path) -> None:
    done = ns.nftfwd("unload", str(tmp_path / "absent.yaml"))
    assert done.returncode == 2
    assert done.stderr == f"error: {tmp_path / 'absent.yaml'}: no such model file.\n"
