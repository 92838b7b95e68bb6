"""One model file per rule of model.md, each refused with its own message and location.

Each file in tests/data/bad/ starts with `# expect: LINE PATH: MESSAGE`, the line
and key path the error must name and the start of what it must say.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_runner import run_cli

BAD = Path(__file__).parent / "data" / "bad"
FILES = sorted(BAD.glob("*.yaml"))


def _expectation(path: Path) -> tuple[int, str]:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} lacks its # expect: line"
    line, _, rest = first.removeprefix("# expect: ").partition(" ")
    return int(line), rest


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_bad_model_is_refused_with_its_message(path: Path) -> None:
    line, expected = _expectation(path)
    result = run_cli("build", str(path))
    assert result.code == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    first = result.stderr.splitlines()[0]
    where = f"error: {path}:{line}:"
    assert first.startswith(where), first
    assert expected.lstrip(": ") in first, first


def test_every_rule_has_a_file() -> None:
    assert len(FILES) >= 30


def test_an_empty_file_is_named_with_line_1(tmp_path: Path) -> None:
    """Zero bytes: no comment line to carry an expectation, so not in tests/data/bad."""
    path = tmp_path / "nftfwd.yaml"
    path.write_text("")
    result = run_cli("build", str(path))
    assert result.code == 2
    assert result.stderr.startswith(f"error: {path}:1:1: must be hosts, bridges and guests ")
