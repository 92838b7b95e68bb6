"""The command line: thin wrappers that call one stage each, and turn errors into exit codes.

Imports of the stages happen inside the commands, so `build` never loads libnftables.
"""

from __future__ import annotations

import gc
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from nftfwd.errors import NftfwdError
from nftfwd.model import Host

# Child contexts inherit help_option_names, so -h works on every command.
HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    context_settings=HELP_OPTIONS,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Port forwarding for KVM/libvirt, Incus and homelab hosts, "
    "compiled into one atomic nftables transaction.",
)
libvirt_app = typer.Typer(no_args_is_help=True, help="libvirt integration.")
app.add_typer(libvirt_app, name="libvirt")

ModelArg = Annotated[
    Path | None,
    typer.Argument(
        help="Model file; default $NFTFWD_CONFIG, ./nftfwd.yaml, /etc/nftfwd/nftfwd.yaml.",
        show_default=False,
    ),
]


class BuildFormat(StrEnum):
    nft = "nft"
    json = "json"


class DiffFormat(StrEnum):
    text = "text"
    markdown = "markdown"


HostOpt = Annotated[
    str | None, typer.Option("--host", help="Host of the model; default: this machine's.")
]


def _color(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and "NO_COLOR" not in os.environ


def _print_version(value: bool) -> None:
    if value:
        from nftfwd import __version__

        print(f"nftfwd {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print nftfwd's version and exit.",
        ),
    ] = False,
) -> None:
    # The app's help is the Typer's; this callback exists for --version alone.
    return None


def _report(message: str) -> None:
    """One clear sentence first; further problems indented below it."""
    color = _color(sys.stderr)
    prefix = "\033[1;31merror:\033[0m " if color else "error: "
    first, *rest = message.splitlines() or [""]
    print(prefix + first, file=sys.stderr)
    for line in rest:
        print("  " + line, file=sys.stderr)


def _fail(message: str, code: int = 2) -> NoReturn:
    _report(message)
    raise typer.Exit(code)


def _compiled(model: Path | None, host: str | None):  # type: ignore[no-untyped-def]
    from nftfwd.compiler import compile_host
    from nftfwd.config import load_model, model_path, select_host

    loaded = load_model(model_path(model))
    chosen = select_host(loaded, host)
    return loaded, chosen, compile_host(loaded, chosen)


@app.command()
def build(
    model: ModelArg = None,
    host: HostOpt = None,
    output_format: Annotated[
        BuildFormat,
        typer.Option("--format", help="nft (a script for nft -f) or json (libnftables)."),
    ] = BuildFormat.nft,
) -> None:
    """Print the whole transaction for one host: same input, same bytes."""
    from nftfwd.compiler import render

    _, _, table = _compiled(model, host)
    sys.stdout.write(render(table, output_format.value))


@app.command()
def check(model: ModelArg = None, host: HostOpt = None) -> None:
    """Validate the model and have the kernel's parser accept the rules; changes nothing."""
    from nftfwd.compiler import render
    from nftfwd.kernel.check import check_script

    loaded, chosen, table = _compiled(model, host)
    check_script(render(table, "json"), "json")
    print(f"ok: {loaded.source} host {chosen.name}: the kernel accepts table inet {table.name}")


@app.command()
def diff(
    model: ModelArg = None,
    host: HostOpt = None,
    old: Annotated[
        Path | None,
        typer.Option("--from", help="Compare against this older model instead of the host."),
    ] = None,
    output_format: Annotated[
        DiffFormat, typer.Option("--format", help="text, or markdown (for a pull request).")
    ] = DiffFormat.text,
) -> None:
    """What a load would change (exit 0 none, 1 changes, 2 error)."""
    from nftfwd.diffview import format_markdown, format_text

    if old is not None:
        from nftfwd.config import load_model, model_path
        from nftfwd.review import models_diff

        diffs = models_diff(load_model(old), load_model(model_path(model)), host)
    else:
        from nftfwd.kernel.libnft import Nft
        from nftfwd.kernel.live import compiled_side, live_diff, read_live

        _, chosen, table = _compiled(model, host)
        diffs = [live_diff(chosen, table, read_live(Nft(), table), compiled_side(table))]
    if output_format is DiffFormat.markdown:
        sys.stdout.write(format_markdown(diffs))
    else:
        sys.stdout.write("".join(format_text(d, _color(sys.stdout)) for d in diffs))
    raise typer.Exit(1 if any(d.changed for d in diffs) else 0)


