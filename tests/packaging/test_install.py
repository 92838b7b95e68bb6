"""`nftfwd install` / `uninstall`: the unit, the model and the libvirt hook in a staging root."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nftfwd.errors import NftfwdError
from nftfwd.install import HOOK as HOOK_PATH
from nftfwd.install import (
    NFT,
    PACKAGED_BIN,
    PlannedFile,
    apply_install,
    hook_text,
    install_plan,
    packaged_unit,
    uninstall,
    unit_text,
)

BIN = "/usr/local/bin/nftfwd"
MODEL_TEXT = "version: 1\nhosts:\n  kvm1:\n    uplinks: [eth0]\n"

UNIT = """\
# Written by `nftfwd install`, removed by `nftfwd uninstall`.
# Loads /etc/nftfwd/nftfwd.yaml into the nftables table inet nftfwd at boot, again when
# nftables.service restarts (its flush removes every table) and on `systemctl
# reload nftfwd`; `systemctl stop nftfwd` deletes table inet nftfwd, nothing else.
[Unit]
Description=nftfwd port forwards (nftables table inet nftfwd)
Wants=network-online.target
After=network-online.target nftables.service libvirtd.service virtnetworkd.service
PartOf=nftables.service
ReloadPropagatedFrom=nftables.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/bin/nftfwd load --atomic --yes /etc/nftfwd/nftfwd.yaml
ExecReload=/usr/local/bin/nftfwd load --atomic --yes /etc/nftfwd/nftfwd.yaml
ExecStop=/usr/sbin/nft "add table inet nftfwd; delete table inet nftfwd"

[Install]
WantedBy=multi-user.target nftables.service
"""

HOOK = """\
#!/bin/sh
# nftfwd: reload nftfwd's rules when libvirt starts or updates a network.
# Written by `nftfwd install`, removed by `nftfwd uninstall`.
# Once nftfwd is gone, do nothing: a failing hook stops libvirt's networks.
[ -x /usr/local/bin/nftfwd ] || exit 0
exec /usr/local/bin/nftfwd libvirt hook --model /etc/nftfwd/nftfwd.yaml \
--state-dir /var/lib/nftfwd "$@"
"""

FOREIGN_HOOK = "#!/bin/sh\n# the admin's own network hook\nlogger libvirt network $1 $2\n"


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    """Files these tests create themselves get 0644, whatever the runner's umask."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A staging root with libvirt's configuration directory, as on a libvirt host."""
    (tmp_path / "root" / "etc" / "libvirt").mkdir(parents=True)
    return tmp_path / "root"


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "my model.yaml"
    path.write_text(MODEL_TEXT, encoding="utf-8")
    return path


def install(
    root: Path, model: Path, *, force: bool = False, libvirt_hook: bool = True
) -> list[PlannedFile]:
    plan = install_plan(
        root=root,
        model_path=model,
        nftfwd_bin=BIN,
        table="nftfwd",
        force=force,
        libvirt_hook=libvirt_hook,
    )
    apply_install(plan)
    return plan


def tree(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under `root`: its mode and content (symlinks as "-> target")."""
    files = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                files[rel] = (0, f"-> {os.readlink(path)}")
            else:
                files[rel] = (stat.S_IMODE(path.stat().st_mode), path.read_text(encoding="utf-8"))
    return files


def test_install_writes_unit_model_and_hook(root: Path, model: Path) -> None:
    plan = install_plan(root=root, model_path=model, nftfwd_bin=BIN, table="nftfwd")
    assert [p.path for p in plan] == [
        root / "etc/systemd/system/nftfwd.service",
        root / "etc/nftfwd/nftfwd.yaml",
        root / "etc/libvirt/hooks/network",
    ]
    assert all(p.note for p in plan)
    assert tree(root) == {}  # planning writes nothing
    assert apply_install(plan) == [p.path for p in plan]
    assert tree(root) == {
        "etc/systemd/system/nftfwd.service": (0o644, UNIT),
        "etc/nftfwd/nftfwd.yaml": (0o644, MODEL_TEXT),
        "etc/libvirt/hooks/network": (0o755, HOOK),
    }


def test_install_twice_changes_nothing(root: Path, model: Path) -> None:
    install(root, model)
    before = tree(root)
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    plan = install_plan(root=root, model_path=model, nftfwd_bin=BIN, table="nftfwd")
    assert apply_install(plan) == []
    assert tree(root) == before
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == mtimes


