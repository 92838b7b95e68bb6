#!/usr/bin/env python3
"""What `nftfwd trace` costs beyond the wait for the connection: its whole run with
`--probe` (the host connects to the forward itself, so the wait is the time a guest in
the next namespace takes to answer: well under a millisecond), measured end to end.

    sudo .venv/bin/python bench/trace.py [--sizes 10,10000] [--runs 5]

For each N it builds the test harness's topology of bench/models.py's host with the
last forward's guest (as bench/run.py), loads the model of N forwards with `nftfwd load`,
traces the last forward --probe `runs` times and prints the median, the fastest and the
slowest run, beside `nftfwd build` of the same model (Python, nftfwd's imports and
reading the model: what every command pays); then once more with an admin's drop rule
in the way (a trace that stops also asks doctor which finding matches). Target: a
delivered trace under 0.5 s at 10 forwards. Every namespace is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import models
from context import BENCH, REPO
from harness import Topology  # importable once context has put tests/ on sys.path
from timed import run, run_timed

TARGET = 0.5  # seconds, a delivered trace of the 10-forward model
# In output: the probe is the host's own connection, which never passes forward.
ADMIN_DROP = (
    "table inet filter {\n\tchain output {\n\t\ttype filter hook output priority filter; "
    "policy accept;\n\t\ttcp dport 80 drop\n\t}\n}\n"
)


def timed_traces(host: str, nftfwd: str, model: Path, port: int, runs: int,
                 env: dict[str, str], expect: int) -> list[float]:  # fmt: skip
    argv = [nftfwd, "trace", str(model), str(port), "--probe", "--timeout", "10"]
    seconds = []
    for _ in range(runs):
        done = run_timed(argv, netns=host, env=env, timeout=60, keep_stdout=True)
        if done.returncode != expect:
            sys.exit(f"trace exited {done.returncode}, not {expect}:\n{done.stdout}{done.stderr}")
        seconds.append(done.seconds)
    return seconds


def summary(seconds: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(seconds), 3),
        "min": round(min(seconds), 3),
        "max": round(max(seconds), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,10000", help="forwards per model, comma-separated")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark makes network namespaces")
    nftfwd = str(REPO / ".venv" / "bin" / "nftfwd")
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # as bench/run.py: bytecode cached (an installed nftfwd has it), in bench/results
        env = {**os.environ, "NFTFWD_STATE_DIR": tmp, "NO_COLOR": "1",
               "PYTHONPYCACHEPREFIX": str(BENCH / "results" / "pycache")}  # fmt: skip
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        for n in (int(s) for s in args.sizes.split(",")):
            model = Path(tmp) / f"model{n}.yaml"
            model.write_text(models.model_yaml(n))
            target = models.last(n)
            # the test harness's topology (as bench/run.py): the host, the last guest
            with Topology(models.topology_model([target]), models.HOST) as topo:
                host = topo.ns["host"]
                topo.start_script(f"guest:{target.guest}", BENCH / "rate.py",
                                  ["server", str(models.GUEST_PORT)])  # fmt: skip
                run([nftfwd, "load", str(model), "--atomic", "--yes"], netns=host, env=env,
                    timeout=300)  # fmt: skip
                timed_traces(host, nftfwd, model, target.port, 1, env, 0)  # warm-up
                floor = [run_timed([nftfwd, "build", str(model)], env=env).seconds
                         for _ in range(args.runs)]  # fmt: skip
                delivered = timed_traces(host, nftfwd, model, target.port, args.runs, env, 0)
                run(["nft", "-f", "-"], netns=host, input_text=ADMIN_DROP)
                stopped = timed_traces(host, nftfwd, model, target.port, args.runs, env, 1)
            results[str(n)] = {
                "delivered": summary(delivered),
                "stopped": summary(stopped),
                "build": summary(floor),
            }
            print(
                f"N={n}: delivered {summary(delivered)['median']:.3f} s, stopped (with "
                f"doctor's findings) {summary(stopped)['median']:.3f} s; `nftfwd build` of the "
                f"same model {summary(floor)['median']:.3f} s (median of {args.runs})",
                flush=True,
            )
    first = results.get("10")
    if isinstance(first, dict):
        verdict = "PASS" if first["delivered"]["median"] < TARGET else "MISS"
        print(f"target: a delivered trace at N=10 under {TARGET} s: {verdict}")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
