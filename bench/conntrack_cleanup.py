"""How long `load` takes to close the tracked connections of a removed forward of the
whole port range, dual-stack, TCP and UDP (issue 12: under 10 s).

    sudo .venv/bin/python bench/conntrack_cleanup.py [--flows 4000] [--others 1000]

In the host namespace of the test harness's topology (tests/harness; made and removed
here): loads one guest with the forward "1-65535" (tcp and udp, IPv4 and IPv6; 262,140
map elements), tracks --flows connections through it (spread over the four
family/protocol pairs and the whole range) and --others to another guest, then loads the
model without the forward and reads the cleanup's own time from `load`'s line `closed N
tracked connections ... (S s)`. It checks that exactly the flows of the forward went and
the others stayed, and times the old way too (one `conntrack -D` per port, family and
protocol) on a sample of ports, for the extrapolated figure it replaced. Writes
bench/results/conntrack-latest.json.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from harness import Topology  # noqa: E402

NFTFWD = str(Path(sys.executable).parent / "nftfwd")
TARGET_S = 10.0
MODEL = """\
version: 1
hosts:
  bench:
    uplinks: [up0]
    bridges:
      br0:
        subnet: 10.0.0.0/24
        subnet6: fd00:c7::/64
        guests:
          all:
            address: 10.0.0.10
            address6: fd00:c7::10
{forwards}
          other:
            address: 10.0.0.11
            address6: fd00:c7::11
