"""Faults of the state directory and of the host around a load, against a real kernel.

Before the transaction (full, read-only, not writable, a directory where a file goes):
one clear error, exit 2, the ruleset byte for byte as it was. After it: the rules stay
with a warning that names what could not be written (exit 0). A corrupt state file is
set aside, never trusted. A renamed `table:` takes nftfwd's old table away in the same
transaction; a table another process owns is named with that process. The state
directory is the test's (NFTFWD_STATE_DIR); mounts live in private mount namespaces.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from kernel_ns import HOMELAB, NFTFWD, Namespace, changed_model, namespace

pytestmark = pytest.mark.kernel


@pytest.fixture
def ns(tmp_path: Path) -> Iterator[Namespace]:
    with namespace(tmp_path, "nffstate") as made:
        yield made


def _loaded(ns: Namespace) -> str:
    first = ns.nftfwd("load", str(HOMELAB), "--atomic", "--yes")
    assert first.returncode == 0, first.stderr
    return ns.ruleset()


def _refused(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "error: " in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.mark.parametrize("confirm", [[], ["--confirm", "30"]], ids=["plain", "confirm"])
def test_a_full_state_directory_changes_nothing(
    ns: Namespace, tmp_path: Path, confirm: list[str]
) -> None:
    before = _loaded(ns)
    full = f"mount -t tmpfs -o size=4k tmpfs {ns.state}"
    argv = ["load", str(changed_model(tmp_path)), "--atomic", "--yes", *confirm]
    _refused(ns.in_mounts(full, *argv), "No space left on device", "free some space there")
    assert ns.ruleset() == before
    assert not ns.guards()


def test_a_read_only_state_directory_changes_nothing(ns: Namespace, tmp_path: Path) -> None:
    before = _loaded(ns)
    read_only = f"mount --bind {ns.state} {ns.state}\nmount -o remount,ro,bind {ns.state}"
    argv = ["load", str(changed_model(tmp_path)), "--atomic", "--yes", "--confirm", "30"]
    _refused(ns.in_mounts(read_only, *argv), "Read-only file system")
    assert ns.ruleset() == before


def test_a_user_who_is_not_root_is_told_so(ns: Namespace) -> None:
    before = _loaded(ns)
    # The model where nobody may read it (click checks that with access(2), which heeds
    # no capability).
    shared = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="nftfwd-nobody-"))
    shared.chmod(0o755)
    model = shared / HOMELAB.name
    shutil.copy(HOMELAB, model)
    model.chmod(0o644)
    # nobody, but still able to read the checkout and its venv wherever they are (under a
    # 0700 /root, say): reading files is not what a load needs root for.
    read_anything = ["--inh-caps", "+dac_read_search", "--ambient-caps", "+dac_read_search"]
    nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", *read_anything]
    result = subprocess.run(
        ["ip", "netns", "exec", ns.name, *nobody, NFTFWD, "load", str(model), "--yes"],
        capture_output=True,
        text=True,
        env=ns.env(),
        timeout=60,
    )
    shutil.rmtree(shared)
    _refused(result, "nftfwd load needs root")
    assert ns.ruleset() == before


@pytest.mark.parametrize("name", ["last-good.json", "previous.json", "confirmed", "lock"])
def test_a_directory_where_a_state_file_goes_changes_nothing(
    ns: Namespace, tmp_path: Path, name: str
) -> None:
    before = _loaded(ns)
    (ns.state / name).unlink(missing_ok=True)
    (ns.state / name).mkdir()
    argv = ["load", str(changed_model(tmp_path)), "--atomic", "--yes", "--confirm", "30"]
    _refused(ns.nftfwd(*argv), str(ns.state / name), "move it away")
    assert ns.ruleset() == before


def test_corrupt_state_files_are_set_aside_and_never_trusted(ns: Namespace, tmp_path: Path) -> None:
    _loaded(ns)
    (ns.state / "pending-confirm.json").write_text('{"generation": "x", "deadl')
    (ns.state / "table.json").write_text('{"table": "inet nftfwd; flush ruleset"}\n')
    (ns.state / "last-good.json").write_text("garbage")
    confirm = ns.nftfwd("confirm")
    _refused(confirm, "no `nftfwd load --confirm` is waiting")
    assert "pending-confirm.json.corrupt" in confirm.stderr
    changed = changed_model(tmp_path)
    result = ns.nftfwd("load", str(changed), "--atomic", "--yes")
    assert result.returncode == 0, result.stderr
    assert "warning: ignored" in result.stderr and "table.json.corrupt" in result.stderr
    assert (ns.state / "pending-confirm.json.corrupt").exists()
    assert (ns.state / "table.json.corrupt").exists()
    assert ns.nftfwd("diff", str(changed)).returncode == 0
    # The corrupt last-good.json was never read, only replaced.
    ns.nft("flush", "ruleset")
    ns.nft("-j", "-f", str(ns.state / "last-good.json"))
    assert ns.nftfwd("diff", str(changed)).returncode == 0


# The last good ruleset cannot be put in place after the transaction (a rename fails).
LAST_GOOD_FAILS = """
import errno, os, sys
real = os.replace
def replace(src, dst, *args, **kwargs):
    if os.fspath(dst).endswith("/last-good.json"):
        raise OSError(errno.EIO, "Input/output error")
    return real(src, dst, *args, **kwargs)
