"""The command line: parses arguments, calls one command's orchestration, sets the exit code.

Imports happen inside the commands, so `build` never loads libnftables
(tests/packaging/test_layers.py checks it, and that nothing here touches the host but
through orchestration).
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
from nftfwd.install import MODEL
from nftfwd.kernel.state import DEFAULT_STATE_DIR
from nftfwd.model import Host

# Child contexts inherit help_option_names, so -h works on every command.
HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}

# Placeholders are upper-case words (MODEL, HOST, SECONDS, XML...); "\b" keeps click
# from rewrapping the lines of a paragraph.
EXAMPLES = """Examples:

\b
  nftfwd build nftfwd.yaml > rules.nft  # the nft script (--format json)
  nftfwd check                          # the kernel accepts it; no change
  nftfwd diff                           # what a load would change here
  nftfwd diff --from old.yaml --format markdown  # a model change, for review
  nftfwd load --atomic --confirm 60     # apply; undone unless confirmed
  nftfwd doctor                         # what stops a forward here; the fix
  nftfwd trace 2222                     # follow one connection; name what stops it
  nftfwd install                        # load the model at every boot

MODEL is a model file; without it, $NFTFWD_CONFIG, ./nftfwd.yaml or
/etc/nftfwd/nftfwd.yaml. Each command's help (nftfwd COMMAND -h) states its exit
codes. Colour only on a terminal; NO_COLOR (set, not empty) turns it off,
FORCE_COLOR (set, not empty) turns it on anywhere; NO_COLOR wins over FORCE_COLOR."""

app = typer.Typer(
    context_settings=HELP_OPTIONS,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Port forwarding for KVM/libvirt, Incus and homelab hosts, "
    "compiled into one atomic nftables transaction.",
    epilog=EXAMPLES,
)
libvirt_app = typer.Typer(
    no_args_is_help=True, help="Integration with libvirt: a model skeleton from its networks."
)
app.add_typer(libvirt_app, name="libvirt")

ModelArg = Annotated[
    Path | None,
    typer.Argument(
        metavar="MODEL",
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
    json = "json"


class ReportFormat(StrEnum):
    text = "text"
    json = "json"


HostOpt = Annotated[
    str | None,
    typer.Option("--host", metavar="HOST", help="Host of the model; default: this machine's."),
]


def _color(stream: object) -> bool:
    """Colour on a terminal. NO_COLOR (no-color.org) turns it off and FORCE_COLOR
    (force-color.org) on, each when set and not empty; NO_COLOR wins: whoever asked for
    no colour gets none."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


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
    from nftfwd.compiler import compile_host, load_model
    from nftfwd.config import model_path, select_host

    loaded = load_model(model_path(model))
    chosen = select_host(loaded, host)
    return loaded, chosen, compile_host(loaded, chosen)


@app.command(short_help="Print the rules for one host, as an nft script or JSON.")
def build(
    model: ModelArg = None,
    host: HostOpt = None,
    output_format: Annotated[
        BuildFormat,
        typer.Option(
            "--format", metavar="FORMAT", help="nft (a script for nft -f) or json (libnftables)."
        ),
    ] = BuildFormat.nft,
) -> None:
    """Print the whole transaction for one host: same input, same bytes.

    Exit codes: 0 printed, 2 error (the model's mistakes, all at once).
    """
    from nftfwd.compiler import render

    _, _, table = _compiled(model, host)
    sys.stdout.write(render(table, output_format.value))


@app.command(short_help="Check the model, and that the kernel accepts its rules.")
def check(model: ModelArg = None, host: HostOpt = None) -> None:
    """Validate the model and have the kernel's parser accept the rules; changes nothing.

    Exit codes: 0 accepted, 2 error.
    """
    from nftfwd.compiler import render
    from nftfwd.kernel.check import check_script

    loaded, chosen, table = _compiled(model, host)
    check_script(render(table, "json"), "json")
    print(f"ok: {loaded.source} host {chosen.name}: the kernel accepts table inet {table.name}")


