"""Boot persistence: nftfwd's systemd unit, its model and its libvirt hook, in a root tree.

This module only writes and removes files under `root` (the real system is root "/"),
so all of it is testable in a staging tree. The caller runs systemctl: after
`apply_install`, `systemctl daemon-reload` and `systemctl enable --now nftfwd.service`;
before `uninstall`, `systemctl disable --now nftfwd.service` (the unit's stop deletes
nftfwd's table), then `systemctl daemon-reload`. libvirt only notices a hook that
existed when its daemon started: after the first install, restart libvirtd (or
virtnetworkd); running guests and networks are not affected by that.

Installed from the Debian package, nftfwd.service already exists in /usr/lib/systemd/system
(built from `unit_text` too, so the two cannot differ): install then writes no unit of its
own, only a drop-in when the model's table or the nftfwd command differ from the packaged
unit's, and uninstall never removes a file the package owns.

The unit's choices:
- After the network, nftables.service and libvirt: at boot nftables.service loads
  /etc/nftables.conf (on Debian, `flush ruleset` first) before nftfwd adds its table.
- `PartOf=nftables.service`: stopping or restarting nftables.service (which flushes
  every table, nftfwd's included) stops or restarts nftfwd too, so its table comes back.
  PartOf does not pass on a plain start, so the unit is also `WantedBy=nftables.service`:
  `systemctl start nftables` after a stop brings nftfwd back as well.
- `ReloadPropagatedFrom=nftables.service`: `systemctl reload nftables` runs
  /etc/nftables.conf again (`flush ruleset` on Debian), and reloads nftfwd after it.
- `ExecStop` deletes nftfwd's table, and only it: `systemctl stop nftfwd` then means
  "forwards off", and an inactive unit never leaves forwards behind that `systemctl
  status` hides. It runs nft directly, as `add table; delete table` in one
  transaction, which succeeds whether or not the table exists (nft 1.0.6 has no
  `destroy`); so a stop after a flush of the ruleset does not fail. systemd runs
  ExecStop only after a successful start, so a failed load never deletes the rules
  that were there. Use `systemctl reload nftfwd` (one atomic load) to apply a changed
  model; a restart leaves a moment without forwards.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from nftfwd.errors import NftfwdError
from nftfwd.files import write_all_atomically
from nftfwd.kernel.state import DEFAULT_STATE_DIR

UNIT = Path("etc/systemd/system/nftfwd.service")
# Where a distribution package puts the unit (Debian 12's debhelper: /lib; later: /usr/lib),
# the command its unit runs and the table it is for.
PACKAGED_UNITS = (
    Path("usr/lib/systemd/system/nftfwd.service"),
    Path("lib/systemd/system/nftfwd.service"),
)
PACKAGED_BIN = "/usr/bin/nftfwd"
DEFAULT_TABLE = "nftfwd"
DROP_IN = Path("etc/systemd/system/nftfwd.service.d/nftfwd-install.conf")
# dpkg's list of the files of the installed nftfwd package.
PACKAGE_FILES = Path("var/lib/dpkg/info/nftfwd.list")
MODEL = Path("etc/nftfwd/nftfwd.yaml")
LIBVIRT_DIR = Path("etc/libvirt")
HOOK = Path("etc/libvirt/hooks/network")
HOOK_IN_DIR = Path("etc/libvirt/hooks/network.d/nftfwd")
NFT = "/usr/sbin/nft"

_TABLE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
_SYSTEMD_PLAIN = re.compile(r"[A-Za-z0-9_./:=+,@-]+")
# The texts are templates/ (jinja2, imported only when one is rendered: the CLI imports
# this module for MODEL on every command).
UNIT_TEMPLATE = "nftfwd.service.j2"
DROP_IN_TEMPLATE = "nftfwd-install.conf.j2"
HOOK_TEMPLATE = "libvirt-hook.sh.j2"


@dataclass(frozen=True)
class PlannedFile:
    """One file `apply_install` writes: where (under root), what, its mode, and why."""

    path: Path
    content: str
    mode: int
    note: str


def install_plan(
    *,
    root: Path,
    model_path: Path,
    nftfwd_bin: str,
    table: str,
    force: bool = False,
    libvirt_hook: bool = True,
) -> list[PlannedFile]:
    """The files that make nftfwd load `model_path` at boot, for a system rooted at `root`.

    `nftfwd_bin` is the absolute path of the nftfwd command on the target system, `table`
    the model's table. The model is copied to /etc/nftfwd/nftfwd.yaml unless it is that
    file; a different file already there is only replaced with `force`. The libvirt hook
    is laid out also where libvirt is not (yet) installed, unless `libvirt_hook` is
    False. Nothing is written here: pass the plan to `apply_install`.
    """
    _check_command(nftfwd_bin)
    if root.exists() and not root.is_dir():
        raise NftfwdError(f"--root {root}: not a directory; give the directory to install into.")
    _check_table(table)
    plan = _plan_unit(root, nftfwd_bin, table)
    model = _plan_model(root, model_path, force)
    if model is not None:
        plan.append(model)
    if libvirt_hook:
        plan.append(_plan_hook(root, nftfwd_bin, force))
    return plan


def apply_install(plan: list[PlannedFile]) -> list[Path]:
    """Write the planned files, all or none; return the ones whose content or mode changed.

    Each file is replaced in one rename, after all of them were written in full: a
    failure (a read-only or full file system) leaves every file as it was.
    """
    changed: list[PlannedFile] = []
    for planned in plan:
        data = planned.content.encode("utf-8")
        try:
            same = (
                planned.path.read_bytes() == data
                and planned.path.stat().st_mode & 0o7777 == planned.mode
            )
        except OSError:
            same = False
        if not same:
            changed.append(planned)
    try:
        write_all_atomically([(p.path, p.content.encode("utf-8"), p.mode) for p in changed])
    except OSError as err:
        where = f" {err.filename}" if err.filename else ""
        raise NftfwdError(
            f"cannot write{where}: {err.strerror or err}; nothing was installed "
            "(every file is as it was)."
        ) from None
    return [p.path for p in changed]


def uninstall(root: Path, *, purge: bool = False) -> list[Path]:
    """Remove nftfwd's files under `root` and return them; with `purge`, the model too.

    A libvirt hook is removed only while its content is exactly what nftfwd writes, so a
    hook another program (or the admin) wrote or edited stays. Enablement links the
    caller's `systemctl disable` missed (in a staging tree) are removed with the unit.
    A file the installed nftfwd package owns is never removed: the package manager
    removes those.
    """
    owned = _package_files(root)
    removed: list[Path] = []

    def remove(path: Path) -> None:
        if "/" + path.relative_to(root).as_posix() not in owned:
            path.unlink()
            removed.append(path)

    links = sorted((root / UNIT.parent).glob(f"*.wants/{UNIT.name}"))
    for path in [*filter(Path.is_symlink, links), root / UNIT, root / DROP_IN]:
        if path.is_symlink() or path.is_file():
            remove(path)
    with contextlib.suppress(OSError):  # only if empty: anything else is not nftfwd's
        (root / DROP_IN).parent.rmdir()
    for hook in (root / HOOK, root / HOOK_IN_DIR):
        if is_nftfwd_hook(hook):
            remove(hook)
    if purge:
        model = root / MODEL
        if model.is_file() or model.is_symlink():
            remove(model)
        with contextlib.suppress(OSError):  # only if empty: anything else is not nftfwd's
            model.parent.rmdir()
    return removed


def packaged_unit(root: Path) -> Path | None:
    """The unit a distribution package installed under `root`, if there is one."""
    return next((root / unit for unit in PACKAGED_UNITS if (root / unit).is_file()), None)


def unit_text(*, nftfwd_bin: str, table: str, packaged: bool = False) -> str:
    """The content of nftfwd.service (see the module's docstring for its choices).

    `packaged` is the unit a distribution package ships (built from this text when the
    package is built), which `nftfwd install` enables rather than writes.
    """
    return _render(
        UNIT_TEMPLATE, packaged=packaged, model=f"/{MODEL}", **_unit_values(nftfwd_bin, table)
    )


def drop_in_text(*, nftfwd_bin: str, table: str) -> str:
    """A drop-in that points the packaged unit at another table or nftfwd command."""
    return _render(DROP_IN_TEMPLATE, nftfwd_bin=nftfwd_bin, **_unit_values(nftfwd_bin, table))


def hook_text(nftfwd_bin: str) -> str:
    """The content of nftfwd's libvirt network hook."""
    _check_command(nftfwd_bin)
    return _render(
        HOOK_TEMPLATE,
        guard=True,
        paths=True,
        cmd=shlex.quote(nftfwd_bin),
        model=shlex.quote("/" + str(MODEL)),
        state=shlex.quote(str(DEFAULT_STATE_DIR)),
    )


def is_nftfwd_hook(path: Path) -> bool:
    """Whether `path` is a hook file exactly as nftfwd writes it (for any nftfwd path).

    Also as nftfwd wrote it before the hook checked that nftfwd is still there.
    """
    try:
        if not path.is_file():
            return False
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return any(pattern.fullmatch(text) for pattern in _hook_patterns())


@cache
def _hook_patterns() -> tuple[re.Pattern[str], ...]:
    """The hook's template, for any command and paths, as nftfwd writes it and as earlier
    versions wrote it (without the guard, without the paths, or without both)."""
    marks = {"cmd": "\0cmd\0", "model": "\0model\0", "state": "\0state\0"}
    any_text = "[^\n]+"
    patterns = []
    for guard, paths in itertools.product((True, False), repeat=2):
        text = re.escape(_render(HOOK_TEMPLATE, guard=guard, paths=paths, **marks))
        # The command is checked and run by the same path: the guard must name it too.
        text = text.replace(marks["cmd"], f"(?P<cmd>{any_text})", 1)
        text = text.replace(marks["cmd"], "(?P=cmd)")
        text = text.replace(marks["model"], any_text).replace(marks["state"], any_text)
        patterns.append(re.compile(text))
    return tuple(patterns)


def _plan_unit(root: Path, nftfwd_bin: str, table: str) -> list[PlannedFile]:
    packaged = packaged_unit(root)
    if packaged is None:
        return [
            PlannedFile(
                root / UNIT,
                unit_text(nftfwd_bin=nftfwd_bin, table=table),
                0o644,
                "systemd unit: loads the model at boot and when nftables.service restarts",
            )
        ]
    # The packaged unit as it is, unless a drop-in from an earlier install must be updated.
    if (nftfwd_bin, table) == (PACKAGED_BIN, DEFAULT_TABLE) and not (root / DROP_IN).exists():
        return []
    return [
        PlannedFile(
            root / DROP_IN,
            drop_in_text(nftfwd_bin=nftfwd_bin, table=table),
            0o644,
            f"drop-in for the packaged unit {packaged}: table inet {table}, command {nftfwd_bin}",
        )
    ]


def _plan_model(root: Path, model_path: Path, force: bool) -> PlannedFile | None:
    target = root / MODEL
    if model_path.resolve() == target.resolve():
        if not target.is_file():
            raise NftfwdError(f"{target}: no such model file.")
        return None
    try:
        content = model_path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise NftfwdError(f"{model_path}: cannot read the model file ({err}).") from None
    mode = 0o644
    if target.exists() or target.is_symlink():
        try:
            existing = target.read_bytes().decode("utf-8")
            mode = target.stat().st_mode & 0o7777
        except (OSError, UnicodeDecodeError):
            existing = None
        if existing != content and not force:
            raise NftfwdError(
                f"{target} already holds a different model; compare the two files, then "
                "install again with --force to replace it, or install that one."
            )
    return PlannedFile(target, content, mode, f"the model the unit loads (copy of {model_path})")


def _plan_hook(root: Path, nftfwd_bin: str, force: bool) -> PlannedFile:
    text = hook_text(nftfwd_bin)
    main, in_dir = root / HOOK, root / HOOK_IN_DIR
    restart = "; libvirt uses it once its daemon restarts (libvirtd or virtnetworkd)"
    if not (root / LIBVIRT_DIR).is_dir():
        restart = "; libvirt is not installed: in place for when it is"
    if is_nftfwd_hook(in_dir):
        return PlannedFile(in_dir, text, 0o755, "libvirt network hook (network.d)" + restart)
    if not (main.exists() or main.is_symlink()) or is_nftfwd_hook(main):
        return PlannedFile(main, text, 0o755, "libvirt network hook" + restart)
    if (in_dir.exists() or in_dir.is_symlink()) and not force:
        raise NftfwdError(
            f"{main} and {in_dir} both belong to another program; nftfwd replaces neither "
            "(install with --force to replace the second)."
        )
    return PlannedFile(
        in_dir,
        text,
        0o755,
        f"libvirt network hook, beside the existing {main}, which is not nftfwd's and stays "
        "as it is (libvirt 6.5 and later also runs the hooks in network.d)" + restart,
    )


def _package_files(root: Path) -> frozenset[str]:
    try:
        listed = (root / PACKAGE_FILES).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return frozenset()
    return frozenset(line for line in listed.splitlines() if line.startswith("/"))


def _render(template: str, /, **context: Any) -> str:
    from nftfwd.templating import render

    return render(template, **context)


def _unit_values(nftfwd_bin: str, table: str) -> dict[str, str]:
    """What the unit and its drop-in say, checked and quoted for systemd: the table, the
    description, the load command (ExecStart, ExecReload) and the stop command."""
    _check_command(nftfwd_bin)
    _check_table(table)
    return {
        "table": table,
        "description": f"nftfwd port forwards (nftables table inet {table})",
        "load": _systemd_command([nftfwd_bin, "load", "--atomic", "--yes", "/" + str(MODEL)]),
        "stop": _systemd_command([NFT, f"add table inet {table}; delete table inet {table}"]),
    }


def _check_table(table: str) -> None:
    if not _TABLE.fullmatch(table):
        raise NftfwdError(f"{table!r} is not a valid nftfwd table name.")


def _check_command(path: str) -> None:
    # systemd refuses an executable whose path has a quote, a backslash or a control
    # character ("Executable name contains special characters"), so nftfwd does too.
    if not os.path.isabs(path) or any(not c.isprintable() or c in "\"'\\" for c in path):
        raise NftfwdError(
            f"{path!r} is not an absolute path free of quotes, backslashes and control "
            "characters; systemd and libvirt need the full path of the nftfwd command."
        )


def _systemd_command(argv: list[str]) -> str:
    """`argv` as a systemd Exec*= command line: quoted where needed, specifiers escaped.

    systemd resolves `%` specifiers in every word, but substitutes `$VAR` (and unescapes
    `$$`) only in the arguments, not in the executable's path.
    """
    words = []
    for i, word in enumerate(argv):
        escaped = word.replace("%", "%%")
        if i > 0:
            escaped = escaped.replace("$", "$$")
        if not _SYSTEMD_PLAIN.fullmatch(word):
            escaped = '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'
        words.append(escaped)
    return " ".join(words)
