"""install/uninstall --root and the libvirt hook, through the command line."""

from __future__ import annotations

import fcntl
import io
import itertools
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_runner import run_cli
from conftest import REPO

HOMELAB = REPO / "examples" / "homelab.yaml"
NFTFWD = str(Path(sys.executable).parent / "nftfwd")
_names = itertools.count()


def test_install_and_uninstall_into_a_staging_tree(tmp_path: Path) -> None:
    (tmp_path / "etc" / "libvirt").mkdir(parents=True)
    result = run_cli("install", str(HOMELAB), "--root", str(tmp_path))
    assert result.code == 0, result.stderr
    unit = tmp_path / "etc/systemd/system/nftfwd.service"
    assert "PartOf=nftables.service" in unit.read_text()
    assert (tmp_path / "etc/nftfwd/nftfwd.yaml").read_text() == HOMELAB.read_text()
    hook = tmp_path / "etc/libvirt/hooks/network"
    assert hook.stat().st_mode & 0o111 and "libvirt hook" in hook.read_text()
    again = run_cli("install", str(HOMELAB), "--root", str(tmp_path))
    assert again.code == 0 and "wrote" not in again.stdout  # idempotent

    (tmp_path / "etc/nftfwd/keep.txt").write_text("the admin's")
    removed = run_cli("uninstall", "--root", str(tmp_path), "--purge")
    assert removed.code == 0, removed.stderr
    assert not unit.exists() and not hook.exists()
    assert not (tmp_path / "etc/nftfwd/nftfwd.yaml").exists()
    assert (tmp_path / "etc/nftfwd/keep.txt").read_text() == "the admin's"


def test_root_lays_out_the_hook_also_without_libvirt(tmp_path: Path) -> None:
    result = run_cli("install", str(HOMELAB), "--root", str(tmp_path))
    assert result.code == 0, result.stderr
    hook = tmp_path / "etc/libvirt/hooks/network"
    assert "--model /etc/nftfwd/nftfwd.yaml --state-dir /var/lib/nftfwd" in hook.read_text()
    assert f"wrote {hook}: libvirt network hook; libvirt is not installed" in result.stdout
    assert result.stdout.endswith(
        f"to start it at boot in that tree: systemctl --root={tmp_path} enable nftfwd.service\n"
    )
    bare = tmp_path / "bare"
    result = run_cli("install", str(HOMELAB), "--root", str(bare), "--no-libvirt-hook")
    assert result.code == 0, result.stderr
    assert sorted(str(p.relative_to(bare)) for p in bare.rglob("*") if p.is_file()) == [
        "etc/nftfwd/nftfwd.yaml",
        "etc/systemd/system/nftfwd.service",
    ]