@app.command(short_help="Show what a load would change, or what a model change does.")
def diff(
    model: ModelArg = None,
    host: HostOpt = None,
    old: Annotated[
        Path | None,
        typer.Option(
            "--from",
            metavar="OLD",
            help="Compare against this older model instead of the host (no root needed).",
        ),
    ] = None,
    output_format: Annotated[
        DiffFormat,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="text; markdown (for a pull request, with a diagram); json (for CI).",
        ),
    ] = DiffFormat.text,
) -> None:
    """Show what a load would change: forwards, rules and elements.

    Against the live host, or with --from against an older model, for every host of
    the model (or --host).

    Exit codes: 0 no changes, 1 changes, 2 error.
    """
    from nftfwd.diffview import format_text
    from nftfwd.markdown import format_markdown

    if old is not None:
        from nftfwd.compiler import load_model
        from nftfwd.config import model_path
        from nftfwd.review import models_diff

        diffs = models_diff(load_model(old), load_model(model_path(model)), host)
    else:
        from nftfwd.kernel.live import table_diff

        _, chosen, table = _compiled(model, host)
        diffs = [table_diff(chosen, table)]
    if output_format is DiffFormat.markdown:
        sys.stdout.write(format_markdown(diffs))
    elif output_format is DiffFormat.json:
        from nftfwd.plan_json import format_json

        sys.stdout.write(format_json(diffs, "host" if old is None else "model"))
    else:
        sys.stdout.write("".join(format_text(d, _color(sys.stdout)) for d in diffs))
    raise typer.Exit(1 if any(d.changed for d in diffs) else 0)


@app.command(short_help="Apply the rules as one kernel transaction, after the diff.")
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
            min=1,
            max=3600,
            help="Roll back unless confirmed within SECONDS, 1 to 3600 (nftfwd confirm).",
        ),
    ] = None,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach",
            help="With --confirm: return once the rules are live; a guard process "
            "rolls them back unless `nftfwd confirm` runs in time.",
        ),
    ] = False,
    enable_forwarding: Annotated[
        bool,
        typer.Option(
            "--enable-forwarding",
            help="Turn on IP forwarding now and at boot (/etc/sysctl.d/90-nftfwd.conf).",
        ),
    ] = False,
) -> None:
    """Show the diff, then apply it as one kernel transaction: all of it or none of it.

    Exit codes: 0 applied or nothing to change, 1 declined or --dry-run with changes,
    2 error (the host is unchanged), 3 rolled back (--confirm: not confirmed in time,
    interrupted, or an error after the transaction).
    """
    from nftfwd.kernel.load import LoadOptions
    from nftfwd.kernel.load import load as run_load

    del atomic  # every load is one transaction; the flag says so on the command line
    if detach and confirm is None:
        _fail(
            "--detach needs --confirm SECONDS: the guard it leaves behind rolls back "
            "unconfirmed rules."
        )
    loaded, chosen, table = _compiled(model, host)
    options = LoadOptions(
        yes=yes,
        dry_run=dry_run,
        confirm_seconds=confirm,
        detach=detach,
        color=_color(sys.stdout),
        interactive=sys.stdin.isatty(),
        enable_forwarding=enable_forwarding,
    )
    code = run_load(chosen, table, options)
    if code == 0 and not dry_run:
        _warn_findings(chosen, loaded.table)
    raise typer.Exit(code)


def _warn_findings(chosen: Host, table: str) -> None:
    """What on this host would still defeat the rules just loaded: doctor's errors and
    warnings (its notes are for doctor itself)."""
    from nftfwd.doctor.run import format_findings
    from nftfwd.kernel.examine import examine

    try:
        findings = examine(chosen, table)
    except NftfwdError as err:  # the load itself succeeded: say so, do not fail it
        print(
            f"warning: the rules are loaded, but doctor could not check the host: {err}",
            file=sys.stderr,
        )
        return
    findings = [f for f in findings if f.severity != "note"]
    if findings:
        print("warning: the rules are loaded, but on this host:", file=sys.stderr)
        sys.stderr.write(format_findings(findings, _color(sys.stderr)))


