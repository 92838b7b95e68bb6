"""A forward's `comment` (else its guest's) on every element it makes, in both renderers;
a model without comments renders as before (the goldens of the other examples)."""

from __future__ import annotations

import json
from pathlib import Path

from nftfwd.compiler import compile_host, load_model, render
from nftfwd.ir import Element, NamedSet
from nftfwd.render_json import batch
from nftfwd.render_nft import element_text

MODEL = """\
version: 1
hosts:
  h:
    uplinks: [eth0]
    bridges:
      br0:
        subnet: 10.0.0.0/24
        guests:
          web:
            address: 10.0.0.2
            comment: "the web guest"
            forwards:
              - {port: 8080, to: 80, comment: "HTTP for staff"}
              - {port: 8443, to: 443}
              - {port: 2222, to: 22, sources: [198.51.100.0/24], comment: "SSH from the VPN"}
              - {port: 5432, snat: true, comment: "db, first"}
              - {port: 5433, to: 5432, snat: true, comment: "db, second"}
          quiet:
            address: 10.0.0.3
            forwards:
              - {port: 9000}
"""


def sets(tmp_path: Path, text: str = MODEL) -> dict[str, NamedSet]:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    model = load_model(path)
    table = compile_host(model, model.hosts[0])
    return {s.name: s for s in table.sets}


def comments(named: NamedSet) -> dict[int, str | None]:
    """The comment of each element, by its last key part (the port)."""
    return {int(e.key[-1]): e.comment for e in named.elements}  # type: ignore[arg-type]


def test_each_element_carries_its_forwards_comment_else_its_guests(tmp_path: Path) -> None:
    found = sets(tmp_path)
    expected = {8080: "HTTP for staff", 8443: "the web guest", 2222: "SSH from the VPN",
                5432: "db, first", 5433: "db, second", 9000: None}  # fmt: skip
    assert comments(found["dnat_addr_any4"]) == expected
    assert comments(found["dnat_port_any4"]) == expected
    assert comments(found["sources_any4"]) == {2222: "SSH from the VPN"}


def test_forwards_that_share_an_snat_element_give_it_the_first_ones_comment(
    tmp_path: Path,
) -> None:
    """Both snat forwards reach 10.0.0.2 tcp/5432: one element, the model's first comment."""
    assert comments(sets(tmp_path)["snat4"]) == {5432: "db, first"}


def test_the_nft_text_writes_the_comment_after_the_key() -> None:
    element = Element((8080,), 80, "web: café ☕ \\ $x {a}; #b 'q'")
    assert element_text(element) == "8080 comment \"web: café ☕ \\ $x {a}; #b 'q'\" : 80"
    assert element_text(Element((8080,), 80)) == "8080 : 80"
    assert element_text(Element((8080,), None, "set")) == '8080 comment "set"'


def test_the_json_wraps_the_key_as_nft_lists_it(tmp_path: Path) -> None:
    """`{"elem": {"val": KEY, "comment": TEXT}}`, the form `nft -j list` gives back: the
    diff compares the two as data."""
    path = tmp_path / "m.yaml"
    path.write_text(MODEL)
    model = load_model(path)
    commands = batch(compile_host(model, model.hosts[0]))["nftables"]
    maps = {c["add"]["map"]["name"]: c["add"]["map"] for c in commands if "map" in c.get("add", {})}
    elements = maps["dnat_port_any4"]["elem"]
    assert [
        {"elem": {"val": {"concat": ["tcp", 8080]}, "comment": "HTTP for staff"}},
        80,
    ] in elements
    assert [{"elem": {"val": {"concat": ["tcp", 9000]}, "comment": None}}, 9000] not in elements
    assert [{"concat": ["tcp", 9000]}, 9000] in elements  # no comment: the bare key
    text = render(compile_host(model, model.hosts[0]), "json")
    assert json.loads(text)["nftables"] == commands


def test_without_comments_nothing_changes(tmp_path: Path) -> None:
    """The same model less its comments renders no `comment` at all."""
    bare = "\n".join(
        line.split(", comment:")[0] + ("}" if ", comment:" in line else "")
        for line in MODEL.splitlines()
        if 'comment: "the web guest"' not in line
    )
    path = tmp_path / "bare.yaml"
    path.write_text(bare + "\n")
    model = load_model(path)
    table = compile_host(model, model.hosts[0])
    assert all(e.comment is None for s in table.sets for e in s.elements)
    assert "comment" not in render(table, "nft") and "comment" not in render(table, "json")