def test_install_repairs_a_changed_mode(root: Path, model: Path) -> None:
    install(root, model)
    unit = root / "etc/systemd/system/nftfwd.service"
    unit.chmod(0o600)
    plan = install_plan(root=root, model_path=model, nftfwd_bin=BIN, table="nftfwd")
    assert apply_install(plan) == [unit]
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644


def test_unit_for_another_table_and_a_path_systemd_must_unquote() -> None:
    text = unit_text(nftfwd_bin="/opt/my tools/100%/$HOME/nftfwd", table="fwd_lab")
    # `%` is a specifier everywhere; `$` is only substituted in arguments, not the path.
    exec_line = '"/opt/my tools/100%%/$HOME/nftfwd" load --atomic --yes'
    assert f"ExecStart={exec_line} /etc/nftfwd/nftfwd.yaml\n" in text
    assert f"ExecReload={exec_line} /etc/nftfwd/nftfwd.yaml\n" in text
    assert 'ExecStop=/usr/sbin/nft "add table inet fwd_lab; delete table inet fwd_lab"\n' in text
    assert "Description=nftfwd port forwards (nftables table inet fwd_lab)\n" in text


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or not Path(NFT).exists(),
    reason="needs systemd-analyze and nft",
)
def test_unit_passes_systemd_analyze_verify(tmp_path: Path, model: Path) -> None:
    # A real executable at an awkward path: verify resolves ExecStart's command, so
    # it fails unless systemd unquotes the path to exactly this file.
    command = tmp_path / "my tools" / "100%" / "$HOME" / "nftfwd"
    command.parent.mkdir(parents=True)
    command.write_text("#!/bin/sh\n", encoding="utf-8")
    command.chmod(0o755)
    root = tmp_path / "root"
    plan = install_plan(root=root, model_path=model, nftfwd_bin=str(command), table="nftfwd")
    apply_install(plan)
    unit = root / "etc/systemd/system/nftfwd.service"
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "nftfwd.service" not in result.stderr


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The verify test above can fail: a command that is not there is reported."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("needs systemd-analyze")
    unit = tmp_path / "nftfwd.service"
    unit.write_text(unit_text(nftfwd_bin=str(tmp_path / "no such nftfwd"), table="t"))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "no such nftfwd" in result.stderr


@pytest.mark.parametrize(
    "bin_path",
    ["nftfwd", "bin/nftfwd", "", "/usr/bin/nft\nfwd", '/opt/"q"/nftfwd', "/opt/it's", "/opt\\x"],
)
def test_command_must_be_an_absolute_path_systemd_accepts(
    root: Path, model: Path, bin_path: str
) -> None:
    with pytest.raises(NftfwdError, match="absolute path free of quotes"):
        install_plan(root=root, model_path=model, nftfwd_bin=bin_path, table="nftfwd")


@pytest.mark.parametrize("table", ["", "1abc", "nft fwd", "a;b", "x" * 33])
def test_table_must_be_valid(root: Path, model: Path, table: str) -> None:
    with pytest.raises(NftfwdError, match="not a valid nftfwd table name"):
        install_plan(root=root, model_path=model, nftfwd_bin=BIN, table=table)


def test_model_already_in_place_is_not_copied(root: Path) -> None:
    target = root / "etc/nftfwd/nftfwd.yaml"
    target.parent.mkdir(parents=True)
    target.write_text(MODEL_TEXT, encoding="utf-8")
    target.chmod(0o600)
    plan = install_plan(root=root, model_path=target, nftfwd_bin=BIN, table="nftfwd")
    assert target not in [p.path for p in plan]
    apply_install(plan)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_model_path_that_does_not_exist_is_an_error(root: Path, tmp_path: Path) -> None:
    with pytest.raises(NftfwdError, match="cannot read the model file"):
        install_plan(root=root, model_path=tmp_path / "nope.yaml", nftfwd_bin=BIN, table="t")
    with pytest.raises(NftfwdError, match="no such model file"):
        install_plan(
            root=root, model_path=root / "etc/nftfwd/nftfwd.yaml", nftfwd_bin=BIN, table="t"
        )