@app.command(short_help="Find what on this host stops a forward, and print the fix.")
def doctor(
    model: ModelArg = None,
    host: HostOpt = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail (exit 1) on warnings too, not only on errors.")
    ] = False,
    output_format: Annotated[
        ReportFormat,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="text, or json (one document, for monitoring and CI).",
        ),
    ] = ReportFormat.text,
    nftables_conf: Annotated[
        Path | None,
        typer.Option(
            "--nftables-conf",
            metavar="PATH",
            help="The file nftables.service loads, checked for `flush ruleset` "
            "[default: DIR/etc/nftables.conf, DIR of --root].",
            show_default=False,
        ),
    ] = None,
    root: Annotated[
        Path,
        typer.Option(
            "--root",
            metavar="DIR",
            help="Read the systemd units (and nftables.conf) under this tree instead of /.",
        ),
    ] = Path("/"),
) -> None:
    """Find what on this host stops a forward, and print the fix.

    Each finding has a severity: error (a forward fails now, or after the next boot),
    warning (a risk that depends on what an admin does later) or note.

    Exit codes: 0 no errors (warnings and notes are printed), 1 errors (with --strict:
    errors or warnings), 2 nftfwd could not check (bad model, not root).
    """
    from nftfwd.compiler import load_model
    from nftfwd.config import model_path, select_host
    from nftfwd.doctor.run import exit_code
    from nftfwd.kernel.examine import examine

    loaded = load_model(model_path(model))
    chosen = select_host(loaded, host)
    conf = str(nftables_conf) if nftables_conf is not None else None
    findings = examine(chosen, loaded.table, nftables_conf=conf, boot_root=str(root))
    if output_format is ReportFormat.json:
        from nftfwd.doctor.json_report import format_json

        sys.stdout.write(format_json(chosen.name, loaded.table, findings, strict=strict))
    else:
        from nftfwd.doctor.run import format_findings

        sys.stdout.write(format_findings(findings, _color(sys.stdout)))
    raise typer.Exit(exit_code(findings, strict=strict))


class TraceProto(StrEnum):
    tcp = "tcp"
    udp = "udp"


class TraceFamily(StrEnum):
    v4 = "4"
    v6 = "6"


def _trace_arguments(words: list[str]) -> tuple[Path | None, int]:
    """[MODEL] PORT: one word is the port, two are the model and the port."""
    if len(words) not in (1, 2):
        _fail("give the host port to trace, after the model file if any: nftfwd trace [MODEL] PORT")
    port = words[-1]
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        _fail(f"PORT: '{port[:20]}' is not a port (1-65535); give the host port of a forward.")
    return (Path(words[0]) if len(words) == 2 else None), int(port)


@app.command(short_help="Follow one real connection to a forward through every table.")
def trace(
    words: Annotated[
        list[str],
        typer.Argument(
            metavar="[MODEL] PORT",
            help="Model file (optional, as for the other "
            "commands), then the host port of a forward.",
            show_default=False,
        ),
    ],
    host: HostOpt = None,
    proto: Annotated[
        TraceProto, typer.Option("--proto", metavar="PROTO", help="tcp or udp.")
    ] = TraceProto.tcp,
    client: Annotated[
        str | None,
        typer.Option("--from", metavar="ADDR", help="Trace only a connection from this address."),
    ] = None,
    family: Annotated[
        TraceFamily | None,
        typer.Option(
            "--family",
            metavar="FAMILY",
            help="4 or 6: trace only IPv4 or IPv6.",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            min=0.1,
            max=3600,
            help="How long to wait for the connection and its reply.",
        ),
    ] = 60.0,
    probe: Annotated[
        bool,
        typer.Option("--probe", help="Make the connection from this host itself (hairpin)."),
    ] = False,
    output_format: Annotated[
        ReportFormat,
        typer.Option("--format", metavar="FORMAT", help="text, or json (one document)."),
    ] = ReportFormat.text,
) -> None:
    """Follow the first new connection to a forward through every table of this host.

    A small table of its own (inet nftfwd_trace) marks that connection, both directions,
    for the kernel's tracing; `nft monitor` reports every rule it passes, in every table.
    The path is printed in order (hook, table, chain, rule, handle, verdict), with the
    DNAT, the route and the end: delivered, or the rule or policy that stopped it. The
    table is removed at the end, always.

    Exit codes: 0 delivered (the guest answered), 1 stopped (the rule is named), 2 error
    (the port is not a forward, another trace runs, not root), 4 nothing came within the
    timeout (no connection, or no answer from the guest).
    """
    from nftfwd.compiler import load_model
    from nftfwd.config import model_path, select_host
    from nftfwd.kernel.trace import TraceOptions, run_trace, trace_doctor
    from nftfwd.trace_report import format_json, format_text

    model, port = _trace_arguments(words)
    loaded = load_model(model_path(model))
    chosen = select_host(loaded, host)
    options = TraceOptions(
        port=port,
        proto="udp" if proto is TraceProto.udp else "tcp",
        client=client,
        family=None if family is None else ("ip" if family is TraceFamily.v4 else "ip6"),
        timeout=timeout,
        probe=probe,
    )

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    report = run_trace(chosen, loaded.table, options, say, doctor=trace_doctor)
    if output_format is ReportFormat.json:
        sys.stdout.write(format_json(report))
    else:
        sys.stdout.write(format_text(report))
    raise typer.Exit(report.trace.exit_code)


