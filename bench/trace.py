#!/usr/bin/env python3
"""What `nftfwd trace` costs beyond the wait for the connection: its whole run with
`--probe` (the host connects to the forward itself, so the wait is the time a guest in
the next namespace takes to answer: well under a millisecond), measured end to end.

    sudo .venv/bin/python bench/trace.py [--sizes 10,10000] [--runs 5]

For each N it makes a host and a guest namespace (bench/models.py's model of N
forwards, loaded with `nftfwd load`), traces the last forward --probe `runs` times and
prints the median, the fastest and the slowest run, beside `nftfwd build` of the same
model (Python, nftfwd's imports and reading the model: what every command pays); then
once more with an admin's drop rule in the way (in output: the probe is the host's own
connection; a trace that stops also asks doctor which finding matches). Target: a
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
from netns import Namespaces, run, run_timed

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
HOST_UPLINK_ADDR = "203.0.113.1"
TARGET = 0.5  # seconds, a delivered trace of the 10-forward model
ADMIN_DROP = (
    "table inet filter {\n\tchain output {\n\t\ttype filter hook output priority filter; "
    "policy accept;\n\t\ttcp dport 80 drop\n\t}\n}\n"
)


def topology(ns: Namespaces, n: int, python: str) -> str:
    """A host with the model of n forwards loaded and the last forward's guest serving."""
    host, guest = ns.add(f"trace{n}-h"), ns.add(f"trace{n}-g")
    target = models.last(n)
    for argv in (
        ["ip", "-n", host, "link", "add", models.UPLINK, "type", "veth", "peer", "name",
         "outside"],
        ["ip", "-n", host, "link", "add", models.BRIDGE, "type", "veth", "peer", "name",
         "eth0", "netns", guest],
        ["ip", "-n", host, "addr", "add", f"{HOST_UPLINK_ADDR}/24", "dev", models.UPLINK],
        ["ip", "-n", host, "addr", "add", f"{models.GATEWAY}/{models.SUBNET.prefixlen}",
         "dev", models.BRIDGE],
        ["ip", "-n", guest, "addr", "add", f"{target.address}/{models.SUBNET.prefixlen}",
         "dev", "eth0"],
        ["ip", "-n", host, "link", "set", models.UPLINK, "up"],
        ["ip", "-n", host, "link", "set", "outside", "up"],
        ["ip", "-n", host, "link", "set", models.BRIDGE, "up"],
        ["ip", "-n", guest, "link", "set", "eth0", "up"],
        ["ip", "-n", guest, "route", "add", "default", "via", str(models.GATEWAY)],
    ):  # fmt: skip
        run(argv)
    run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], netns=host)
    ns.start([python, str(BENCH / "rate.py"), "server", str(models.GUEST_PORT)], guest)
    return host


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
    python = str(REPO / ".venv" / "bin" / "python")
    nftfwd = str(REPO / ".venv" / "bin" / "nftfwd")
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp, Namespaces(f"nftrace{os.getpid()}") as ns:
        # as bench/run.py: bytecode cached (an installed nftfwd has it), in bench/results
        env = {**os.environ, "NFTFWD_STATE_DIR": tmp, "NO_COLOR": "1",
               "PYTHONPYCACHEPREFIX": str(BENCH / "results" / "pycache")}  # fmt: skip
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        for n in (int(s) for s in args.sizes.split(",")):
            model = Path(tmp) / f"model{n}.yaml"
            model.write_text(models.model_yaml(n))
            host = topology(ns, n, python)
            run([nftfwd, "load", str(model), "--atomic", "--yes"], netns=host, env=env,
                timeout=300)  # fmt: skip
            port = models.last(n).port
            timed_traces(host, nftfwd, model, port, 1, env, 0)  # warms the caches: not counted
            floor = [run_timed([nftfwd, "build", str(model)], env=env).seconds
                     for _ in range(args.runs)]  # fmt: skip
            delivered = timed_traces(host, nftfwd, model, port, args.runs, env, 0)
            run(["nft", "-f", "-"], netns=host, input_text=ADMIN_DROP)
            stopped = timed_traces(host, nftfwd, model, port, args.runs, env, 1)
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
            ns.close()
    first = results.get("10")
    if isinstance(first, dict):
        verdict = "PASS" if first["delivered"]["median"] < TARGET else "MISS"
        print(f"target: a delivered trace at N=10 under {TARGET} s: {verdict}")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
