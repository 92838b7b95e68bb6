"""The packet path: new TCP connections per second to the last of N forwards, through
nftfwd's ruleset (maps) and through one nft rule per forward, measured in interleaved
rounds by bench/rate.py in the harness's client and guest namespaces."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import models
from context import BENCH, Context
from harness import Topology  # importable once context has put tests/ on sys.path
from timed import BenchError, med, run

RATE = BENCH / "rate.py"


def prepare(ctx: Context, n: int, kind: str, topo: Topology) -> None:
    """Load the ruleset of `kind` (map: nftfwd's; rule: one rule per forward) into the
    host, start the rate server in the last forward's guest and check that the forward
    answers while a port nothing forwards does not."""
    ruleset = ctx.files[n].nft if kind == "map" else ctx.files[n].perrule
    run(["nft", "-f", str(ruleset)], netns=topo.ns["host"], timeout=ctx.args.command_timeout)
    target = models.last(n)
    topo.start_script(f"guest:{target.guest}", RATE, ["server", str(models.GUEST_PORT)])
    check = run(
        [
            ctx.python,
            str(RATE),
            "check",
            topo.host_address(4),
            str(target.port),
            str(models.FIRST_PORT - 1),
        ],
        netns=topo.ns["client0"],
        env=ctx.env,
        timeout=30,
        check=False,
    )
    if check.returncode != 0:
        raise BenchError(
            f"{kind}{n}: the last forward does not work as expected: "
            f"{check.stdout.strip()} {check.stderr.strip()}"
        )


def rates(ctx: Context) -> dict[str, Any]:
    seconds, warmup, rounds = ctx.args.rate_seconds, ctx.args.rate_warmup, ctx.args.rounds
    combos = [(n, kind) for n in ctx.sizes for kind in ("map", "rule")]
    samples: dict[tuple[int, str], list[dict[str, Any]]] = {c: [] for c in combos}
    with contextlib.ExitStack() as stack:
        topo: dict[tuple[int, str], Topology] = {}
        for n, kind in combos:
            ctx.say(f"  packet path: building {kind} topology for N={n}")
            topo[(n, kind)] = stack.enter_context(ctx.topology([models.last(n)]))
            prepare(ctx, n, kind, topo[(n, kind)])
        for r in range(rounds):
            order = combos if r % 2 == 0 else list(reversed(combos))
            for n, kind in order:
                t = topo[(n, kind)]
                run(["conntrack", "-F"], netns=t.ns["host"], check=False)
                res = run(
                    [
                        ctx.python,
                        str(RATE),
                        "client",
                        t.host_address(4),
                        str(models.last(n).port),
                        str(seconds),
                        str(warmup),
                    ],
                    netns=t.ns["client0"],
                    env=ctx.env,
                    timeout=seconds + warmup + 30,
                )
                samples[(n, kind)].append(json.loads(res.stdout))
                ctx.say(
                    f"  packet path round {r + 1}/{rounds}: N={n} {kind}: "
                    f"{samples[(n, kind)][-1]['rate']:.0f} conn/s"
                )
        out: dict[str, Any] = {"seconds_per_sample": seconds, "warmup_s": warmup, "rounds": rounds}
        for (n, kind), got in samples.items():
            entry: dict[str, Any] = {
                "median_rate": med([g["rate"] for g in got]),
                "rates": [g["rate"] for g in got],
                "errors": sum(sum(g["errors"].values()) for g in got),
            }
            if kind == "rule":
                attempts = sum(g["attempts_total"] for g in got) + 1  # + the check
                entry["nat_chain_passes_per_connection"] = _passes(topo[(n, kind)], attempts)
            out[f"{kind}@{n}"] = entry
    return out


def _passes(topo: Topology, attempts: int) -> float | None:
    """Packets the last per-forward rule counted, per connection attempted: 1.0 when
    every connection went through the nat chain (none rode an old conntrack entry)."""
    listing = run(
        ["nft", "-j", "list", "counter", "ip", "perrule", "last"],
        netns=topo.ns["host"],
        check=False,
    ).stdout
    try:
        packets = next(
            o["counter"]["packets"] for o in json.loads(listing)["nftables"] if "counter" in o
        )
    except (ValueError, KeyError, StopIteration):
        return None
    return round(float(packets) / attempts, 3)
