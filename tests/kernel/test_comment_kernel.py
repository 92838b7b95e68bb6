"""Comments in the kernel: what nftfwd loads, `nft list ruleset` shows on each element,
in text and JSON, byte for byte (also text nft could misread: `\\`, `$`, braces, `;`,
`#`, quotes of the other kind, UTF-8, nft's keywords, exactly 128 bytes); a change of
comment alone is a change that `diff` shows and `load` makes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES
from kernel_ns import Namespace, namespace

from nftfwd.semantic.values import MAX_COMMENT_BYTES

pytestmark = pytest.mark.kernel

EXAMPLE = EXAMPLES / "comments.yaml"
TRICKY = "a \\ b $x {c}; #d 'e' } : accept comment */ métriques ✓"
LONGEST = "é" * (MAX_COMMENT_BYTES // 2)  # 128 bytes, 64 characters
MODEL = """\
version: 1
hosts:
  h:
    uplinks: [eth0]
    bridges:
      br0:
        subnet: 10.0.0.0/24
        guests:
          g:
            address: 10.0.0.2
            forwards:
              - {{port: 8080, to: 80, comment: '{tricky}'}}
              - {{port: 8081, to: 81, comment: "{longest}"}}
              - {{port: 8082, to: 82, sources: [198.51.100.0/24], comment: guarded}}
"""


@pytest.fixture
def ns(tmp_path: Path) -> Iterator[Namespace]:
    with namespace(tmp_path, "nffcomment") as made:
        yield made


def element_comments(ns: Namespace) -> dict[tuple[str, Any], str | None]:
    """(map, key) -> comment of every element of nftfwd's maps and sets, as listed."""
    found: dict[tuple[str, Any], str | None] = {}
    for obj in json.loads(ns.nft("-j", "list", "table", "inet", "nftfwd"))["nftables"]:
        named = obj.get("map") or obj.get("set")
        for element in (named or {}).get("elem", []):
            key = element[0] if isinstance(element, list) else element
            wrapped = key.get("elem") if isinstance(key, dict) else None
            val = wrapped["val"] if wrapped else key
            found[(named["name"], json.dumps(val))] = wrapped.get("comment") if wrapped else None
    return found


def test_the_kernel_lists_each_comment_as_written(ns: Namespace, tmp_path: Path) -> None:
    assert len(LONGEST.encode()) == MAX_COMMENT_BYTES
    model = tmp_path / "m.yaml"
    model.write_text(MODEL.format(tricky=TRICKY.replace("'", "''"), longest=LONGEST))
    done = ns.nftfwd("load", str(model), "--atomic", "--yes")
    assert done.returncode == 0, done.stderr
    listing = ns.ruleset()
    assert f'tcp . 8080 comment "{TRICKY}" : 10.0.0.2' in listing
    assert f'tcp . 8081 comment "{LONGEST}" : 81' in listing
    assert 'tcp . 8082 comment "guarded" : jump allow4_0' in listing
    comments = element_comments(ns)
    key = json.dumps({"concat": ["tcp", 8080]})
    assert comments[("dnat_addr_any4", key)] == comments[("dnat_port_any4", key)] == TRICKY
    assert set(comments.values()) == {TRICKY, LONGEST, "guarded"}
    # Nothing a comment holds was read as nft: the table has exactly the rules it compiles to.
    diff = ns.nftfwd("diff", str(model))
    assert (diff.returncode, diff.stdout) == (0, "host h, table inet nftfwd: no changes\n")


def test_a_change_of_comment_alone_shows_in_diff_and_reloads(ns: Namespace, tmp_path: Path) -> None:
    assert ns.nftfwd("load", str(EXAMPLE), "--atomic", "--yes").returncode == 0
    listing = ns.ruleset()
    assert 'tcp . 443 comment "HTTPS for staff; renew the cert in March" : 10.20.0.10' in listing
    assert 'tcp . 80 comment "wiki.example.org (ticket #4711)" : 10.20.0.10' in listing
    assert "tcp . 8080 : 10.20.0.20" in listing  # no comment in the model: none in the kernel
    assert ns.nftfwd("diff", str(EXAMPLE)).returncode == 0
    new = tmp_path / "new.yaml"
    new.write_text(EXAMPLE.read_text().replace("renew the cert in March", "renewed"))
    diff = ns.nftfwd("diff", str(new))
    assert diff.returncode == 1, diff.stderr
    assert (
        '  ~ tcp 443 on any IPv4 host address -> wiki 10.20.0.10 port 443 "HTTPS for staff; '
        'renewed" (was wiki 10.20.0.10 port 443 "HTTPS for staff; renew the cert in March")'
    ) in diff.stdout.splitlines()
    assert "rules:" not in diff.stdout
    load = ns.nftfwd("load", str(new), "--atomic", "--yes")
    assert load.returncode == 0, load.stderr
    assert "closed" not in load.stdout + load.stderr  # no flow to close: all go where they went
    assert 'tcp . 443 comment "HTTPS for staff; renewed" : 10.20.0.10' in ns.ruleset()
    assert ns.nftfwd("diff", str(new)).returncode == 0