def test_a_different_installed_model_is_only_replaced_with_force(root: Path, model: Path) -> None:
    target = root / "etc/nftfwd/nftfwd.yaml"
    target.parent.mkdir(parents=True)
    target.write_text("version: 1  # someone else's\n", encoding="utf-8")
    with pytest.raises(NftfwdError, match=r"already holds a different model.*--force"):
        install_plan(root=root, model_path=model, nftfwd_bin=BIN, table="nftfwd")
    assert target.read_text(encoding="utf-8") == "version: 1  # someone else's\n"
    install(root, model, force=True)
    assert target.read_text(encoding="utf-8") == MODEL_TEXT


def test_the_same_installed_model_is_fine_and_keeps_its_mode(root: Path, model: Path) -> None:
    target = root / "etc/nftfwd/nftfwd.yaml"
    target.parent.mkdir(parents=True)
    target.write_text(MODEL_TEXT, encoding="utf-8")
    target.chmod(0o640)
    plan = install(root, model)
    assert target in [p.path for p in plan]
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_model_bytes_are_copied_exactly(root: Path, tmp_path: Path) -> None:
    model = tmp_path / "crlf.yaml"
    model.write_bytes(b"version: 1\r\nhosts: {}\r\n# caf\xc3\xa9\r\n")
    install(root, model)
    assert (root / "etc/nftfwd/nftfwd.yaml").read_bytes() == model.read_bytes()


def test_a_foreign_hook_is_kept_and_nftfwd_uses_network_d(root: Path, model: Path) -> None:
    hooks = root / "etc/libvirt/hooks"
    hooks.mkdir()
    (hooks / "network").write_text(FOREIGN_HOOK, encoding="utf-8")
    (hooks / "network").chmod(0o700)
    plan = install(root, model)
    hook = plan[-1]
    assert hook.path == hooks / "network.d/nftfwd"
    assert "not nftfwd's" in hook.note and "6.5" in hook.note
    files = tree(root)
    assert files["etc/libvirt/hooks/network"] == (0o700, FOREIGN_HOOK)
    assert files["etc/libvirt/hooks/network.d/nftfwd"] == (0o755, HOOK)
    # Idempotent: the next install finds its own hook in network.d and keeps it there.
    assert apply_install(install_plan(root=root, model_path=model, nftfwd_bin=BIN, table="t")) == [
        root / "etc/systemd/system/nftfwd.service"
    ]
    assert tree(root)["etc/libvirt/hooks/network.d/nftfwd"] == (0o755, HOOK)


def test_foreign_hooks_in_both_places_are_refused(root: Path, model: Path) -> None:
    hooks = root / "etc/libvirt/hooks"
    (hooks / "network.d").mkdir(parents=True)
    (hooks / "network").write_text(FOREIGN_HOOK, encoding="utf-8")
    (hooks / "network.d/nftfwd").write_text(FOREIGN_HOOK, encoding="utf-8")
    with pytest.raises(NftfwdError, match="both belong to another program"):
        install_plan(root=root, model_path=model, nftfwd_bin=BIN, table="nftfwd")
    install(root, model, force=True)
    assert (hooks / "network").read_text(encoding="utf-8") == FOREIGN_HOOK
    assert (hooks / "network.d/nftfwd").read_text(encoding="utf-8") == HOOK


def test_an_edited_nftfwd_hook_counts_as_foreign(root: Path, model: Path) -> None:
    hooks = root / "etc/libvirt/hooks"
    hooks.mkdir()
    (hooks / "network").write_text(HOOK + "echo extra\n", encoding="utf-8")
    assert install(root, model)[-1].path == hooks / "network.d/nftfwd"


def test_nftfwd_hook_for_another_command_path_is_replaced_in_place(root: Path, model: Path) -> None:
    hooks = root / "etc/libvirt/hooks"
    hooks.mkdir()
    (hooks / "network").write_text(hook_text("/opt/old nftfwd/bin/nftfwd"), encoding="utf-8")
    assert "exec '/opt/old nftfwd/bin/nftfwd' libvirt hook" in hook_text(
        "/opt/old nftfwd/bin/nftfwd"
    )
    install(root, model)
    assert tree(root)["etc/libvirt/hooks/network"] == (0o755, HOOK)
    assert not (hooks / "network.d").exists()


