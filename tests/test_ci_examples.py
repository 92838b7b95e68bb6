"""The CI review example: a stale rules file fails the gate, a fresh one passes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
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
