"""Every example and shared scenario compiles to exactly its golden files.

Regenerate after an intended change with `pytest tests/render/test_golden.py --update-golden`
and review the result with `git diff golden/`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from golden_cases import GOLDEN, case_id, golden_cases, rendered

CASES = golden_cases()


@pytest.mark.parametrize("fmt", ["nft", "json"])
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_output_matches_golden(case: tuple[Path, str], fmt: str, update_golden: bool) -> None:
    path, host = case
    golden = GOLDEN / f"{path.stem}.{host}.{fmt}"
    output = rendered(path, host, fmt)
    if update_golden:
        golden.write_text(output, encoding="utf-8")
    assert golden.exists(), f"missing {golden.name}: run pytest --update-golden"
    assert output == golden.read_text(encoding="utf-8"), f"{golden.name} differs"


def test_every_golden_file_has_a_model() -> None:
    expected = {f"{case_id(c)}.{fmt}" for c in CASES for fmt in ("nft", "json")}
    present = {p.name for p in GOLDEN.glob("*.*") if p.suffix in (".nft", ".json")}
    assert present - expected == set(), "stale golden files: delete them"


def test_build_is_deterministic() -> None:
    path, host = CASES[0]
    assert rendered(path, host, "nft") == rendered(path, host, "nft")