def _without_systemd(
    netns: str, tmp_path: Path, *args: str, systemctl: bool = True
) -> subprocess.CompletedProcess[str]:
    """`nftfwd ARGS` on / itself, in a network namespace of the test's and a mount
    namespace where /run is empty (systemd not running) and /etc an overlay whose
    writes land in tmp_path/upper; without `systemctl`, none is on PATH either."""
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir(exist_ok=True)
    work.mkdir(exist_ok=True)
    shell = (
        "mount -t tmpfs tmpfs /run && "
        f"mount -t overlay overlay -o lowerdir=/etc,upperdir={upper},workdir={work} /etc && "
        + ('exec "$@"' if systemctl else 'PATH=/var/empty exec "$@"')
    )
    return subprocess.run(
        ["ip", "netns", "exec", netns, "unshare", "--mount", "--propagation", "private",
         "sh", "-c", shell, "sh", NFTFWD, *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _installed_files(upper: Path, result: subprocess.CompletedProcess[str]) -> Path:
    """The files install reports and writes on / (here: into the overlay); the hook."""
    assert "wrote /etc/systemd/system/nftfwd.service: systemd unit" in result.stdout
    assert "wrote /etc/nftfwd/nftfwd.yaml: the model the unit loads" in result.stdout
    assert "wrote /etc/libvirt/hooks/network" in result.stdout
    assert (upper / "nftfwd/nftfwd.yaml").read_text() == HOMELAB.read_text()
    assert "ExecStart=" in (upper / "systemd/system/nftfwd.service").read_text()
    [hook] = [p for p in (upper / "libvirt/hooks").rglob("*") if p.is_file()]
    assert "libvirt hook --model" in hook.read_text()
    return hook


@pytest.mark.kernel
def test_install_where_systemd_is_not_running_enables_offline(netns: str, tmp_path: Path) -> None:
    """A chroot or an image build: systemctl enables offline, so systemd loads the
    model at boot; nothing is loaded now, and install says so: exit 1, done in part."""
    assert shutil.which("systemctl"), "this test needs systemctl (Debian's systemd package)"
    result = _without_systemd(netns, tmp_path, "install", str(HOMELAB))
    assert result.returncode == 1, result.stderr
    upper = tmp_path / "upper"
    hook = _installed_files(upper, result)
    assert result.stderr == (
        "done in part: systemd is not running here (no /run/systemd/system: a chroot, or an "
        "image being built): nftfwd.service is enabled and loads the model at boot, but "
        "nothing was loaded now.\n"
        "still to do:\n"
        f"  load the rules now, on the system that forwards: {NFTFWD} load --atomic "
        "/etc/nftfwd/nftfwd.yaml\n"
    )
    # The links point to /etc/systemd/system/nftfwd.service, there only in the overlay.
    units = sorted((upper / "systemd/system").iterdir())
    wanted_by = [d.name for d in units if (d / "nftfwd.service").is_symlink()]
    assert wanted_by == ["multi-user.target.wants", "nftables.service.wants"]
    assert _tables(netns) == ""  # nothing loaded

    removed = _without_systemd(netns, tmp_path, "uninstall", "--purge")
    assert removed.returncode == 0, removed.stderr
    # systemctl disables offline first (the links go with it), then the files go.
    assert removed.stdout.splitlines() == [
        "removed table inet nftfwd.",
        "removed /etc/systemd/system/nftfwd.service",
        f"removed /etc/{hook.relative_to(upper)}",
        "removed /etc/nftfwd/nftfwd.yaml",
    ]
    left = [p for p in upper.rglob("*") if p.is_symlink() or (p.is_file() and p.stat().st_size)]
    assert left == []


@pytest.mark.kernel
def test_install_on_a_host_without_systemd_is_done_in_part(netns: str, tmp_path: Path) -> None:
    """Another init system, no systemctl: install puts the files in place, says what is
    left (load now, and at boot), exits 1; uninstall removes them and the table, exit 0."""
    result = _without_systemd(netns, tmp_path, "install", str(HOMELAB), systemctl=False)
    assert result.returncode == 1, result.stderr
    upper = tmp_path / "upper"
    hook = _installed_files(upper, result)
    assert result.stderr == (
        "done in part: this host does not run systemd (no /run/systemd/system): "
        "nftfwd.service is in place but not enabled, and nothing was loaded.\n"
        "still to do:\n"
        f"  load the rules now: {NFTFWD} load --atomic /etc/nftfwd/nftfwd.yaml\n"
        "  load them at every boot, after the network is up and after /etc/nftables.conf: "
        f"have your init system run {NFTFWD} load --atomic /etc/nftfwd/nftfwd.yaml --yes\n"
        "  (or, once systemd runs this host: systemctl daemon-reload && "
        "systemctl enable --now nftfwd.service)\n"
    )
    assert not list(upper.glob("systemd/system/*.wants"))
    assert _tables(netns) == ""  # nothing loaded

    subprocess.run(["ip", "netns", "exec", netns, "nft", "add table inet nftfwd"], check=True)
    removed = _without_systemd(netns, tmp_path, "uninstall", "--purge", systemctl=False)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.splitlines() == [
        "removed table inet nftfwd.",
        "removed /etc/systemd/system/nftfwd.service",
        f"removed /etc/{hook.relative_to(upper)}",
        "removed /etc/nftfwd/nftfwd.yaml",
    ]
    assert [p for p in upper.rglob("*") if p.is_file() and p.stat().st_size] == []
    assert _tables(netns) == ""


def test_install_into_a_tree_with_the_packaged_unit(tmp_path: Path) -> None:
    unit = tmp_path / "usr/lib/systemd/system/nftfwd.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\n")
    result = run_cli("install", str(HOMELAB), "--root", str(tmp_path))
    assert result.code == 0, result.stderr
    assert f"uses the packaged unit {unit}" in result.stdout
    assert not (tmp_path / "etc/systemd/system/nftfwd.service").exists()
    # This nftfwd is not the package's /usr/bin/nftfwd: the drop-in runs this one instead.
    drop_in = tmp_path / "etc/systemd/system/nftfwd.service.d/nftfwd-install.conf"
    exec_start = drop_in.read_text().split("ExecStart=\nExecStart=")[1].split()[0]
    assert exec_start != "/usr/bin/nftfwd" and exec_start.endswith("/nftfwd")
    removed = run_cli("uninstall", "--root", str(tmp_path))
    assert removed.code == 0, removed.stderr
    assert not drop_in.exists() and unit.read_text() == "[Service]\n"


def test_install_refuses_a_model_with_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nhosts: {}\n")
    result = run_cli("install", str(bad), "--root", str(tmp_path / "root"))
    assert result.code == 2 and "must list at least one entry" in result.stderr
    assert not (tmp_path / "root").exists()


def test_hook_ignores_operations_that_need_no_reload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("<network/>"))  # libvirt sends the XML
    result = run_cli("libvirt", "hook", "default", "stopped", "end", "-")
    assert (result.code, result.stdout) == (0, "")


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"nffhook-{os.getpid()}-{next(_names)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


