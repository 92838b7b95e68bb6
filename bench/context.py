"""What every measurement of bench/run.py shares: the options, the nftfwd command and its
environment, the model files of each N, and the namespaces (the test harness's topology,
tests/harness: the benchmark builds its namespaces no other way)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import models
from timed import Timed, run, run_timed

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "tests"))

from harness import Topology  # noqa: E402


@dataclass(frozen=True)
class ModelFiles:
    """The files of one N, in the run's work directory."""

    model: Path  # N forwards
    changed: Path  # the same with one forward edited
    nft: Path  # `nftfwd build` of model, written by the first timed build
    changed_nft: Path  # `nftfwd build` of changed
    perrule: Path  # the same forwards as one nft rule each


class Context:
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
        self.files: dict[int, ModelFiles] = {}

    def reps(self, n: int) -> int:
        """Samples per command: fewer for the large models, whose samples vary less."""
        if n <= 100:
            return int(self.args.reps)
        return 3 if n <= 1000 else 2

    def say(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

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

    def topology(self, guests: Sequence[models.Forward] = ()) -> Topology:
        """The benchmark's host as the kernel tests build it (use it in a `with` block):
        a client namespace behind `up0` (host 203.0.113.1), the bridge `br0` with the
        gateway 10.0.0.1/16, forwarding on, and a namespace for each of `guests` only.
        Without guests it is the host `load` meets: its interfaces, an empty ruleset."""
        return Topology(models.topology_model(guests), models.HOST)

    def write_models(self) -> None:
        for n in self.sizes:
            d = self.work / f"n{n}"
            d.mkdir()
            files = ModelFiles(
                model=d / "model.yaml",
                changed=d / "changed.yaml",
                nft=d / "model.nft",
                changed_nft=d / "changed.nft",
                perrule=d / "perrule.nft",
            )
            files.model.write_text(models.model_yaml(n))
            files.changed.write_text(models.model_yaml(n, changed=True))
            files.perrule.write_text(models.per_rule_ruleset(n))
            built = run(
                [self.nftfwd, "build", str(files.changed)],
                env=self.env,
                timeout=self.args.command_timeout,
            )
            files.changed_nft.write_text(built.stdout)
            self.files[n] = files

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
