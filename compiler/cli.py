"""The command line: thin wrappers that call one stage each, and turn errors into exit codes.

Imports of the stages happen inside the commands, so `build` never loads libnftables.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Literal, NoReturn

import typer

from nftfwd.errors import NftfwdError

app = typer.Typer(
    add_completion=False,
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
HostOpt = Annotated[
    str | None, typer.Option("--host", help="Host of the model; default: this machine's.")
]


def _report(message: str) -> None:
    """One clear sentence first; further problems indented below it."""
    color = sys.stderr.isatty() and "NO_COLOR" not in os.environ
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
        str, typer.Option("--format", help="nft (a script for nft -f) or json (libnftables).")
    ] = "nft",
) -> None:
    """Print the whole transaction for one host: same input, same bytes."""
    from nftfwd.compiler import render

    if output_format not in ("nft", "json"):
        _fail(f"unknown format '{output_format}'; use nft or json.")
    _, _, table = _compiled(model, host)
    fmt: Literal["nft", "json"] = "json" if output_format == "json" else "nft"
    sys.stdout.write(render(table, fmt))


@app.command()
def check(model: ModelArg = None, host: HostOpt = None) -> None:
    """Validate the model and have the kernel's parser accept the rules; changes nothing."""
    from nftfwd.compiler import render
    from nftfwd.kernel.check import check_script

    loaded, chosen, table = _compiled(model, host)
    check_script(render(table, "json"), "json")
    print(f"ok: {loaded.source} host {chosen.name}: the kernel accepts table inet {table.name}")


@app.command()
def schema() -> None:
    """Print the JSON Schema of the model file (for editors' completion)."""
    from nftfwd.schema import schema_text

    sys.stdout.write(schema_text())


def main() -> None:
    try:
        app()
    except NftfwdError as err:
        _report(str(err))
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        _report("interrupted.")
        sys.exit(130)
