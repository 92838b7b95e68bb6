"""Shared test setup: golden updates, and kernel tests that may never be skipped in CI."""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Test files live one folder per stage below tests/; their inputs all live here.
TEST_DATA = REPO / "tests" / "data"
EXAMPLES = REPO / "examples"
# The scenario models (copies of real setups) live in the repository: tests read nothing
# outside it.
SCENARIOS = EXAMPLES / "scenarios"
IN_CI = os.environ.get("CI", "").lower() == "true"

# tests/real/ runs nftfwd beside real libvirtd, systemd and dockerd: minutes of setup, run as
# a CI stage of its own (.ci/real-programs), never as part of the ordinary suite.
REAL_PROGRAMS = os.environ.get("NFTFWD_REAL_PROGRAMS") == "1"
collect_ignore = [] if REAL_PROGRAMS else ["real"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite golden/ from the current compiler output (review with git diff)",
    )
    parser.addoption(
        "--update-readme",
        action="store_true",
        help="rewrite README's transcripts from the real output (tests/packaging/test_readme.py)",
    )


@cache
def kernel_unavailable() -> str | None:
    """Why kernel tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "kernel tests need root"
    for tool in ("ip", "nft", "unshare", "socat"):
        if shutil.which(tool) is None:
            return f"kernel tests need `{tool}`"
    probe = subprocess.run(
        ["unshare", "--net", "nft", "list", "ruleset"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return f"cannot make a network namespace with nftables: {probe.stderr.strip()}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = kernel_unavailable()
    if reason is None or IN_CI:
        return
    for item in items:
        if "kernel" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_runtest_setup(item: pytest.Item) -> None:
    # In CI a skipped kernel test would let a run pass that proved nothing: fail it.
    if IN_CI and "kernel" in item.keywords and (reason := kernel_unavailable()):
        pytest.fail(f"CI=true but {reason}", pytrace=False)


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


def model_files() -> list[Path]:
    """Every bundled example and scenario: the models golden files cover."""
    return sorted(EXAMPLES.glob("*.yaml")) + sorted(SCENARIOS.glob("*.yaml"))