def test_the_hook_is_laid_out_before_libvirt_is_installed(tmp_path: Path, model: Path) -> None:
    root = tmp_path / "plain"  # no etc/libvirt: libvirt may come later
    plan = install(root, model)
    assert [str(p.path.relative_to(root)) for p in plan] == [
        "etc/systemd/system/nftfwd.service",
        "etc/nftfwd/nftfwd.yaml",
        "etc/libvirt/hooks/network",
    ]
    assert "libvirt is not installed: in place for when it is" in plan[-1].note
    assert tree(root)["etc/libvirt/hooks/network"] == (0o755, HOOK)


def test_no_libvirt_hook_leaves_it_out(root: Path, model: Path) -> None:
    plan = install(root, model, libvirt_hook=False)
    assert [str(p.path.relative_to(root)) for p in plan] == [
        "etc/systemd/system/nftfwd.service",
        "etc/nftfwd/nftfwd.yaml",
    ]
    assert not (root / "etc/libvirt/hooks").exists()


def test_a_hook_of_an_earlier_version_is_nftfwds(root: Path, model: Path) -> None:
    """Before the hook passed its paths it was `exec BIN libvirt hook "$@"`: still
    recognised, so it is replaced in place and removed by uninstall."""
    hooks = root / "etc/libvirt/hooks"
    hooks.mkdir()
    old = HOOK.replace(" --model /etc/nftfwd/nftfwd.yaml --state-dir /var/lib/nftfwd", "")
    assert old.endswith('exec /usr/local/bin/nftfwd libvirt hook "$@"\n')
    (hooks / "network").write_text(old, encoding="utf-8")
    install(root, model)
    assert tree(root)["etc/libvirt/hooks/network"] == (0o755, HOOK)
    (hooks / "network").write_text(old, encoding="utf-8")
    assert hooks / "network" in uninstall(root)


def test_a_failed_write_changes_nothing(root: Path, model: Path) -> None:
    """A new unit and model are written in full, then the hook cannot be: every file
    stays as it was, and no staged copy is left behind."""
    install(root, model)
    hooks = root / "etc/libvirt/hooks"
    shutil.rmtree(hooks)
    hooks.write_text("a file where the hooks directory belongs\n", encoding="utf-8")
    before = tree(root)
    other = model.with_name("other.yaml")
    other.write_text(MODEL_TEXT + "# changed\n", encoding="utf-8")
    plan = install_plan(root=root, model_path=other, nftfwd_bin=BIN, table="t", force=True)
    assert [p.path.name for p in plan] == ["nftfwd.service", "nftfwd.yaml", "network"]
    with pytest.raises(NftfwdError, match=r"cannot write .*nothing was installed"):
        apply_install(plan)
    assert tree(root) == before


def test_uninstall_removes_only_nftfwds_files(root: Path, model: Path) -> None:
    install(root, model)
    units = root / "etc/systemd/system"
    (units / "multi-user.target.wants").mkdir()
    (units / "multi-user.target.wants/nftfwd.service").symlink_to(units / "nftfwd.service")
    (units / "multi-user.target.wants/ssh.service").symlink_to("/lib/systemd/system/ssh.service")
    (units / "nftables.service.wants").mkdir()
    (units / "nftables.service.wants/nftfwd.service").symlink_to(units / "nftfwd.service")
    (units / "other.service").write_text("[Service]\n", encoding="utf-8")
    (root / "etc/libvirt/hooks/network.d").mkdir()
    (root / "etc/libvirt/hooks/network.d/other").write_text(FOREIGN_HOOK, encoding="utf-8")

    removed = uninstall(root)
    assert sorted(removed) == sorted(
        [
            units / "multi-user.target.wants/nftfwd.service",
            units / "nftables.service.wants/nftfwd.service",
            units / "nftfwd.service",
            root / "etc/libvirt/hooks/network",
        ]
    )
    assert tree(root) == {
        "etc/systemd/system/multi-user.target.wants/ssh.service": (
            0,
            "-> /lib/systemd/system/ssh.service",
        ),
        "etc/systemd/system/other.service": (0o644, "[Service]\n"),
        "etc/libvirt/hooks/network.d/other": (0o644, FOREIGN_HOOK),
        "etc/nftfwd/nftfwd.yaml": (0o644, MODEL_TEXT),  # kept without purge
    }
    assert uninstall(root) == []


