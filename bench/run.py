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
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import models  # noqa: E402
from netns import BenchError, Namespaces, Timed, run, run_timed  # noqa: E402

FULL_SIZES = (10, 100, 1000, 10000)
QUICK_SIZES = (10, 100)
ISSUE_FLOOR = "import typer, jinja2, jsonschema, yaml"
TABLE = models.TABLE
HOST_UPLINK_ADDR = "203.0.113.1"
CLIENT_ADDR = "203.0.113.100"
MB = 1024.0


# ----------------------------------------------------------------------------- helpers


def med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summary(samples: list[Timed]) -> dict[str, Any]:
    """Median/min/max of the successful samples, and the first error if any failed."""
    good = [s for s in samples if s.ok]
    out: dict[str, Any] = {
        "n_ok": len(good),
        "n_failed": len(samples) - len(good),
        "median_s": med([s.seconds for s in good]),
        "min_s": min((s.seconds for s in good), default=None),
        "max_s": max((s.seconds for s in good), default=None),
        "samples_s": [round(s.seconds, 4) for s in samples],
        "maxrss_mb": round(max((s.maxrss_kb for s in samples), default=0) / MB, 1),
    }
    failed = [s for s in samples if not s.ok]
    if failed:
        f = failed[0]
        out["error"] = "timed out" if f.timed_out else f.first_error_line()
        out["error_seconds"] = round(f.seconds, 3)
        out["error_exit"] = f.returncode
        out["error_stderr_tail"] = f.stderr_tail()
    return out


