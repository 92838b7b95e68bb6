"""nftfwd(1), written from the command line's own help so the two cannot disagree.

Every command and subcommand gets its usage, its help and its options, in the order
`nftfwd -h` lists them; the sections no `--help` has (files, environment, exit status)
are written here once.
"""

from __future__ import annotations

import inspect
import re
from datetime import date

import typer
from typer.core import TyperGroup

from nftfwd import __version__

_FILES = (
    (
        "/etc/nftfwd/nftfwd.yaml",
        "The model a command uses when given none and neither $NFTFWD_CONFIG nor "
        "./nftfwd.yaml is there; `nftfwd install` copies the model here.",
    ),
    (
        "/var/lib/nftfwd/",
        "previous.json and last-good.json: libnftables batches that replace only nftfwd's "
        "table (`nft -j -f /var/lib/nftfwd/last-good.json` restores).",
    ),
    ("/usr/share/nftfwd/examples/", "Example models."),
    (
        "/usr/share/nftfwd/schemas/nftfwd.schema.json",
        "The JSON Schema of the model (also printed by `nftfwd schema`).",
    ),
)
_ENVIRONMENT = (
    ("NFTFWD_CONFIG", "The model file, when a command is given none."),
    (
        "NFTFWD_STATE_DIR",
        "Where load keeps its lock and rollback state (default /var/lib/nftfwd); one per "
        "host, or per network namespace that runs nftfwd as a host of its own.",
    ),
    ("NO_COLOR", "Set to any value: no colours, even on a terminal."),
)
_EXIT_STATUS = (
    (
        "0",
        "Done; nothing to change (diff, load) or to remove (unload); healthy (doctor); "
        "delivered (trace).",
    ),
    (
        "1",
        "Changes found (diff, load --dry-run), a table to remove (unload --dry-run), "
        "declined (load), findings (doctor), stopped by a rule (trace).",
    ),
    ("2", "An error, reported with file, line and key path; the host is unchanged."),
    ("3", "load --confirm rolled the rules back."),
    ("4", "trace: nothing came within the timeout (no connection, or no answer)."),
)


def render_manpage(app: typer.Typer, *, day: date) -> str:
    """The roff source of nftfwd(1) for the command line `app`, dated `day`."""
    root = typer.main.get_command(app)
    # As the command line makes them: the app's settings (-h beside --help) and down.
    ctx = typer.Context(root, info_name="nftfwd", **root.context_settings)
    summary = _paragraphs(root.help or "")[0].rstrip(".")
    lines = [
        f'.TH NFTFWD 1 "{day.isoformat()}" "nftfwd {__version__}" "User Commands"',
        ".SH NAME",
        f"nftfwd \\- {_text(summary[:1].lower() + summary[1:])}",
        ".SH SYNOPSIS",
        f".B nftfwd\n{_text(' '.join(root.collect_usage_pieces(ctx)))}",
        ".SH DESCRIPTION",
        *_help(root.help or ""),
        ".PP",
        "Every command takes \\fB\\-h\\fR or \\fB\\-\\-help\\fR.",
        ".SH OPTIONS",
        *_options(ctx),
        ".SH COMMANDS",
        *_commands(ctx),
        ".SH FILES",
        *_items(_FILES),
        ".SH ENVIRONMENT",
        *_items(_ENVIRONMENT),
        ".SH EXIT STATUS",
        *_items(_EXIT_STATUS),
        ".SH SEE ALSO",
        "nft(8), systemctl(1), virsh(1)",
    ]
    return "\n".join(lines) + "\n"


def _commands(ctx: typer.Context) -> list[str]:
    """A subsection per command, depth first: usage, help, then its options."""
    group = ctx.command
    if not isinstance(group, TyperGroup):
        return []
    lines: list[str] = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        sub = typer.Context(command, info_name=name, parent=ctx, **command.context_settings)
        usage = f"{sub.command_path} {' '.join(command.collect_usage_pieces(sub))}"
        lines += [f'.SS "{_text(usage)}"', *_help(command.help or "")]
        lines += _options(sub)
        lines += _commands(sub)
    return lines


def _options(ctx: typer.Context) -> list[str]:
    """Each documented parameter of the context's command, as `nftfwd CMD -h` shows it."""
    lines: list[str] = []
    for param in ctx.command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is not None:
            names, text = record
            lines += [".TP", f"\\fB{_text(names)}\\fR", _text(" ".join(text.split()))]
    return lines


def _items(items: tuple[tuple[str, str], ...]) -> list[str]:
    return [line for term, text in items for line in (".TP", f"\\fB{_text(term)}\\fR", _text(text))]


def _help(text: str) -> list[str]:
    lines: list[str] = []
    for i, paragraph in enumerate(_paragraphs(text)):
        lines += ([".PP"] if i else []) + [_text(paragraph)]
    return lines


def _paragraphs(text: str) -> list[str]:
    """The paragraphs of a docstring, each on one line (as click rewraps them too)."""
    blocks = re.split(r"\n\s*\n", inspect.cleandoc(text))
    return [" ".join(block.split()) for block in blocks if block.strip()] or [""]


def _text(text: str) -> str:
    """`text` safe as roff: backslashes escaped, dashes as minus signs, no leading dot."""
    escaped = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + escaped if escaped.startswith((".", "'")) else escaped
