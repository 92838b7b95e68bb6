"""install/uninstall --root and the libvirt hook, through the command line."""

from __future__ import annotations

import io
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_runner import run_cli

REPO = Path(__file__).resolve().parent.parent
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


def _hook(netns: str, model: Path, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NFTFWD_CONFIG": str(model), "NFTFWD_STATE_DIR": str(state)}
    return subprocess.run(
        ["ip", "netns", "exec", netns, NFTFWD, "libvirt", "hook", *args],
        input="<network><name>default</name></network>\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def _tables(netns: str) -> str:
    argv = ["ip", "netns", "exec", netns, "nft", "list", "tables"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


@pytest.mark.kernel
def test_hook_reloads_when_libvirt_starts_a_network(netns: str, tmp_path: Path) -> None:
    result = _hook(netns, HOMELAB, tmp_path / "state", "default", "started", "begin", "-")
    assert result.returncode == 0, result.stderr
    listed = _tables(netns)
    assert "table inet nftfwd" in listed


@pytest.mark.kernel
def test_hook_never_fails_libvirt_even_with_a_broken_model(netns: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\n")
    result = _hook(netns, bad, tmp_path / "state", "default", "updated", "begin", "-")
    assert result.returncode == 0
    assert "Traceback" not in result.stderr
    listed = _tables(netns)
    assert listed == ""
