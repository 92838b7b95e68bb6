"""One model file per rule of model.md, each refused with its own message and location.

Each file in tests/data/bad/ starts with `# expect: LINE PATH: MESSAGE`, the line
and key path the error must name and the start of what it must say. A file with more
problems has one such line per problem, in the order they are reported: all of them
must be reported at once, the first on the report's first line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_runner import run_cli
from conftest import TEST_DATA

BAD = TEST_DATA / "bad"
FILES = sorted(BAD.glob("*.yaml"))


def _expectations(path: Path) -> list[tuple[int, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines and lines[0].startswith("# expect: "), f"{path.name} lacks its # expect: line"
    found = []
    for text in lines:
        if not text.startswith("# expect: "):
            break
        line, _, rest = text.removeprefix("# expect: ").partition(" ")
        found.append((int(line), rest))
    return found


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_bad_model_is_refused_with_its_message(path: Path) -> None:
    expected = _expectations(path)
    result = run_cli("build", str(path))
    assert result.code == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    reported = result.stderr.splitlines()
    assert reported[0].startswith(f"error: {path}:{expected[0][0]}:"), reported[0]
    assert len(reported) >= len(expected), result.stderr
    for (line, message), text in zip(expected, reported, strict=False):
        where = f"{path}:{line}:"
        assert text.removeprefix("error: ").lstrip().startswith(where), text
        assert message.lstrip(": ") in text, text


def test_every_rule_has_a_file() -> None:
    assert len(FILES) >= 30


def test_an_empty_file_is_named_with_line_1(tmp_path: Path) -> None:
    """Zero bytes: no comment line to carry an expectation, so not in tests/data/bad."""
    path = tmp_path / "nftfwd.yaml"
    path.write_text("")
    result = run_cli("build", str(path))
    assert result.code == 2
    assert result.stderr.startswith(f"error: {path}:1:1: must be hosts, bridges and guests ")
