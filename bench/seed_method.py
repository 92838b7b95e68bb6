"""The seed method, nftfwd's baseline: two iptables commands per forward, one after the
other, stopped past a time bound and then reported as a lower bound."""

from __future__ import annotations

import time
from typing import Any

import models
from context import Context
from timed import run_timed


def seed(ctx: Context, n: int) -> dict[str, Any]:
    bound = ctx.args.seed_bound
    done_at: list[float] = []  # elapsed seconds after each forward
    error = None
    argvs = models.seed_commands(n)
    with ctx.topology() as topo:
        ns = topo.ns["host"]
        started = time.perf_counter()
        for i in range(n):
            if done_at and done_at[-1] > bound:
                break
            for argv in argvs[2 * i : 2 * i + 2]:
                t = run_timed(argv, netns=ns, env=ctx.env, timeout=max(10.0, bound))
                if not t.ok:
                    error = t.first_error_line()
                    break
            if error:
                break
            done_at.append(time.perf_counter() - started)
    k = len(done_at)
    elapsed = done_at[-1] if done_at else 0.0
    window = max(10, k // 20)
    result: dict[str, Any] = {
        "forwards_done": k,
        "forwards": n,
        "complete": k == n,
        "seconds": round(elapsed, 3),
        "bound_s": bound,
        "checkpoints_s": {
            str(j): round(done_at[j - 1], 3)
            for j in sorted({max(1, k * q // 10) for q in range(1, 11)})
            if k
        },
    }
    if error:
        result["error"] = error
    if k and k < n:
        recent = done_at[-window:]
        per_forward = (recent[-1] - (done_at[-window - 1] if k > window else 0.0)) / len(recent)
        result["last_window_s_per_forward"] = round(per_forward, 6)
        # Each command rewrites the whole table, so it never gets faster as the
        # table grows: the forwards left take at least the latest pace each.
        result["lower_bound_s"] = round(elapsed + (n - k) * per_forward, 2)
        result["text"] = (
            f"> {result['lower_bound_s']:.0f} s (stopped after {k} of {n}; "
            f"{elapsed:.0f} s measured)"
        )
    else:
        result["lower_bound_s"] = round(elapsed, 3)
        result["text"] = f"{elapsed:.2f} s"
    return result
