"""Stage 1: YAML with the location of every key; duplicates and YAML 1.1 traps."""

from __future__ import annotations

import pytest

from nftfwd.errors import ModelError
from nftfwd.source import format_path, load_text


def test_every_key_has_its_line_and_column() -> None:
    doc = load_text("version: 1\nhosts:\n  kvm1:\n    uplinks: [eth0, eth1]\n", "m.yaml")
    assert str(doc.location(("hosts", "kvm1", "uplinks"))) == "m.yaml:4:5"
    assert str(doc.location(("hosts", "kvm1", "uplinks", 1))) == "m.yaml:4:21"
    # A path that does not exist falls back to its nearest ancestor.
    assert str(doc.location(("hosts", "kvm1", "bridges"))) == "m.yaml:3:3"


def test_duplicate_keys_are_errors_naming_both_lines() -> None:
    with pytest.raises(ModelError) as caught:
        load_text("version: 1\nversion: 1\n", "m.yaml")
    assert str(caught.value) == (
        "m.yaml:2:1: version: duplicate key 'version' (first written at line 1); "
        "each name may appear only once, so remove or rename one of them"
    )


def test_names_keep_the_text_the_user_wrote() -> None:
    doc = load_text("hosts:\n  1: {}\n  yes: {}\n  1e3: {}\n", "m.yaml")
    assert list(doc.data["hosts"]) == ["1", "yes", "1e3"]


def test_unquoted_ipv6_is_remembered_as_such() -> None:
    doc = load_text("a: [1:2:3:4:5:6:7:8, '1:2::8', 10]\n", "m.yaml")
    assert doc.unquoted == frozenset({("a", 0)})


def test_format_path() -> None:
    assert format_path(("hosts", "k", "forwards", 1, "port")) == "hosts.k.forwards[1].port"


def test_an_alias_is_a_fresh_copy_of_its_anchor_located_at_the_anchor() -> None:
    doc = load_text("a: &x {p: [1]}\nb: *x\n", "m.yaml")
    assert doc.data == {"a": {"p": [1]}, "b": {"p": [1]}}
    assert doc.data["b"] is not doc.data["a"]
    assert str(doc.location(("b",))) == "m.yaml:2:1"
    assert str(doc.location(("b", "p", 0))) == "m.yaml:1:12"
