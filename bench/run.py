#!/usr/bin/env python3
"""nftfwd benchmark: one command, run as root from the repository.

    .venv/bin/python bench/run.py            # N = 10, 100, 1000, 10000 (a few minutes)
    .venv/bin/python bench/run.py --quick    # N = 10, 100 (smoke test, well under a minute)

Measures, for models with N forwards (bench/models.py), inside network namespaces it
makes and removes:

- `nftfwd build`: wall time, peak RSS, and the part spent importing, next to the bare
  import of its dependencies (the fixed-cost floor);
- `nftfwd load --atomic --yes` into an empty namespace and for a one-forward change,
  next to `nft -f` of nftfwd's own output (the floor), and the seed method
  (sequential iptables commands, stopped past a time bound and reported as a bound);
- `nftfwd diff` on a loaded namespace;
- the packet path: new TCP connections per second to the last of N forwards through
  nftfwd's ruleset and through one nft rule per forward.

Prints a table and the issue's targets (PASS/MISS with the measured figure), and
writes everything as JSON to bench/results/ (git-ignored). Ratios compare figures of
the same run; absolute times on a shared 2-core machine are noise.

One module per concern: compile_speed (build), load_speed (load, diff), seed_method,
packet_rate (with rate.py in the namespaces), targets and report; context holds what
they share, the namespaces are the test harness's (tests/harness) and timed commands
are timed.py's.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import compile_speed
import load_speed
import packet_rate
import seed_method
from context import BENCH, REPO, Context
from report import report
from targets import observations, targets
from timed import run

FULL_SIZES = (10, 100, 1000, 10000)
QUICK_SIZES = (10, 100)


def meta(ctx: Context) -> dict[str, Any]:
    def cmd(argv: list[str]) -> str:
        try:
            return (
                subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
                .stdout.strip()
                .splitlines()[0]
            )
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    versions = run(
        [
            ctx.python,
            "-c",
            "import importlib.metadata as m, json\n"
            "def version(p):\n"
            "    try:\n"
            "        return m.version(p)\n"
            "    except m.PackageNotFoundError:\n"
            "        return None  # pydantic: only typer >= 0.29 needs it\n"
            "print(json.dumps({p: version(p) "
            "for p in ['typer', 'pydantic', 'jinja2', 'jsonschema', 'PyYAML']}))",
        ],
        timeout=30,
    ).stdout
    dirty = cmd(
        [
            "git",
            "-C",
            str(REPO),
            "status",
            "--porcelain",
            "--",
            "compiler",
            "templates",
            "schemas",
        ]
    )
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "nft": cmd(["nft", "--version"]),
        "iptables": cmd(["iptables", "--version"]),
        "python": platform.python_version(),
        "packages": json.loads(versions),
        "nftfwd_commit": cmd(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "nftfwd_sources_modified": dirty not in ("", "?"),
        "bytecode": "cached (PYTHONPYCACHEPREFIX=bench/results/pycache)",
        "caller_had_PYTHONDONTWRITEBYTECODE": "PYTHONDONTWRITEBYTECODE" in os.environ,
    }


def run_all(ctx: Context) -> dict[str, Any]:
    t0 = time.perf_counter()
    out: dict[str, Any] = {"sizes": list(ctx.sizes), "per_n": {}, "meta": meta(ctx)}
    ctx.say(f"models for N = {', '.join(map(str, ctx.sizes))} in {ctx.work}")
    ctx.write_models()
    for n in ctx.sizes:
        out["per_n"][str(n)] = {"model_bytes": ctx.files[n].model.stat().st_size}
    ctx.say("fixed cost: build vs the bare import of its dependencies")
    out["fixed_cost"] = compile_speed.fixed_cost(ctx)
    for n in ctx.sizes:
        ctx.say(f"N={n}: build")
        out["per_n"][str(n)].update(compile_speed.build(ctx, n))
        ctx.say(f"N={n}: nft -f / nftfwd load / change / diff")
        out["per_n"][str(n)].update(load_speed.load(ctx, n))
    if not ctx.args.no_seed:
        for n in ctx.sizes:
            ctx.say(f"N={n}: seed method (iptables, bound {ctx.args.seed_bound:.0f} s)")
            out["per_n"][str(n)]["seed"] = seed_method.seed(ctx, n)
    if not ctx.args.no_packet:
        ctx.say("packet path")
        out["packet_path"] = packet_rate.rates(ctx)
    out["total_seconds"] = round(time.perf_counter() - t0, 1)
    return out


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="N = 10, 100 only (smoke test)")
    p.add_argument(
        "--sizes", type=int, nargs="+", help="forward counts (default 10 100 1000 10000)"
    )
    p.add_argument(
        "--reps", type=int, default=5, help="samples per command for N <= 100 (3 at 1000, 2 above)"
    )
    p.add_argument(
        "--seed-bound",
        type=float,
        default=60.0,
        help="stop the seed method past this many seconds (default 60)",
    )
    p.add_argument(
        "--rate-seconds",
        type=float,
        default=2.0,
        help="measured seconds per connection-rate sample (default 2)",
    )
    p.add_argument("--rate-warmup", type=float, default=0.3)
    p.add_argument("--rounds", type=int, default=3, help="connection-rate rounds (default 3)")
    p.add_argument("--command-timeout", type=float, default=300.0)
    p.add_argument("--no-seed", action="store_true")
    p.add_argument("--no-packet", action="store_true")
    p.add_argument("--python", help="the venv's python (default .venv/bin/python)")
    p.add_argument(
        "--save-reference", action="store_true", help="also write bench/reference-results.json"
    )
    args = p.parse_args(argv)
    if args.sizes is None:
        args.sizes = list(QUICK_SIZES if args.quick else FULL_SIZES)
        if args.quick:
            args.reps = min(args.reps, 3)
            args.rounds = min(args.rounds, 2)
            args.rate_seconds = min(args.rate_seconds, 1.0)
    args.sizes = sorted(set(args.sizes))
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    if os.geteuid() != 0:
        print("run as root: the benchmark makes network namespaces", file=sys.stderr)
        return 2
    for tool in ("ip", "nft", "iptables", "conntrack", "unshare"):
        if shutil.which(tool) is None:
            print(f"missing tool: {tool}", file=sys.stderr)
            return 2

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    ctx = Context(args)
    if not Path(ctx.nftfwd).exists():
        print(f"no nftfwd at {ctx.nftfwd}; pass --python", file=sys.stderr)
        return 2
    try:
        out = run_all(ctx)
    except KeyboardInterrupt:
        print("interrupted; namespaces removed", file=sys.stderr)
        return 130
    finally:
        ctx.close()
    out["targets"] = targets(out)
    out["observations"] = observations(out)
    text = report(out)
    print(text)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    payload = json.dumps(out, indent=2) + "\n"
    for path in (ctx.results_dir / f"run-{stamp}.json", ctx.results_dir / "latest.json"):
        path.write_text(payload)
    if args.save_reference:
        (BENCH / "reference-results.json").write_text(payload)
    print(f"\nJSON: {ctx.results_dir / f'run-{stamp}.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