# What libvirt gives a hook (virCommandAddEnvPassCommon): no NFTFWD_* variables.
LIBVIRT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": "/root", "LC_ALL": "C"}  # fmt: skip
# In the hook's own mount namespace neither the journal's nor syslog's socket is there,
# whatever this machine runs: its messages must then land in STATE/hook.log.
NO_JOURNAL = (
    "[ ! -d /run/systemd/journal ] || mount -t tmpfs tmpfs /run/systemd/journal; "
    '[ ! -S /dev/log ] || mount --bind /dev/null /dev/log; exec "$@"'
)


def _hook(
    netns: str, model: Path, state: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The hook as libvirt runs it: its environment, the paths the installed script passes."""
    return subprocess.run(
        ["ip", "netns", "exec", netns, "unshare", "--mount", "--propagation", "private",
         "sh", "-c", NO_JOURNAL, "sh", NFTFWD, "libvirt", "hook",
         "--model", str(model), "--state-dir", str(state), *args],
        input="<network><name>default</name></network>\n",
        capture_output=True,
        text=True,
        env={**LIBVIRT_ENV, **(env or {})},
        timeout=60,
    )  # fmt: skip


def _entries(log: Path) -> list[str]:
    """hook.log's messages: a header line, then the message's later lines indented."""
    entries: list[str] = []
    for line in log.read_text(encoding="utf-8").splitlines():
        if line.startswith("    "):
            entries[-1] += "\n" + line[4:]
        else:
            assert re.match(r"\d{4}-\d\d-\d\dT\S+ nftfwd\[\d+\] \w+: ", line), line
            entries.append(line.split(" ", 2)[2])
    return entries


def _tables(netns: str) -> str:
    argv = ["ip", "netns", "exec", netns, "nft", "list", "tables"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


@pytest.mark.kernel
def test_hook_reloads_when_libvirt_starts_a_network(netns: str, tmp_path: Path) -> None:
    # NFTFWD_* variables would point elsewhere: the hook goes by its fixed paths only.
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\n")
    env = {"NFTFWD_CONFIG": str(bad), "NFTFWD_STATE_DIR": str(tmp_path / "elsewhere")}
    state = tmp_path / "state"
    result = _hook(netns, HOMELAB, state, "default", "started", "begin", "-", env=env)
    assert result.returncode == 0, result.stderr
    assert "table inet nftfwd" in _tables(netns)
    assert (state / "last-good.json").is_file()
    assert not (tmp_path / "elsewhere").exists()
    entries = _entries(state / "hook.log")
    assert entries[0].startswith(f"info: libvirt network default started begin: reloaded {HOMELAB}")
    # load's own output is in the message, whole: the forwards it added, one per line.
    assert "\n  + tcp 8080 on any IPv4 host address -> web" in entries[0]
    # doctor's findings follow at their severity (a missing uplink is an error), each fix
    # of several lines in one message.
    findings = [e for e in entries[1:] if e.startswith("err: doctor error uplink-missing")]
    assert findings and "\nFix:\n" in findings[0]
    assert result.stderr.startswith("nftfwd: libvirt network default started begin: reloaded")


@pytest.mark.kernel
def test_hook_never_fails_libvirt_even_with_a_broken_model(netns: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nhosts:\n  h:\n    uplinks: [eth0]\n    adresses: [1.2.3.4]\n"
                   "    hairpin: maybe\n")  # fmt: skip
    state = tmp_path / "state"
    result = _hook(netns, bad, state, "default", "updated", "begin", "-")
    assert result.returncode == 0
    assert "Traceback" not in result.stderr
    assert _tables(netns) == ""
    [entry] = _entries(state / "hook.log")
    first, *rest = entry.splitlines()
    assert first.startswith(f"err: libvirt network default updated begin: reload of {bad} failed")
    # Both problems of the model, each on its own line, in the one entry.
    assert any("adresses" in line for line in [first, *rest])
    assert any("hairpin" in line for line in rest)


@pytest.mark.kernel
def test_hook_does_not_wait_for_a_held_lock(netns: str, tmp_path: Path) -> None:
    """A `load --confirm` countdown holds the lock for minutes; libvirt waits for its
    hooks: the hook says so and returns at once, with exit 0, changing nothing."""
    state = tmp_path / "state"
    state.mkdir()
    with open(state / "lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        started = time.monotonic()
        result = _hook(netns, HOMELAB, state, "default", "started", "begin", "-")
        took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert took < 10, took
    assert _tables(netns) == ""
    [entry] = _entries(state / "hook.log")
    assert entry.startswith(
        "warning: libvirt network default started begin: not reloaded: another nftfwd run "
        f"holds the lock {state / 'lock'}."
    )
    assert "systemctl reload nftfwd" in entry