@app.command()
def load(
    model: ModelArg = None,
    host: HostOpt = None,
    atomic: Annotated[
        bool, typer.Option("--atomic", help="Apply as one kernel transaction (always so).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before applying.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change and stop.")
    ] = False,
    confirm: Annotated[
        int | None,
        typer.Option(
            "--confirm",
            metavar="SECONDS",
            help="Roll back unless confirmed within SECONDS (nftfwd confirm).",
        ),
    ] = None,
    enable_forwarding: Annotated[
        bool,
        typer.Option(
            "--enable-forwarding",
            help="Turn on IP forwarding now and at boot (/etc/sysctl.d/90-nftfwd.conf).",
        ),
    ] = False,
) -> None:
    """Show the diff, then apply it as one kernel transaction: all of it or none of it."""
    from nftfwd.kernel.load import LoadOptions
    from nftfwd.kernel.load import load as run_load

    del atomic  # every load is one transaction; the flag says so on the command line
    if confirm is not None and confirm < 1:
        _fail("--confirm needs a number of seconds of at least 1.")
    loaded, chosen, table = _compiled(model, host)
    if enable_forwarding and not dry_run:
        from nftfwd.kernel.forwarding import enable_forwarding as turn_on

        for setting in turn_on(chosen):
            print(
                f"set {setting.key.replace('/', '.')} = {setting.value}: {setting.why}",
                file=sys.stderr,
            )
    options = LoadOptions(
        yes=yes,
        dry_run=dry_run,
        confirm_seconds=confirm,
        color=_color(sys.stdout),
        interactive=sys.stdin.isatty(),
    )
    code = run_load(chosen, table, options)
    if code == 0 and not dry_run:
        _warn_findings(chosen, loaded.table)
    raise typer.Exit(code)


def _warn_findings(chosen: Host, table: str) -> None:
    """What on this host would still defeat the rules just loaded (doctor's findings)."""
    from nftfwd.doctor.run import format_findings
    from nftfwd.kernel.hoststate import examine

    try:
        findings = examine(chosen, table)
    except NftfwdError as err:  # the load itself succeeded: say so, do not fail it
        print(
            f"warning: the rules are loaded, but doctor could not check the host: {err}",
            file=sys.stderr,
        )
        return
    if findings:
        print("warning: the rules are loaded, but on this host:", file=sys.stderr)
        sys.stderr.write(format_findings(findings, _color(sys.stderr)))


@app.command()
def doctor(
    model: ModelArg = None,
    host: HostOpt = None,
    nftables_conf: Annotated[
        Path,
        typer.Option(
            "--nftables-conf",
            metavar="PATH",
            help="The file nftables.service loads at boot, checked for `flush ruleset`.",
        ),
    ] = Path("/etc/nftables.conf"),
) -> None:
    """Why a forward would not work on this host, and the fix (exit 0 healthy, 1 findings)."""
    from nftfwd.config import load_model, model_path, select_host
    from nftfwd.doctor.run import exit_code, format_findings
    from nftfwd.kernel.hoststate import examine

    loaded = load_model(model_path(model))
    chosen = select_host(loaded, host)
    findings = examine(chosen, loaded.table, nftables_conf=str(nftables_conf))
    sys.stdout.write(format_findings(findings, _color(sys.stdout)))
    raise typer.Exit(exit_code(findings))


@app.command("confirm")
def confirm_command() -> None:
    """Keep the rules of a pending `load --confirm`."""
    from nftfwd.kernel.load import confirm_pending

    confirm_pending()
    print("confirmed: the new rules stay.")


def _self_path() -> str:
    """The nftfwd executable the unit and the hook should run."""
    import shutil

    argv0 = Path(sys.argv[0])
    if argv0.name == "nftfwd" and argv0.exists():
        return str(argv0.resolve())
    return shutil.which("nftfwd") or "/usr/local/bin/nftfwd"


RootOpt = Annotated[
    Path, typer.Option("--root", help="Write into this tree instead of / (staging, tests).")
]


