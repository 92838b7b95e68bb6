"""The CI review example: a stale rules file fails the gate, a fresh one passes, and the
workflow installs nftfwd from its repository."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from conftest import REPO

GATE = REPO / "examples" / "ci" / "check-rules.sh"
MODEL = REPO / "examples" / "homelab.yaml"


def _gate(rules: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", str(GATE), str(MODEL), str(rules)], capture_output=True, text=True, env=env
    )


def test_fresh_rules_pass(tmp_path: Path) -> None:
    rules = tmp_path / "rules.nft"
    rules.write_text((REPO / "golden" / "homelab.homelab.nft").read_text())
    result = _gate(rules)
    assert result.returncode == 0, result.stderr
    assert "ok:" in result.stdout


def test_stale_rules_fail_with_the_diff(tmp_path: Path) -> None:
    rules = tmp_path / "rules.nft"
    stale = (REPO / "golden" / "homelab.homelab.nft").read_text().replace("8080", "8081")
    rules.write_text(stale)
    result = _gate(rules)
    assert result.returncode == 1
    assert "-\t\t\ttcp . 8081 : 192.168.122.10," in result.stdout
    assert "is stale" in result.stderr


def _workflow_steps() -> list[dict[str, Any]]:
    workflow = yaml.safe_load((REPO / "examples" / "ci" / "github-workflow.yml").read_text())
    steps: list[dict[str, Any]] = workflow["jobs"]["nftfwd"]["steps"]
    return steps


def test_workflow_installs_nftfwd_from_its_repository_not_an_index() -> None:
    """nftfwd is on no package index: `pipx install nftfwd` would fail, or install
    whatever someone else published under the name."""
    steps = _workflow_steps()
    checkout = next(s for s in steps if s.get("with", {}).get("repository"))
    assert checkout["uses"].startswith("actions/checkout@")
    source = checkout["with"]["path"]
    runs = [s["run"] for s in steps if "run" in s]
    installs = [r for r in runs if re.search(r"\bpipx? install\b", r)]
    assert installs == [f"python -m pip install ./{source}"]
    assert not any(re.search(r"\bpipx? install +(nftfwd|git\+)", r) for r in runs)
    assert f"{source}/examples/ci/check-rules.sh nftfwd.yaml rules.nft kvm1" in runs


def test_workflow_gate_step_runs_as_written(tmp_path: Path) -> None:
    """The gate step, run in a model repository with nftfwd checked out where the
    workflow puts it: passes on fresh rules, fails on stale ones."""
    steps = _workflow_steps()
    source = next(s for s in steps if s.get("with", {}).get("repository"))["with"]["path"]
    gate = next(s["run"] for s in steps if "check-rules.sh" in s.get("run", ""))
    (tmp_path / source).symlink_to(REPO)
    model = yaml.safe_load(MODEL.read_text())
    model["hosts"] = {"kvm1": model["hosts"]["homelab"]}
    (tmp_path / "nftfwd.yaml").write_text(yaml.safe_dump(model))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    def run_gate() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", gate], cwd=tmp_path, capture_output=True, text=True, env=env
        )

    fresh = subprocess.run(
        ["nftfwd", "build", "nftfwd.yaml", "--host", "kvm1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    (tmp_path / "rules.nft").write_text(fresh)
    assert run_gate().returncode == 0
    (tmp_path / "rules.nft").write_text(fresh.replace("8080", "8081"))
    assert run_gate().returncode == 1
