"""`nftfwd load` and `diff` on a host: into an empty ruleset and for a one-forward change,
each next to `nft -f` of nftfwd's own output (the kernel's floor), interleaved."""

from __future__ import annotations

from typing import Any

import models
from context import Context
from timed import Timed, run, summary


def load(ctx: Context, n: int) -> dict[str, Any]:
    f = ctx.files[n]
    state = ctx.work / f"state-{n}"
    env = ctx.nftfwd_env(state)
    nft_f = {"orig": str(f.nft), "changed": str(f.changed_nft)}
    model = {"orig": str(f.model), "changed": str(f.changed)}
    other = {"orig": "changed", "changed": "orig"}
    delete = ["nft", "delete", "table", "inet", models.TABLE]
    load_argv = [ctx.nftfwd, "load", model["orig"], "--atomic", "--yes"]
    floor: list[Timed] = []
    loads: list[Timed] = []
    change: list[Timed] = []
    change_floor: list[Timed] = []
    diff_same: list[Timed] = []
    diff_changed: list[Timed] = []
    listing: list[Timed] = []
    unexpected: list[str] = []
    with ctx.topology() as topo:
        ns = topo.ns["host"]
        for rep in range(ctx.reps(n)):
            pair = [("floor", ["nft", "-f", nft_f["orig"]]), ("load", load_argv)]
            if rep % 2:
                pair.reverse()
            for kind, argv in pair:
                if kind == "load" and loads and not loads[-1].ok:
                    continue  # an error is reported once, not timed again
                run(delete, netns=ns, check=False)
                t = ctx.timed(argv, netns=ns, env=env)
                (floor if kind == "floor" else loads).append(t)
        # A loaded host for the change and diff: nftfwd's own load if it worked.
        current = "orig"
        if not (loads and loads[-1].ok):
            run(["nft", "-f", nft_f["orig"]], netns=ns, timeout=ctx.args.command_timeout)
        for _ in range(max(1, ctx.reps(n) - 1)):
            if not change or change[-1].ok:
                target = other[current]
                t = ctx.timed(
                    [ctx.nftfwd, "load", model[target], "--atomic", "--yes"], netns=ns, env=env
                )
                change.append(t)
                if t.ok:
                    current = target
            target = other[current]
            t = ctx.timed(["nft", "-f", nft_f[target]], netns=ns)
            change_floor.append(t)
            if t.ok:
                current = target
            # What a load cannot do without: read the live table once (for the diff, the
            # conntrack cleanup and the way back) and once more after the transaction,
            # as nftfwd reads it (JSON, protocols as numbers).
            listing.append(
                ctx.timed(["nft", "-p", "-j", "list", "table", "inet", models.TABLE], netns=ns)
            )
            if not diff_same or diff_same[-1].returncode in (0, 1):
                t = ctx.timed([ctx.nftfwd, "diff", model[current]], netns=ns, env=env)
                diff_same.append(t)
                if t.returncode != 0:
                    unexpected.append(f"diff of the loaded model exited {t.returncode}")
            if not diff_changed or diff_changed[-1].returncode in (0, 1):
                t = ctx.timed([ctx.nftfwd, "diff", model[other[current]]], netns=ns, env=env)
                # exit 1 (changes) is the expected answer here
                t_ok = Timed(
                    t.argv,
                    t.seconds,
                    t.maxrss_kb,
                    0 if t.returncode == 1 else (t.returncode or 99),
                    t.stdout,
                    t.stderr,
                    t.timed_out,
                )
                diff_changed.append(t_ok)
    per = {
        "nft_f_empty": summary(floor),
        "load_empty": summary(loads),
        "load_change": summary(change),
        "nft_f_change": summary(change_floor),
        "diff_loaded": summary(diff_same),
        "nft_list_json": summary(listing),
        "diff_one_change": summary(diff_changed),
    }
    if unexpected:
        per["diff_loaded"]["unexpected"] = sorted(set(unexpected))
    return per