@app.command()
def install(
    model: ModelArg = None,
    root: RootOpt = Path("/"),
    force: Annotated[bool, typer.Option("--force", help="Replace a different model.")] = False,
) -> None:
    """Boot persistence: the systemd unit, the model in /etc/nftfwd, the libvirt hook."""
    from nftfwd.config import load_model, model_path
    from nftfwd.install import apply_install, install_plan, packaged_unit

    path = model_path(model)
    loaded = load_model(path)
    plan = install_plan(
        root=root,
        model_path=path.resolve(),
        nftfwd_bin=_self_path(),
        table=loaded.table,
        force=force,
    )
    changed = set(apply_install(plan))
    for planned in plan:
        print(f"{'wrote' if planned.path in changed else 'kept '} {planned.path}: {planned.note}")
    packaged = packaged_unit(root)
    if packaged is not None:
        print(f"uses the packaged unit {packaged}; nftfwd writes no unit of its own.")
    if root == Path("/"):
        from nftfwd.kernel.system import systemctl, systemd_running

        if systemd_running():
            systemctl("daemon-reload")
            systemctl("enable", "--now", "nftfwd.service")
            print("enabled nftfwd.service; it loads the model now and at every boot.")
        else:  # a chroot or an image being built: enabling works offline, starting does not
            systemctl("enable", "nftfwd.service")
            print("enabled nftfwd.service; systemd is not running here: it loads at boot.")


@app.command()
def uninstall(
    root: RootOpt = Path("/"),
    purge: Annotated[bool, typer.Option("--purge", help="Remove the model too.")] = False,
) -> None:
    """Remove the unit (disable the packaged one), the hook and nftfwd's table; nothing else."""
    import contextlib

    from nftfwd.install import DEFAULT_TABLE, MODEL
    from nftfwd.install import uninstall as remove_files
    from nftfwd.kernel.system import delete_table, systemctl, systemd_running

    table = DEFAULT_TABLE
    if (root / MODEL).exists():
        from nftfwd.config import load_model

        table = load_model(root / MODEL).table
    running = root == Path("/") and systemd_running()
    if root == Path("/"):
        with contextlib.suppress(NftfwdError):  # not installed, or not a systemd host
            systemctl("disable", *(["--now"] if running else []), "nftfwd.service")
        delete_table("inet", table)
        print(f"removed table inet {table}.")
    for path in remove_files(root, purge=purge):
        print(f"removed {path}")
    if running:
        with contextlib.suppress(NftfwdError):
            systemctl("daemon-reload")


@libvirt_app.command("import")
def libvirt_import(
    xml: Annotated[list[Path], typer.Argument(help="Network XML files (virsh net-dumpxml).")],
    uplink: Annotated[str, typer.Option(help="The uplink to write into the skeleton.")] = "eth0",
) -> None:
    """Print a model skeleton from libvirt network XML: bridges, subnets, static hosts."""
    import socket

    from nftfwd.libvirt import import_networks

    texts = []
    for path in xml:
        try:
            texts.append((str(path), path.read_text(encoding="utf-8")))
        except OSError as err:
            _fail(f"{path}: cannot read it ({err.strerror}).")
    sys.stdout.write(import_networks(texts, host_name=socket.gethostname(), uplink=uplink))


@libvirt_app.command("hook", context_settings={"ignore_unknown_options": True})
def libvirt_hook(args: Annotated[list[str] | None, typer.Argument()] = None) -> None:
    """Entry point of /etc/libvirt/hooks/network: reload nftfwd when libvirt starts or
    updates a network. Never calls back into libvirt; always exits 0."""
    from nftfwd.libvirt import hook_action

    if not sys.stdin.isatty():
        sys.stdin.read()  # the network XML; libvirt waits until it is consumed
    if hook_action(list(args or [])) != "reload":
        return
    from nftfwd.kernel.hook import reload_for_libvirt

    reload_for_libvirt(list(args or []))


@app.command()
def schema() -> None:
    """Print the JSON Schema of the model file (for editors' completion)."""
    from nftfwd.schema import schema_text

    sys.stdout.write(schema_text())


def main() -> None:
    # One run builds large trees (the model, its IR, its batch, the kernel's listing) and
    # ends: the cyclic garbage collector would walk them again and again for nothing, a
    # fifth of a load of 10,000 forwards. They hold no reference cycles, so reference
    # counting frees them all the same.
    gc.disable()
    try:
        app()
    except NftfwdError as err:
        _report(str(err))
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        _report("interrupted.")
        sys.exit(130)