def test_uninstall_keeps_a_foreign_hook_and_purges_the_model(root: Path, model: Path) -> None:
    hooks = root / "etc/libvirt/hooks"
    hooks.mkdir()
    (hooks / "network").write_text(FOREIGN_HOOK, encoding="utf-8")
    install(root, model)
    removed = uninstall(root, purge=True)
    assert sorted(removed) == sorted(
        [
            root / "etc/systemd/system/nftfwd.service",
            hooks / "network.d/nftfwd",
            root / "etc/nftfwd/nftfwd.yaml",
        ]
    )
    assert tree(root) == {"etc/libvirt/hooks/network": (0o644, FOREIGN_HOOK)}
    assert not (root / "etc/nftfwd").exists()


def test_purge_keeps_other_files_in_etc_nftfwd(root: Path, model: Path) -> None:
    install(root, model)
    (root / "etc/nftfwd/notes.txt").write_text("mine\n", encoding="utf-8")
    uninstall(root, purge=True)
    assert tree(root) == {"etc/nftfwd/notes.txt": (0o644, "mine\n")}


def test_uninstall_of_an_empty_root(tmp_path: Path) -> None:
    assert uninstall(tmp_path / "nothing", purge=True) == []


def test_hook_script_passes_arguments_and_stdin_to_nftfwd(tmp_path: Path) -> None:
    command = tmp_path / "my tools $x" / "nftfwd"
    command.parent.mkdir()
    command.write_text('#!/bin/sh\nprintf "%s|" "$@"\ncat\n', encoding="utf-8")
    command.chmod(0o755)
    hook = tmp_path / "network"
    hook.write_text(hook_text(str(command)), encoding="utf-8")
    hook.chmod(0o755)
    result = subprocess.run(
        [str(hook), "my net", "started", "begin", "-"],
        input="<network/>\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == (
        "libvirt|hook|--model|/etc/nftfwd/nftfwd.yaml|--state-dir|/var/lib/nftfwd|"
        "my net|started|begin|-|<network/>\n"
    )