@app.command("confirm", short_help="Keep the rules of a pending `load --confirm`.")
def confirm_command() -> None:
    """Keep the rules of a pending `load --confirm`.

    Exit codes: 0 kept, 2 nothing is pending, or an error.
    """
    from nftfwd.kernel.load import confirm_pending

    print(confirm_pending())


@app.command(short_help="Remove nftfwd's table from the kernel; nothing else.")
def unload(
    model: ModelArg = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Say whether there is a table to remove, and stop."),
    ] = False,
) -> None:
    """Remove nftfwd's table (the model's table:, else the one nftfwd last loaded), and
    nothing else: other tables, the unit, the hook, the model and the state stay. A load
    that waits for confirmation is cancelled first, so its guard does not bring the
    table back.

    Exit codes: 0 removed, or not loaded; 1 --dry-run: the table is loaded and would be
    removed; 2 error.
    """
    from nftfwd.kernel.service import unload as run_unload

    done = run_unload(model, dry_run=dry_run)
    if done.note:
        print(done.note, file=sys.stderr)
    if not done.loaded:
        print(f"table inet {done.table} is not loaded; nothing to remove.")
    elif dry_run:
        print(f"would remove table inet {done.table}.")
        raise typer.Exit(1)
    else:
        print(f"removed table inet {done.table}.")


def _self_path() -> str:
    """The nftfwd executable the unit and the hook should run."""
    import shutil

    argv0 = Path(sys.argv[0])
    if argv0.name == "nftfwd" and argv0.exists():
        return str(argv0.resolve())
    return shutil.which("nftfwd") or "/usr/local/bin/nftfwd"


RootOpt = Annotated[
    Path,
    typer.Option(
        "--root", metavar="DIR", help="Write into this tree instead of / (staging, tests)."
    ),
]


@app.command(short_help="Load the model at every boot: systemd unit and libvirt hook.")
def install(
    model: ModelArg = None,
    root: RootOpt = Path("/"),
    force: Annotated[bool, typer.Option("--force", help="Replace a different model.")] = False,
    no_libvirt_hook: Annotated[
        bool,
        typer.Option(
            "--no-libvirt-hook",
            help="Leave the libvirt network hook out (it is laid out even before libvirt "
            "is installed).",
        ),
    ] = False,
) -> None:
    """Boot persistence: the systemd unit, the model in /etc/nftfwd, the libvirt hook.

    Exit codes: 0 done; 1 done in part (the files are in place, the rest is printed: for
    example on a host without systemd); 2 error, nothing changed.
    """
    from nftfwd.compiler import load_model
    from nftfwd.config import model_path
    from nftfwd.install import apply_install, install_plan, packaged_unit

    path = model_path(model)
    loaded = load_model(path)
    command = _self_path()
    plan = install_plan(
        root=root,
        model_path=path.resolve(),
        nftfwd_bin=command,
        table=loaded.table,
        force=force,
        libvirt_hook=not no_libvirt_hook,
    )
    changed = set(apply_install(plan))
    for planned in plan:
        print(f"{'wrote' if planned.path in changed else 'kept '} {planned.path}: {planned.note}")
    packaged = packaged_unit(root)
    if packaged is not None:
        print(f"uses the packaged unit {packaged}; nftfwd writes no unit of its own.")
    if root != Path("/"):
        print(f"to start it at boot in that tree: systemctl --root={root} enable nftfwd.service")
        return
    from nftfwd.kernel.service import start_service

    partly = start_service(f"{command} load --atomic /{MODEL}")
    if partly is not None:
        _partly_done(partly.what, partly.still_to_do)
    print("enabled nftfwd.service; it loads the model now and at every boot.")


def _partly_done(what: str, still_to_do: list[str]) -> NoReturn:
    """Exit 1, "done in part" (model.md): what is missing, then what the admin must do."""
    print(f"done in part: {what}\nstill to do:", file=sys.stderr)
    for step in still_to_do:
        print(f"  {step}", file=sys.stderr)
    raise typer.Exit(1)