os.replace = replace
from nftfwd.cli import main
sys.argv = ["nftfwd", *sys.argv[1:]]
main()
"""


def test_a_state_fault_after_the_transaction_keeps_the_rules_with_a_warning(
    ns: Namespace, tmp_path: Path
) -> None:
    _loaded(ns)
    changed = changed_model(tmp_path)
    result = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            ns.name,
            sys.executable,
            "-c",
            LAST_GOOD_FAILS,
            "load",
            str(changed),
            "--atomic",
            "--yes",
        ],
        capture_output=True,
        text=True,
        env=ns.env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (
        f"warning: the new rules stay, but cannot write {ns.state / 'last-good.json'} "
        "(Input/output error)." in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert ns.nftfwd("diff", str(changed)).returncode == 0


def test_a_renamed_table_replaces_the_old_one_in_one_transaction(
    ns: Namespace, tmp_path: Path
) -> None:
    before = _loaded(ns)
    renamed = tmp_path / "renamed.yaml"
    text = HOMELAB.read_text()
    assert "\ntable:" not in text
    renamed.write_text(text.replace("version: 1\n", "version: 1\ntable: forwards\n", 1))
    # Rolled back, the old table is back and the new one gone.
    unconfirmed = ns.nftfwd("load", str(renamed), "--atomic", "--yes", "--confirm", "1")
    assert unconfirmed.returncode == 3, unconfirmed.stderr
    assert ns.ruleset() == before
    result = ns.nftfwd("load", str(renamed), "--atomic", "--yes")
    assert result.returncode == 0, result.stderr
    assert "table inet nftfwd (nftfwd's until now" in result.stdout
    tables = ns.nft("list", "tables")
    assert tables == "table inet forwards\n"
    assert ns.nftfwd("diff", str(renamed)).returncode == 0


HOLD_OWNED_TABLE = """
import sys, time
sys.path.append("/usr/lib/python3/dist-packages")
import nftables
ctx = nftables.Nftables()
rc, _, err = ctx.cmd("add table inet nftfwd { flags owner; }")
print("held" if rc == 0 else err, flush=True)
time.sleep(60)
"""


def test_a_table_another_process_owns_is_named_with_its_owner(ns: Namespace) -> None:
    holder = subprocess.Popen(
        ["ip", "netns", "exec", ns.name, "/usr/bin/python3", "-c", HOLD_OWNED_TABLE],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        before = ns.ruleset()
        result = ns.nftfwd("load", str(HOMELAB), "--atomic", "--yes")
        _refused(
            result,
            f"table inet nftfwd belongs to python3 (pid {holder.pid}), which made it with "
            "`flags owner`",
        )
        assert "needs root" not in result.stderr
        assert ns.ruleset() == before
    finally:
        holder.kill()
        holder.wait()
