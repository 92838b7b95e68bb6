"""`nftfwd build`: its fixed cost next to the bare import of its dependencies (what any
run pays), and its time and peak memory for N forwards."""

from __future__ import annotations

import sys
from typing import Any

from context import Context
from timed import BenchError, Timed, run_timed, summary

ISSUE_FLOOR = "import typer, jinja2, jsonschema, yaml"


def fixed_cost(ctx: Context) -> dict[str, Any]:
    """build@10 next to the bare import of its dependencies, interleaved."""
    n = ctx.sizes[0]
    model = str(ctx.files[n].model)
    # What build really imports: every module but nftfwd's own, in import order.
    trace = run_timed(
        [ctx.python, "-X", "importtime", ctx.nftfwd, "build", model], env=ctx.env, timeout=60
    )
    names: list[str] = []
    groups: dict[str, int] = {}
    for line in trace.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.split("|")
        try:
            self_us = int(parts[0].split(":")[1])
        except ValueError:
            continue
        name = parts[2].strip()
        names.append(name)
        groups[group_of(name)] = groups.get(group_of(name), 0) + self_us
    real = [m for m in names if not m.startswith(("nftfwd", "__editable__", "__main__"))]
    real_script = ctx.work / "import_real.py"
    real_script.write_text(
        "import importlib\n"
        f"for name in {real!r}:\n"
        "    try:\n        importlib.import_module(name)\n"
        "    except Exception:\n        pass\n"
    )
    commands = {
        "python_startup": [ctx.python, "-c", "pass"],
        "import_floor": [ctx.python, "-c", ISSUE_FLOOR],
        "import_floor_real": [ctx.python, str(real_script)],
        "import_nftfwd_cli": [ctx.python, "-c", "import nftfwd.cli"],
        "build": [ctx.nftfwd, "build", model],
    }
    samples: dict[str, list[Timed]] = {k: [] for k in commands}
    for rep in range(ctx.args.reps + 1):  # the first round warms caches, not counted
        order = list(commands.items())
        if rep % 2:
            order.reverse()
        for key, argv in order:
            t = ctx.timed(argv, timeout=60)
            if rep:
                samples[key].append(t)
    return {
        "n": n,
        **{k: summary(v) for k, v in samples.items()},
        "import_floor_command": f"python -c '{ISSUE_FLOOR}'",
        "import_floor_real_modules": len(real),
        "build_imports_nftables": any(m.split(".")[0] == "nftables" for m in names),
        "build_imports_pydantic": any(m.split(".")[0] == "pydantic" for m in names),
        "importtime_self_ms_by_group": {
            k: round(v / 1000, 1) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])
        },
        "importtime_total_ms": round(sum(groups.values()) / 1000, 1),
        "importtime_note": "python -X importtime of one build run; importtime itself "
        "slows imports, so read these as shares, not as wall time",
    }


def build(ctx: Context, n: int) -> dict[str, Any]:
    argv = [ctx.nftfwd, "build", str(ctx.files[n].model)]
    first = run_timed(argv, env=ctx.env, timeout=ctx.args.command_timeout, keep_stdout=True)
    if not first.ok:
        raise BenchError(f"nftfwd build of {n} forwards failed: {first.first_error_line()}")
    ctx.files[n].nft.write_text(first.stdout)
    first.stdout = ""
    samples = [first] + [ctx.timed(argv) for _ in range(ctx.reps(n) - 1)]
    return {"build": summary(samples), "nft_script_bytes": ctx.files[n].nft.stat().st_size}


# Where -X importtime's modules come from, for the share of each package.
STARTUP = {
    "encodings",
    "site",
    "codecs",
    "io",
    "abc",
    "os",
    "stat",
    "posixpath",
    "genericpath",
    "_collections_abc",
    "_sitebuiltins",
    "zipimport",
    "sitecustomize",
    "_distutils_hack",
    "_frozen_importlib_external",
    "_virtualenv",
    "_codecs",
    "_io",
    "marshal",
    "posix",
    "_abc",
    "_stat",
    "_signal",
    "time",
    "winreg",
    "__editable___nftfwd_0_1_0_finder",
}
_TYPER = "typer (+click, shellingham, annotated_doc)"
_PYDANTIC = "pydantic (via typer)"
_JSONSCHEMA = "jsonschema (+referencing, rpds, attrs)"
GROUPS = {
    "nftfwd": "nftfwd",
    **dict.fromkeys(("typer", "shellingham", "annotated_doc", "click"), _TYPER),
    **dict.fromkeys(
        ("pydantic", "pydantic_core", "annotated_types", "typing_inspection", "typing_extensions"),
        _PYDANTIC,
    ),
    **dict.fromkeys(
        ("jsonschema", "jsonschema_specifications", "referencing", "rpds", "attr", "attrs"),
        _JSONSCHEMA,
    ),
    "jinja2": "jinja2 (+markupsafe)",
    "markupsafe": "jinja2 (+markupsafe)",
    "yaml": "yaml",
    "_yaml": "yaml",
    "nftables": "nftables (libnftables)",
}


def group_of(module: str) -> str:
    top = module.split(".")[0]
    if top in GROUPS:
        return GROUPS[top]
    if top in STARTUP or module.startswith("encodings"):
        return "startup"
    if top in sys.stdlib_module_names:
        return "stdlib"
    return "other"