@app.command(short_help="Remove the unit, the hook and nftfwd's table; nothing else.")
def uninstall(
    root: RootOpt = Path("/"),
    purge: Annotated[bool, typer.Option("--purge", help="Remove the model too.")] = False,
) -> None:
    """Remove the unit (disable the packaged one), the hook and nftfwd's table; nothing else.

    Exit codes: 0 done; 1 done in part (systemd could not disable the unit: printed);
    2 error.
    """
    from nftfwd.install import uninstall as remove_files

    live = root == Path("/")
    failed: list[str] = []
    if live:
        from nftfwd.kernel.service import installed_table, reload_units, stop_service

        # Only the table's name is needed: a broken model does not stop an uninstall.
        table, note = installed_table(root / MODEL, use_state=True)
        if note:
            print(note, file=sys.stderr)
        failed += stop_service(table)
        print(f"removed table inet {table}.")
    for path in remove_files(root, purge=purge):
        print(f"removed {path}")
    if live:
        failed += reload_units()
    if failed:
        _partly_done(
            "the files and the table are gone, but " + "; ".join(failed),
            ["systemctl disable nftfwd.service && systemctl daemon-reload"],
        )


@libvirt_app.command("import", short_help="Print a model skeleton from libvirt network XML.")
def libvirt_import(
    xml: Annotated[
        list[Path],
        typer.Argument(metavar="XML...", help="Network XML files (virsh net-dumpxml)."),
    ],
    uplink: Annotated[
        str, typer.Option(metavar="UPLINK", help="The uplink to write into the skeleton.")
    ] = "eth0",
) -> None:
    """Print a model skeleton from libvirt network XML: bridges, subnets, static hosts.

    Exit codes: 0 printed, 2 error.
    """
    import socket

    from nftfwd.libvirt import import_networks
    from nftfwd.source import decode_utf8, max_model_bytes, read_input

    texts = []
    for path in xml:
        name, data = read_input(path, "network XML", max_model_bytes(), pipes=True)
        texts.append((name, decode_utf8(data, name)))
    sys.stdout.write(import_networks(texts, host_name=socket.gethostname(), uplink=uplink))


# libvirt runs this, people do not: hidden from the list of commands.
@libvirt_app.command("hook", hidden=True, context_settings={"ignore_unknown_options": True})
def libvirt_hook(
    args: Annotated[list[str] | None, typer.Argument()] = None,
    model: Annotated[
        Path, typer.Option("--model", help="The model to load (never $NFTFWD_CONFIG).")
    ] = Path("/") / MODEL,
    state_dir: Annotated[
        Path,
        typer.Option("--state-dir", help="nftfwd's state directory (never $NFTFWD_STATE_DIR)."),
    ] = DEFAULT_STATE_DIR,
) -> None:
    """Entry point of /etc/libvirt/hooks/network: reload nftfwd when libvirt starts or
    updates a network. Never calls back into libvirt, never waits for another nftfwd
    run; always exits 0. Logs to stderr and the journal (else syslog, else
    STATE_DIR/hook.log)."""
    from nftfwd.libvirt import hook_action

    if not sys.stdin.isatty():
        sys.stdin.read()  # the network XML; libvirt waits until it is consumed
    if hook_action(list(args or [])) != "reload":
        return
    from nftfwd.kernel.hook import reload_for_libvirt

    reload_for_libvirt(list(args or []), model_file=model, state=state_dir)


@app.command(short_help="Print the JSON Schema of the model file, for editors.")
def schema() -> None:
    """Print the JSON Schema of the model file (for editors' completion).

    Exit codes: 0 printed.
    """
    from nftfwd.schema import schema_text

    sys.stdout.write(schema_text())


def main() -> None:
    # One run builds large trees (the model, its IR, its batch, the kernel's listing) and
    # ends: the cyclic garbage collector would walk them again and again for nothing, a
    # fifth of a load of 10,000 forwards. They hold no reference cycles, so reference
    # counting frees them all the same.
    gc.disable()
    try:
        # One name in every usage line, however it was started (python -m, a test runner).
        app(prog_name="nftfwd")
    except NftfwdError as err:
        _report(str(err))
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        _report("interrupted.")
        sys.exit(130)