def test_hook_does_nothing_once_nftfwd_is_gone(tmp_path: Path) -> None:
    """libvirt fails a network's start when its hook fails: a hook left behind after
    nftfwd was removed exits 0, whatever libvirt passes."""
    hook = tmp_path / "network"
    hook.write_text(hook_text(str(tmp_path / "removed" / "nftfwd")), encoding="utf-8")
    hook.chmod(0o755)
    result = subprocess.run(
        [str(hook), "default", "started", "begin", "-"],
        input="<network/>\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_a_hook_from_before_the_guard_is_still_nftfwds(root: Path, model: Path) -> None:
    """Hooks nftfwd wrote before they checked for nftfwd are replaced and removed as its own."""
    old = (
        "#!/bin/sh\n"
        "# nftfwd: reload nftfwd's rules when libvirt starts or updates a network.\n"
        "# Written by `nftfwd install`, removed by `nftfwd uninstall`.\n"
        'exec /usr/local/bin/nftfwd libvirt hook "$@"\n'
    )
    hooks = root / "etc/libvirt/hooks"
    hooks.mkdir()
    (hooks / "network").write_text(old, encoding="utf-8")
    install(root, model)
    assert tree(root)["etc/libvirt/hooks/network"] == (0o755, HOOK)
    (hooks / "network").write_text(old, encoding="utf-8")
    assert hooks / "network" in uninstall(root)


def test_a_hook_whose_guard_names_another_command_is_foreign(root: Path, model: Path) -> None:
    hooks = root / "etc/libvirt/hooks"
    hooks.mkdir()
    edited = HOOK.replace("[ -x /usr/local/bin/nftfwd ]", "[ -x /usr/bin/other ]")
    (hooks / "network").write_text(edited, encoding="utf-8")
    assert install(root, model)[-1].path == hooks / "network.d/nftfwd"


def packaged(root: Path, where: str = "lib/systemd/system") -> Path:
    """`root` as a system with nftfwd's Debian package: its unit, and dpkg's file list."""
    unit = root / where / "nftfwd.service"
    unit.parent.mkdir(parents=True)
    unit.write_text(unit_text(nftfwd_bin=PACKAGED_BIN, table="nftfwd", packaged=True))
    files = root / "var/lib/dpkg/info/nftfwd.list"
    files.parent.mkdir(parents=True)
    files.write_text(f"/.\n/{where}\n/{where}/nftfwd.service\n/usr/bin/nftfwd\n")
    return unit


@pytest.mark.parametrize("where", ["lib/systemd/system", "usr/lib/systemd/system"])
def test_install_uses_the_packaged_unit(root: Path, model: Path, where: str) -> None:
    unit = packaged(root, where)
    before = unit.read_text()
    plan = install_plan(root=root, model_path=model, nftfwd_bin=PACKAGED_BIN, table="nftfwd")
    assert packaged_unit(root) == unit
    assert [p.path for p in plan] == [root / "etc/nftfwd/nftfwd.yaml", root / HOOK_PATH]
    apply_install(plan)
    assert not (root / "etc/systemd/system").exists()  # no second unit, no drop-in
    assert unit.read_text() == before


def test_packaged_unit_differs_from_the_written_one_only_in_its_origin() -> None:
    written = unit_text(nftfwd_bin=PACKAGED_BIN, table="nftfwd").splitlines()
    shipped = unit_text(nftfwd_bin=PACKAGED_BIN, table="nftfwd", packaged=True).splitlines()
    assert written[1:] == shipped[2:]
    assert "nftfwd install" in shipped[0] and "package" in shipped[0]


def test_install_for_another_table_or_command_adds_a_drop_in(root: Path, model: Path) -> None:
    packaged(root)
    plan = install_plan(root=root, model_path=model, nftfwd_bin=BIN, table="lab")
    drop_in = root / "etc/systemd/system/nftfwd.service.d/nftfwd-install.conf"
    assert plan[0].path == drop_in
    apply_install(plan)
    assert drop_in.read_text() == (
        "# Written by `nftfwd install`, removed by `nftfwd uninstall`: the packaged\n"
        "# nftfwd.service, for the table inet lab and the command /usr/local/bin/nftfwd.\n"
        "[Unit]\n"
        "Description=nftfwd port forwards (nftables table inet lab)\n"
        "\n"
        "[Service]\n"
        "ExecStart=\n"
        "ExecStart=/usr/local/bin/nftfwd load --atomic --yes /etc/nftfwd/nftfwd.yaml\n"
        "ExecReload=\n"
        "ExecReload=/usr/local/bin/nftfwd load --atomic --yes /etc/nftfwd/nftfwd.yaml\n"
        "ExecStop=\n"
        'ExecStop=/usr/sbin/nft "add table inet lab; delete table inet lab"\n'
    )
    assert not (root / "etc/systemd/system/nftfwd.service").exists()
    # Back to the packaged unit's table and command: the drop-in follows, not stays behind.
    plan = install_plan(root=root, model_path=model, nftfwd_bin=PACKAGED_BIN, table="nftfwd")
    assert apply_install(plan)[0] == drop_in
    assert 'ExecStop=/usr/sbin/nft "add table inet nftfwd; ' in drop_in.read_text()
    assert drop_in in uninstall(root)
    assert not drop_in.parent.exists()


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or not Path(NFT).exists(),
    reason="needs systemd-analyze and nft",
)
def test_packaged_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    command = tmp_path / "bin" / "nftfwd"
    command.parent.mkdir()
    command.write_text("#!/bin/sh\n", encoding="utf-8")
    command.chmod(0o755)
    unit = tmp_path / "nftfwd.service"
    unit.write_text(unit_text(nftfwd_bin=str(command), table="nftfwd", packaged=True))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_uninstall_never_removes_a_file_the_package_owns(root: Path, model: Path) -> None:
    unit = packaged(root)
    install(root, model)  # as a pip-installed nftfwd would: its own unit and hook
    units = root / "etc/systemd/system"
    (units / "multi-user.target.wants").mkdir()
    (units / "multi-user.target.wants/nftfwd.service").symlink_to(unit)
    # Were the package to own one of the files uninstall removes, it stays.
    listing = root / "var/lib/dpkg/info/nftfwd.list"
    listing.write_text(listing.read_text() + "/etc/libvirt/hooks/network\n")
    removed = uninstall(root, purge=True)
    assert root / HOOK_PATH not in removed and (root / HOOK_PATH).is_file()
    assert units / "multi-user.target.wants/nftfwd.service" in removed
    assert unit.is_file() and (root / "var/lib/dpkg/info/nftfwd.list").is_file()
