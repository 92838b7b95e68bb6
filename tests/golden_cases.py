"""The (model, host) pairs golden files cover, and the one function that renders them."""

from __future__ import annotations

from pathlib import Path

from conftest import model_files

from nftfwd.compiler import compile_host, load_model, render

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "golden"


def golden_cases() -> list[tuple[Path, str]]:
    return [(path, host.name) for path in model_files() for host in load_model(path).hosts]


def case_id(case: tuple[Path, str]) -> str:
    return f"{case[0].stem}.{case[1]}"


def rendered(path: Path, host_name: str, fmt: str) -> str:
    model = load_model(path)
    table = compile_host(model, model.host(host_name))
    return render(table, "json" if fmt == "json" else "nft")
