"""The nft text and the JSON of every golden model give the kernel the same ruleset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from golden_cases import case_id, golden_cases, rendered

from nftfwd.compiler import load_model
from nftfwd.kernel.sandbox import kernel_listing

CASES = golden_cases()


def _without_handles(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _without_handles(v) for k, v in data.items() if k != "handle"}
    if isinstance(data, list):
        return [_without_handles(v) for v in data]
    return data


@pytest.mark.kernel
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_nft_and_json_load_to_the_same_kernel_state(case: tuple[Path, str]) -> None:
    path, host = case
    table = load_model(path).table
    from_text = kernel_listing(rendered(path, host, "nft"), "nft", "inet", table)
    from_json = kernel_listing(rendered(path, host, "json"), "json", "inet", table)
    text_state = _without_handles(from_text.json)["nftables"]
    json_state = _without_handles(from_json.json)["nftables"]
    assert [e for e in text_state if "metainfo" not in e] == [
        e for e in json_state if "metainfo" not in e
    ]
    assert from_text.text == from_json.text
    # The table holds something real: every chain nftfwd declares is there.
    chains = {e["chain"]["name"] for e in text_state if "chain" in e}
    assert {"prerouting", "forward", "postrouting"} <= chains