"""
FULL_RANGE = '            forwards:\n              - {port: "1-%d", proto: [tcp, udp]}'
PAIRS = [("ipv4", "tcp"), ("ipv4", "udp"), ("ipv6", "tcp"), ("ipv6", "udp")]
CLIENT = {"ipv4": "198.51.100.7", "ipv6": "2001:db8::7"}
HOST = {"ipv4": "203.0.113.1", "ipv6": "2001:db8::1"}
GUEST = {"ipv4": ("10.0.0.10", "10.0.0.11"), "ipv6": ("fd00:c7::10", "fd00:c7::11")}


def tracked_entry(family: str, proto: str, guest: str, port: int, client_port: int) -> str:
    """A `conntrack -R` line for a connection DNATed from HOST:port to guest:port."""
    state = "--state ESTABLISHED -u SEEN_REPLY " if proto == "tcp" else ""
    return (
        f"-I -p {proto} -s {CLIENT[family]} -d {HOST[family]} "
        f"--sport {client_port} --dport {port} -r {guest} -q {CLIENT[family]} "
        f"--reply-port-src {port} --reply-port-dst {client_port} -t 600 {state}\n"
    )


def run(ns: str, argv: list[str], state: Path, stdin: str | None = None) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run(
        ["ip", "netns", "exec", ns, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, "NFTFWD_STATE_DIR": str(state), "NO_COLOR": "1"},
        timeout=900,
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, done.stderr + done.stdout


def count(ns: str, state: Path, guest_index: int) -> int:
    """Tracked connections whose reply comes from guest `guest_index` (0: the forward's)."""
    total = 0
    for family, proto in PAIRS:
        _, listing = run(ns, ["conntrack", "-L", "-f", family, "-p", proto], state)
        guest = ipaddress.ip_address(GUEST[family][guest_index])
        for line in listing.splitlines():
            sources = [word[4:] for word in line.split() if word.startswith("src=")]
            total += len(sources) == 2 and ipaddress.ip_address(sources[1]) == guest
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", type=int, default=4000, help="tracked flows to remove")
    parser.add_argument("--others", type=int, default=1000, help="tracked flows that stay")
    parser.add_argument("--last-port", type=int, default=65535, help="smaller: a smoke test")
    parser.add_argument("--old-sample", type=int, default=200, help="ports timed the old way")
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("conntrack") is None:
        raise SystemExit("needs root and `conntrack` (apt-get install conntrack)")
    work = Path(tempfile.mkdtemp(prefix="nftfwd-bench-ct-"))
    state = work / "state"
    full, empty = work / "full.yaml", work / "empty.yaml"
    full.write_text(MODEL.format(forwards=FULL_RANGE % args.last_port))
    empty.write_text(MODEL.format(forwards=""))
    # The host as the kernel tests build it (tests/harness): the connections are
    # written into its conntrack table, so no packet needs to pass.
    topo = Topology(yaml.safe_load(empty.read_text()), "bench")
    try:
        topo.start()
        ns = topo.ns["host"]
        load_s, _ = run(ns, [NFTFWD, "load", str(full), "--atomic", "--yes"], state)
        elements = 4 * args.last_port
        print(f"loaded the 1-{args.last_port} forward ({elements:,} elements) in {load_s:.1f} s")
        step = max(1, args.last_port // max(1, args.flows // 4))
        batch = []
        for i, (family, proto) in enumerate(PAIRS):
            ports = range(1 + i, args.last_port + 1, step)[: args.flows // 4]
            batch += [
                tracked_entry(family, proto, GUEST[family][0], p, 20000 + n % 40000)
                for n, p in enumerate(ports)
            ]
            batch += [
                tracked_entry(family, proto, GUEST[family][1], 1 + n, 30000)
                for n in range(args.others // 4)
            ]
        run(ns, ["conntrack", "-R", "-"], state, "".join(batch))
        removed_before, kept_before = count(ns, state, 0), count(ns, state, 1)
        print(f"tracked {removed_before} flows through the forward, {kept_before} to another guest")
        total_s, said = run(ns, [NFTFWD, "load", str(empty), "--atomic", "--yes"], state)
        found = re.search(r"closed (\d+) tracked connections .*\((\d+\.\d) s\)", said)
        if found is None:
            lines = [line for line in said.splitlines() if not line.startswith((" ", "+", "-"))]
            raise SystemExit("load did not report its cleanup:\n" + "\n".join(lines[:40]))
        closed, cleanup_s = int(found.group(1)), float(found.group(2))
        removed_after, kept_after = count(ns, state, 0), count(ns, state, 1)
        old_s = old_way(ns, state, args.old_sample)
        result = {
            "forward": f"1-{args.last_port}, tcp+udp, IPv4+IPv6 ({elements:,} elements)",
            "tracked_removed": removed_before,
            "tracked_kept": kept_before,
            "closed": closed,
            "cleanup_s": cleanup_s,
            "target_s": TARGET_S,
            "pass": cleanup_s < TARGET_S and removed_after == 0 and kept_after == kept_before,
            "left_after": removed_after,
            "kept_after": kept_after,
            "removal_load_s": round(total_s, 1),
            "first_load_s": round(load_s, 1),
            "old_way_s_per_port": round(old_s, 4),
            "old_way_extrapolated_s": round(old_s * elements, 0),
        }
        print(json.dumps(result, indent=2))
        out = HERE / "results"
        out.mkdir(exist_ok=True)
        (out / "conntrack-latest.json").write_text(json.dumps(result, indent=2) + "\n")
        return 0 if result["pass"] else 1
    finally:
        topo.close()
        shutil.rmtree(work, ignore_errors=True)


def old_way(ns: str, state: Path, sample: int) -> float:
    """Seconds per port of the method this replaced: one `conntrack -D` process per
    port, family and protocol, run inside the namespace (here for ports nothing is
    tracked on, as most are)."""
    loop = (
        f"for port in $(seq 60000 {60000 + sample - 1}); do conntrack -D -f ipv4 -p tcp "
        '--orig-port-dst "$port" --reply-src 10.0.0.10 --reply-port-src "$port" '
        ">/dev/null 2>&1; done; true"
    )
    seconds, _ = run(ns, ["sh", "-c", loop], state)
    return seconds / sample


if __name__ == "__main__":
    sys.exit(main())