def fmt_s(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sizes: tuple[int, ...] = tuple(args.sizes)
        self.python = str(REPO / ".venv" / "bin" / "python") if not args.python else args.python
        self.nftfwd = str(Path(self.python).with_name("nftfwd"))
        self.work = Path(tempfile.mkdtemp(prefix="nftfwd-bench-"))
        self.results_dir = BENCH / "results"
        self.results_dir.mkdir(exist_ok=True)
        # Bytecode as an installed package has it: cached. The caller's
        # PYTHONDONTWRITEBYTECODE (set in some shells and CI images) would make every
        # run recompile nftfwd's own modules, which the dependencies never pay.
        self.env = dict(os.environ)
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env["PYTHONPYCACHEPREFIX"] = str(self.results_dir / "pycache")
        self.env.pop("NFTFWD_CONFIG", None)
        self.env["NO_COLOR"] = "1"
        self.ns = Namespaces(f"nfbench{os.getpid()}")
        self.out: dict[str, Any] = {"sizes": list(self.sizes), "per_n": {}}
        self.files: dict[int, dict[str, Path]] = {}

    # ------------------------------------------------------------------ setup

    def reps(self, n: int) -> int:
        if n <= 100:
            return self.args.reps
        return 3 if n <= 1000 else 2

    def say(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def meta(self) -> dict[str, Any]:
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
                self.python,
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

    def write_models(self) -> None:
        for n in self.sizes:
            d = self.work / f"n{n}"
            d.mkdir()
            files = {
                "model": d / "model.yaml",
                "changed": d / "changed.yaml",
                "nft": d / "model.nft",  # written by the first timed build (self.build)
                "changed_nft": d / "changed.nft",
                "perrule": d / "perrule.nft",
            }
            files["model"].write_text(models.model_yaml(n))
            files["changed"].write_text(models.model_yaml(n, changed=True))
            files["perrule"].write_text(models.per_rule_ruleset(n))
            built = run(
                [self.nftfwd, "build", str(files["changed"])],
                env=self.env,
                timeout=self.args.command_timeout,
            )
            files["changed_nft"].write_text(built.stdout)
            self.files[n] = files

    def host_like(self, ns: str) -> None:
        """An empty ruleset on a host that has the model's interfaces and forwarding on,
        so `load` meets what it would on a real host (its after-load checks included)."""
        for argv in (
            [
                "ip",
                "-n",
                ns,
                "link",
                "add",
                models.UPLINK,
                "type",
                "veth",
                "peer",
                "name",
                "up0peer",
            ],
            ["ip", "-n", ns, "link", "add", models.BRIDGE, "type", "bridge"],
            ["ip", "-n", ns, "addr", "add", f"{HOST_UPLINK_ADDR}/24", "dev", models.UPLINK],
            [
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                f"{models.GATEWAY}/{models.SUBNET.prefixlen}",
                "dev",
                models.BRIDGE,
            ],
            ["ip", "-n", ns, "link", "set", models.UPLINK, "up"],
            ["ip", "-n", ns, "link", "set", "up0peer", "up"],
            ["ip", "-n", ns, "link", "set", models.BRIDGE, "up"],
        ):
            run(argv)
        run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], netns=ns)

    def nftfwd_env(self, state: Path) -> dict[str, str]:
        env = dict(self.env)
        env["NFTFWD_STATE_DIR"] = str(state)
        return env

    def timed(
        self,
        argv: list[str],
        netns: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Timed:
        return run_timed(
            argv, netns=netns, env=env or self.env, timeout=timeout or self.args.command_timeout
        )

    # ------------------------------------------------------------------ build

    def fixed_cost(self) -> None:
        """build@10 next to the bare import of its dependencies, interleaved."""
        n = self.sizes[0]
        model = str(self.files[n]["model"])
        # What build really imports: every module but nftfwd's own, in import order.
        trace = run_timed(
            [self.python, "-X", "importtime", self.nftfwd, "build", model], env=self.env, timeout=60
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
        real_script = self.work / "import_real.py"
        real_script.write_text(
            "import importlib\n"
            f"for name in {real!r}:\n"
            "    try:\n        importlib.import_module(name)\n"
            "    except Exception:\n        pass\n"
        )
        commands = {
            "python_startup": [self.python, "-c", "pass"],
            "import_floor": [self.python, "-c", ISSUE_FLOOR],
            "import_floor_real": [self.python, str(real_script)],
            "import_nftfwd_cli": [self.python, "-c", "import nftfwd.cli"],
            "build": [self.nftfwd, "build", model],
        }
        samples: dict[str, list[Timed]] = {k: [] for k in commands}
        for rep in range(self.args.reps + 1):  # the first round warms caches, not counted
            order = list(commands.items())
            if rep % 2:
                order.reverse()
            for key, argv in order:
                t = self.timed(argv, timeout=60)
                if rep:
                    samples[key].append(t)
        self.out["fixed_cost"] = {
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

    def build(self, n: int) -> None:
        argv = [self.nftfwd, "build", str(self.files[n]["model"])]
        first = run_timed(argv, env=self.env, timeout=self.args.command_timeout, keep_stdout=True)
        if not first.ok:
            raise BenchError(f"nftfwd build of {n} forwards failed: {first.first_error_line()}")
        self.files[n]["nft"].write_text(first.stdout)
        first.stdout = ""
        samples = [first] + [self.timed(argv) for _ in range(self.reps(n) - 1)]
        self.out["per_n"][str(n)]["build"] = summary(samples)
        self.out["per_n"][str(n)]["nft_script_bytes"] = self.files[n]["nft"].stat().st_size

    # ------------------------------------------------------------------ load / diff

    def load(self, n: int) -> None:
        f = self.files[n]
        ns = self.ns.add(f"load{n}")
        self.host_like(ns)
        state = self.work / f"state-{n}"
        env = self.nftfwd_env(state)
        nft_f = {"orig": str(f["nft"]), "changed": str(f["changed_nft"])}
        model = {"orig": str(f["model"]), "changed": str(f["changed"])}
        other = {"orig": "changed", "changed": "orig"}
        delete = ["nft", "delete", "table", "inet", TABLE]
        load_argv = [self.nftfwd, "load", model["orig"], "--atomic", "--yes"]
        floor: list[Timed] = []
        loads: list[Timed] = []
        for rep in range(self.reps(n)):
            pair = [("floor", ["nft", "-f", nft_f["orig"]]), ("load", load_argv)]
            if rep % 2:
                pair.reverse()
            for kind, argv in pair:
                if kind == "load" and loads and not loads[-1].ok:
                    continue  # an error is reported once, not timed again
                run(delete, netns=ns, check=False)
                t = self.timed(argv, netns=ns, env=env)
                (floor if kind == "floor" else loads).append(t)
        # A loaded host for the change and diff: nftfwd's own load if it worked.
        current = "orig"
        if not (loads and loads[-1].ok):
            run(["nft", "-f", nft_f["orig"]], netns=ns, timeout=self.args.command_timeout)
        change: list[Timed] = []
        change_floor: list[Timed] = []
        diff_same: list[Timed] = []
        diff_changed: list[Timed] = []
        listing: list[Timed] = []
        unexpected: list[str] = []
        for _ in range(max(1, self.reps(n) - 1)):
            if not change or change[-1].ok:
                target = other[current]
                t = self.timed(
                    [self.nftfwd, "load", model[target], "--atomic", "--yes"], netns=ns, env=env
                )
                change.append(t)
                if t.ok:
                    current = target
            target = other[current]
            t = self.timed(["nft", "-f", nft_f[target]], netns=ns)
            change_floor.append(t)
            if t.ok:
                current = target
            # What a load cannot do without: read the live table once (for the diff, the
            # conntrack cleanup and the way back) and once more after the transaction,
            # as nftfwd reads it (JSON, protocols as numbers).
            listing.append(
                self.timed(["nft", "-p", "-j", "list", "table", "inet", TABLE], netns=ns)
            )
            if not diff_same or diff_same[-1].returncode in (0, 1):
                t = self.timed([self.nftfwd, "diff", model[current]], netns=ns, env=env)
                diff_same.append(t)
                if t.returncode != 0:
                    unexpected.append(f"diff of the loaded model exited {t.returncode}")
            if not diff_changed or diff_changed[-1].returncode in (0, 1):
                t = self.timed([self.nftfwd, "diff", model[other[current]]], netns=ns, env=env)
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
        self.ns.remove(ns)
        per = self.out["per_n"][str(n)]
        per["nft_f_empty"] = summary(floor)
        per["load_empty"] = summary(loads)
        per["load_change"] = summary(change)
        per["nft_f_change"] = summary(change_floor)
        per["diff_loaded"] = summary(diff_same)
        per["nft_list_json"] = summary(listing)
        per["diff_one_change"] = summary(diff_changed)
        if unexpected:
            per["diff_loaded"]["unexpected"] = sorted(set(unexpected))

    # ------------------------------------------------------------------ seed

    def seed(self, n: int) -> None:
        ns = self.ns.add(f"seed{n}")
        bound = self.args.seed_bound
        started = time.perf_counter()
        done_at: list[float] = []  # elapsed seconds after each forward
        error = None
        argvs = models.seed_commands(n)
        for i in range(n):
            if done_at and done_at[-1] > bound:
                break
            for argv in argvs[2 * i : 2 * i + 2]:
                t = run_timed(argv, netns=ns, env=self.env, timeout=max(10.0, bound))
                if not t.ok:
                    error = t.first_error_line()
                    break
            if error:
                break
            done_at.append(time.perf_counter() - started)
        self.ns.remove(ns)
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
        self.out["per_n"][str(n)]["seed"] = result

    # ------------------------------------------------------------------ packet path

    def topology(self, n: int, kind: str) -> dict[str, str]:
        label = f"{kind}{n}"
        client, host, guest = (self.ns.add(f"{label}-{r}") for r in ("c", "h", "g"))
        target = models.last(n)
        steps = [
            [
                "ip",
                "-n",
                host,
                "link",
                "add",
                models.UPLINK,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                client,
            ],
            [
                "ip",
                "-n",
                host,
                "link",
                "add",
                models.BRIDGE,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                guest,
            ],
            ["ip", "-n", host, "addr", "add", f"{HOST_UPLINK_ADDR}/24", "dev", models.UPLINK],
            [
                "ip",
                "-n",
                host,
                "addr",
                "add",
                f"{models.GATEWAY}/{models.SUBNET.prefixlen}",
                "dev",
                models.BRIDGE,
            ],
            ["ip", "-n", client, "addr", "add", f"{CLIENT_ADDR}/24", "dev", "eth0"],
            [
                "ip",
                "-n",
                guest,
                "addr",
                "add",
                f"{target.address}/{models.SUBNET.prefixlen}",
                "dev",
                "eth0",
            ],
            ["ip", "-n", host, "link", "set", models.UPLINK, "up"],
            ["ip", "-n", host, "link", "set", models.BRIDGE, "up"],
            ["ip", "-n", client, "link", "set", "eth0", "up"],
            ["ip", "-n", guest, "link", "set", "eth0", "up"],
            ["ip", "-n", client, "route", "add", "default", "via", HOST_UPLINK_ADDR],
            ["ip", "-n", guest, "route", "add", "default", "via", str(models.GATEWAY)],
        ]
        for argv in steps:
            run(argv)
        run(
            [
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ],
            netns=host,
        )
        ruleset = self.files[n]["nft"] if kind == "map" else self.files[n]["perrule"]
        run(["nft", "-f", str(ruleset)], netns=host, timeout=self.args.command_timeout)
        self.ns.start(
            [self.python, str(BENCH / "rate.py"), "server", str(models.GUEST_PORT)],
            guest,
            env=self.env,
        )
        check = run(
            [
                self.python,
                str(BENCH / "rate.py"),
                "check",
                HOST_UPLINK_ADDR,
                str(target.port),
                str(models.FIRST_PORT - 1),
            ],
            netns=client,
            env=self.env,
            timeout=30,
            check=False,
        )
        if check.returncode != 0:
            raise BenchError(
                f"{label}: the last forward does not work as expected: "
                f"{check.stdout.strip()} {check.stderr.strip()}"
            )
        return {"client": client, "host": host, "guest": guest}

    def packet_path(self) -> None:
        seconds, warmup, rounds = self.args.rate_seconds, self.args.rate_warmup, self.args.rounds
        combos = [(n, kind) for n in self.sizes for kind in ("map", "rule")]
        topo = {}
        for n, kind in combos:
            self.say(f"  packet path: building {kind} topology for N={n}")
            topo[(n, kind)] = self.topology(n, kind)
        samples: dict[tuple[int, str], list[dict[str, Any]]] = {c: [] for c in combos}
        for r in range(rounds):
            order = combos if r % 2 == 0 else list(reversed(combos))
            for n, kind in order:
                t = topo[(n, kind)]
                run(["conntrack", "-F"], netns=t["host"], check=False)
                res = run(
                    [
                        self.python,
                        str(BENCH / "rate.py"),
                        "client",
                        HOST_UPLINK_ADDR,
                        str(models.last(n).port),
                        str(seconds),
                        str(warmup),
                    ],
                    netns=t["client"],
                    env=self.env,
                    timeout=seconds + warmup + 30,
                )
                samples[(n, kind)].append(json.loads(res.stdout))
                self.say(
                    f"  packet path round {r + 1}/{rounds}: N={n} {kind}: "
                    f"{samples[(n, kind)][-1]['rate']:.0f} conn/s"
                )
        out: dict[str, Any] = {"seconds_per_sample": seconds, "warmup_s": warmup, "rounds": rounds}
        for (n, kind), got in samples.items():
            rates = [g["rate"] for g in got]
            entry: dict[str, Any] = {
                "median_rate": med(rates),
                "rates": rates,
                "errors": sum(sum(g["errors"].values()) for g in got),
            }
            if kind == "rule":
                listing = run(
                    ["nft", "-j", "list", "counter", "ip", "perrule", "last"],
                    netns=topo[(n, kind)]["host"],
                    check=False,
                ).stdout
                try:
                    packets = next(
                        o["counter"]["packets"]
                        for o in json.loads(listing)["nftables"]
                        if "counter" in o
                    )
                    attempts = sum(g["attempts_total"] for g in got) + 1  # + the check
                    entry["nat_chain_passes_per_connection"] = round(packets / attempts, 3)
                except (ValueError, KeyError, StopIteration):
                    entry["nat_chain_passes_per_connection"] = None
            out[f"{kind}@{n}"] = entry
        self.out["packet_path"] = out

    # ------------------------------------------------------------------ all

    def run_all(self) -> None:
        t0 = time.perf_counter()
        self.out["meta"] = self.meta()
        self.say(f"models for N = {', '.join(map(str, self.sizes))} in {self.work}")
        self.write_models()
        for n in self.sizes:
            self.out["per_n"][str(n)] = {"model_bytes": self.files[n]["model"].stat().st_size}
        self.say("fixed cost: build vs the bare import of its dependencies")
        self.fixed_cost()
        for n in self.sizes:
            self.say(f"N={n}: build")
            self.build(n)
            self.say(f"N={n}: nft -f / nftfwd load / change / diff")
            self.load(n)
        if not self.args.no_seed:
            for n in self.sizes:
                self.say(f"N={n}: seed method (iptables, bound {self.args.seed_bound:.0f} s)")
                self.seed(n)
        if not self.args.no_packet:
            self.say("packet path")
            self.packet_path()
        self.out["total_seconds"] = round(time.perf_counter() - t0, 1)

    def close(self) -> None:
        self.ns.close()
        shutil.rmtree(self.work, ignore_errors=True)


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


# ----------------------------------------------------------------------------- report


def targets(out: dict[str, Any]) -> list[dict[str, Any]]:
    sizes = out["sizes"]
    lo, hi = str(sizes[0]), str(sizes[-1])
    per = out["per_n"]
    fc = out.get("fixed_cost", {})

    def m(n: str, key: str) -> float | None:
        return per.get(n, {}).get(key, {}).get("median_s")

    def err(n: str, key: str) -> str | None:
        return per.get(n, {}).get(key, {}).get("error")

    rows: list[dict[str, Any]] = []

    def add(
        name: str,
        value: float | None,
        op: str,
        limit: float,
        shown: str,
        why_missing: str | None = None,
        unknown: str = "MISS",
    ) -> None:
        if value is None:
            rows.append(
                {
                    "target": name,
                    "limit": f"{op} {limit:g}",
                    "value": None,
                    "status": unknown,
                    "measured": why_missing or "not measured",
                }
            )
            return
        ok = value <= limit if op == "<=" else value >= limit if op == ">=" else value < limit
        rows.append(
            {
                "target": name,
                "limit": f"{op} {limit:g}",
                "value": round(value, 3),
                "status": "PASS" if ok else "MISS",
                "measured": shown,
            }
        )

    d_load = (
        None
        if m(hi, "load_empty") is None or m(lo, "load_empty") is None
        else m(hi, "load_empty") - m(lo, "load_empty")
    )
    d_nft = (
        None
        if m(hi, "nft_f_empty") is None or m(lo, "nft_f_empty") is None
        else m(hi, "nft_f_empty") - m(lo, "nft_f_empty")
    )
    scale = ratio(d_load, d_nft)
    why = None
    if err(hi, "load_empty"):
        why = f"nftfwd load fails at N={hi}: {err(hi, 'load_empty')}"
    elif d_nft is not None and d_nft < 0.05:
        why = f"nft -f@{hi} - nft -f@{lo} = {d_nft:.3f} s: below the noise at this N"
        scale = None
    unknown = "n/a" if why and "noise" in why else "MISS"
    add(
        f"scale: (load@{hi} - load@{lo}) / (nft -f@{hi} - nft -f@{lo})",
        scale,
        "<=",
        3,
        f"{fmt_s(d_load)} s / {fmt_s(d_nft)} s = {scale:.2f}x" if scale else "",
        why,
        unknown,
    )
    floor = fc.get("import_floor", {}).get("median_s")
    b10 = fc.get("build", {}).get("median_s")
    r = ratio(b10, floor)
    add(
        f"fixed: build@{fc.get('n', lo)} / import floor",
        r,
        "<=",
        1.5,
        f"{fmt_s(b10)} s / {fmt_s(floor)} s = {r:.2f}x" if r else "",
    )
    l10 = m(lo, "load_empty")
    r = ratio(l10, floor)
    add(
        f"fixed: load@{lo} / import floor",
        r,
        "<=",
        2.5,
        f"{fmt_s(l10)} s / {fmt_s(floor)} s = {r:.2f}x" if r else "",
        f"nftfwd load fails at N={lo}: {err(lo, 'load_empty')}" if err(lo, "load_empty") else None,
    )
    seed = per.get(hi, {}).get("seed", {})
    seed_s = seed.get("lower_bound_s")
    load_hi = m(hi, "load_empty")
    r = ratio(seed_s, load_hi)
    shown = ""
    if r:
        bound = "" if seed.get("complete") else ">= "
        shown = f"{bound}{r:.1f}x (seed {seed.get('text')} vs load {fmt_s(load_hi)} s)"
    add(
        f"seed / nftfwd load at {hi}",
        r,
        ">=",
        100,
        shown,
        f"nftfwd load fails at N={hi}: {err(hi, 'load_empty')}"
        if err(hi, "load_empty")
        else ("seed not measured" if not seed else None),
    )
    pp = out.get("packet_path", {})
    a = pp.get(f"map@{hi}", {}).get("median_rate")
    b = pp.get(f"map@{lo}", {}).get("median_rate")
    r = ratio(a, b)
    add(
        f"packet: map rate last-of-{hi} / last-of-{lo}",
        r,
        ">=",
        0.9,
        f"{a:.0f} / {b:.0f} conn/s = {r:.2f}x" if r else "",
    )
    mem = per.get(hi, {}).get("build", {}).get("maxrss_mb")
    add(f"memory: build@{hi} peak RSS (MB)", mem, "<", 150, f"{mem} MB" if mem else "")
    return rows


def observations(out: dict[str, Any]) -> dict[str, Any]:
    """Side-by-side ratios per N, beyond the targets (also where a target cannot be judged)."""
    per, pp = out["per_n"], out.get("packet_path", {})
    lo = str(out["sizes"][0])
    obs: dict[str, Any] = {}
    for n in out["sizes"]:
        p, key = per[str(n)], str(n)

        def m(k: str, p: dict[str, Any] = p) -> float | None:
            return p.get(k, {}).get("median_s")

        seed = p.get("seed", {}).get("lower_bound_s")
        mr = pp.get(f"map@{n}", {}).get("median_rate")
        rr = pp.get(f"rule@{n}", {}).get("median_rate")
        m10 = pp.get(f"map@{lo}", {}).get("median_rate")
        proving = _proving_floor(p)
        proving_lo = _proving_floor(per[lo])
        entry = {
            "load_over_nft_f": ratio(m("load_empty"), m("nft_f_empty")),
            "list_over_nft_f": ratio(m("nft_list_json"), m("nft_f_empty")),
            "scale_vs_proving_floor": ratio(
                None
                if m("load_empty") is None or per[lo].get("load_empty", {}).get("median_s") is None
                else m("load_empty") - per[lo]["load_empty"]["median_s"],
                None if proving is None or proving_lo is None else proving - proving_lo,
            )
            if key != lo
            else None,
            "load_change_over_nft_f_change": ratio(m("load_change"), m("nft_f_change")),
            "seed_over_load": ratio(seed, m("load_empty")),
            "seed_over_nft_f": ratio(seed, m("nft_f_empty")),
            "map_rate_over_rule_rate": ratio(mr, rr),
            "map_rate_over_map_rate_at_smallest_n": ratio(mr, m10),
            "scale_vs_smallest_n": ratio(
                None
                if m("load_empty") is None or per[lo].get("load_empty", {}).get("median_s") is None
                else m("load_empty") - per[lo]["load_empty"]["median_s"],
                None
                if m("nft_f_empty") is None
                else m("nft_f_empty") - per[lo].get("nft_f_empty", {}).get("median_s", 0.0),
            )
            if key != lo
            else None,
        }
        obs[key] = {k: (round(v, 3) if v is not None else None) for k, v in entry.items()}
    return obs


def _proving_floor(p: dict[str, Any]) -> float | None:
    """The kernel work of a load into an empty host that reads its result back: `nft -f`
    plus one `nft -p -j list table` (on a loaded host the live table is listed too)."""
    load = p.get("nft_f_empty", {}).get("median_s")
    listing = p.get("nft_list_json", {}).get("median_s")
    return None if load is None or listing is None else load + listing


def table(out: dict[str, Any]) -> str:
    per, pp = out["per_n"], out.get("packet_path", {})
    cols = [
        "N",
        "build s",
        "build MB",
        "nft -f s",
        "load s",
        "nft -f chg s",
        "load chg s",
        "list s",
        "diff s",
        "seed s",
        "map c/s",
        "rule c/s",
        "map/rule",
    ]
    rows = [cols]
    for n in out["sizes"]:
        p = per[str(n)]

        def cell(key: str, p: dict[str, Any] = p) -> str:
            s = p.get(key, {})
            if s.get("median_s") is None and s.get("error"):
                return f"ERR({s.get('error_seconds', 0):.1f}s)"
            return fmt_s(s.get("median_s"))

        seed = p.get("seed", {})
        seed_text = (
            (
                f"{seed['seconds']:.2f}"
                if seed.get("complete")
                else f">{seed['lower_bound_s']:.0f} ({seed['forwards_done']}/{n})"
            )
            if seed
            else "-"
        )
        mr = pp.get(f"map@{n}", {}).get("median_rate")
        rr = pp.get(f"rule@{n}", {}).get("median_rate")
        rows.append(
            [
                str(n),
                cell("build"),
                f"{p.get('build', {}).get('maxrss_mb', 0):.0f}",
                cell("nft_f_empty"),
                cell("load_empty"),
                cell("nft_f_change"),
                cell("load_change"),
                cell("nft_list_json"),
                cell("diff_loaded"),
                seed_text,
                f"{mr:.0f}" if mr else "-",
                f"{rr:.0f}" if rr else "-",
                f"{mr / rr:.1f}x" if mr and rr else "-",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report(out: dict[str, Any]) -> str:
    fc = out.get("fixed_cost", {})
    lines = [
        f"nftfwd benchmark  ({out['meta']['date']}, kernel {out['meta']['kernel']}, "
        f"{out['meta']['cpus']} cpus, {out['meta']['nft']})",
        "",
        table(out),
        "",
    ]
    lines.append(
        "times are medians of the samples in the JSON; 'chg' = a one-forward change "
        "on a loaded host; ERR(t) = the command failed after t s (see below)"
    )
    if fc:
        lines += ["", f"fixed cost (N={fc['n']}, medians):"]
        for key, label in (
            ("python_startup", "python -c pass"),
            ("import_floor", f"python -c '{ISSUE_FLOOR}'"),
            ("import_floor_real", "import of every module build imports but nftfwd's"),
            ("import_nftfwd_cli", "python -c 'import nftfwd.cli'"),
            ("build", "nftfwd build"),
        ):
            lines.append(
                f"  {fmt_s(fc[key]['median_s']):>6} s  {fc[key]['maxrss_mb']:5.0f} MB  {label}"
            )
        lines.append(
            f"  build imports libnftables: {fc['build_imports_nftables']}; "
            f"pydantic: {fc['build_imports_pydantic']}"
        )
        shares = ", ".join(f"{k} {v}" for k, v in fc["importtime_self_ms_by_group"].items())
        lines.append(
            f"  -X importtime self ms by package (total {fc['importtime_total_ms']}): {shares}"
        )
    errors = []
    for n in out["sizes"]:
        for key, s in out["per_n"][str(n)].items():
            if isinstance(s, dict) and s.get("error"):
                errors.append(f"  N={n} {key}: {s['error']}")
    if errors:
        lines += ["", "errors:", *errors]
    pp = out.get("packet_path")
    if pp:
        checks = [
            f"N={k.split('@')[1]}: {v.get('nat_chain_passes_per_connection')}"
            for k, v in pp.items()
            if k.startswith("rule@")
        ]
        errs = sum(v.get("errors", 0) for v in pp.values() if isinstance(v, dict))
        lines += [
            "",
            f"packet path: {pp['rounds']} rounds x {pp['seconds_per_sample']} s per "
            f"ruleset and N, interleaved; failed connections: {errs}; rule-per-forward "
            f"nat chain passes per connection: {', '.join(checks)}",
        ]
    obs = out.get("observations", {})
    if obs:
        lines += ["", "ratios per N (same run):"]
        labels = (
            ("load_over_nft_f", "load / nft -f"),
            ("load_change_over_nft_f_change", "load chg / nft -f chg"),
            ("scale_vs_smallest_n", f"(load@N - load@{out['sizes'][0]}) / (nft -f ...)"),
            ("list_over_nft_f", "nft -p -j list table / nft -f"),
            ("scale_vs_proving_floor", "(load@N - load@lo) / (nft -f + list ...)"),
            ("seed_over_load", "seed / load"),
            ("seed_over_nft_f", "seed / nft -f"),
            ("map_rate_over_rule_rate", "rate map / rule"),
            ("map_rate_over_map_rate_at_smallest_n", f"rate map@N / map@{out['sizes'][0]}"),
        )
        width = max(len(label) for _, label in labels)
        lines.append(" " * (width + 2) + "".join(f"{n:>9}" for n in out["sizes"]))
        for key, label in labels:
            cells = []
            for n in out["sizes"]:
                v = obs[str(n)].get(key)
                cells.append(f"{v:>8.2f}x" if v is not None else f"{'-':>9}")
            lines.append(f"  {label:<{width}}" + "".join(cells))
        lines.append("  (seed ratios use the seed's lower bound where it was stopped)")
    lines += ["", "targets (issue 5):"]
    for row in out["targets"]:
        lines.append(f"  {row['status']:4}  {row['target']} {row['limit']}: {row['measured']}")
    lines += ["", f"total {out['total_seconds']:.0f} s"]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


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
    bench = Bench(args)
    if not Path(bench.nftfwd).exists():
        print(f"no nftfwd at {bench.nftfwd}; pass --python", file=sys.stderr)
        return 2
    try:
        bench.run_all()
    except KeyboardInterrupt:
        print("interrupted; namespaces removed", file=sys.stderr)
        return 130
    finally:
        bench.close()
    out = bench.out
    out["targets"] = targets(out)
    out["observations"] = observations(out)
    text = report(out)
    print(text)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    payload = json.dumps(out, indent=2) + "\n"
    for path in (bench.results_dir / f"run-{stamp}.json", bench.results_dir / "latest.json"):
        path.write_text(payload)
    if args.save_reference:
        (BENCH / "reference-results.json").write_text(payload)
    print(f"\nJSON: {bench.results_dir / f'run-{stamp}.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
