"""A change of comment alone: a changed forward in diff (text, Markdown, JSON), element
changes, and no connection to close; a change of target with it still closes them."""

from __future__ import annotations

import json
from pathlib import Path

from cli_runner import run_cli
from conftest import REPO
from jsonschema import Draft202012Validator

from nftfwd.compiler import compile_host, load_model
from nftfwd.diffview import describe
from nftfwd.kernel.conntrack import Flow, gone_flows
from nftfwd.nftjson import name_protocols, read_document, read_objects
from nftfwd.plan import ForwardChange, compare, compare_elements, elements_of, forwards_of
from nftfwd.render_json import batch

EXAMPLE = REPO / "examples" / "comments.yaml"
OLD = "HTTPS for staff; renew the cert in March"


def edited(tmp_path: Path, old: str, new: str) -> Path:
    text = EXAMPLE.read_text()
    assert old in text
    path = tmp_path / "new.yaml"
    path.write_text(text.replace(old, new))
    return path


def test_diff_shows_a_changed_comment_as_a_changed_forward(tmp_path: Path) -> None:
    new = edited(tmp_path, OLD, "HTTPS for staff")
    done = run_cli("diff", "--from", str(EXAMPLE), str(new))
    assert done.code == 1, done.stderr
    lines = done.stdout.splitlines()
    assert (
        '  ~ tcp 443 on any IPv4 host address -> wiki 10.20.0.10 port 443 "HTTPS for staff" '
        f'(was wiki 10.20.0.10 port 443 "{OLD}")'
    ) in lines
    assert f'  - dnat_addr_any4 {{ tcp . 443 comment "{OLD}" : 10.20.0.10 }}' in lines
    assert '  + dnat_addr_any4 { tcp . 443 comment "HTTPS for staff" : 10.20.0.10 }' in lines
    assert '  + dnat_port_any6 { tcp . 443 comment "HTTPS for staff" : 443 }' in lines
    assert "rules:" not in lines  # only elements change


def test_diff_json_has_the_comment_on_each_side(tmp_path: Path) -> None:
    new = edited(tmp_path, f', comment: "{OLD}"', "")
    done = run_cli("diff", "--from", str(EXAMPLE), str(new), "--format", "json")
    assert done.code == 1, done.stderr
    document = json.loads(done.stdout)
    schema = json.loads((REPO / "schemas" / "diff.schema.json").read_text())
    Draft202012Validator(schema).validate(document)
    (host,) = document["hosts"]
    changed = host["forwards"]["changed"]
    assert [(f["family"], f["old"]["comment"], f["new"]["comment"]) for f in changed] == [
        ("ipv4", OLD, "wiki.example.org (ticket #4711)"),  # the guest's, now
        ("ipv6", OLD, "wiki.example.org (ticket #4711)"),
    ]
    assert host["forwards"]["added"] == host["forwards"]["removed"] == []
    assert host["rules_changed"] is False


def test_markdown_escapes_a_comment_and_no_backticks_close_its_fence(tmp_path: Path) -> None:
    hostile = "x | y ``` </details> <script>alert(1)</script> [a](http://b) *c*"
    new = edited(tmp_path, OLD, hostile)
    done = run_cli("diff", "--from", str(EXAMPLE), str(new), "--format", "markdown")
    assert done.code == 1, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| changed |")]
    assert rows and all(line.count("|") - line.count("\\|") == 3 for line in rows), rows
    assert "<script>" not in done.stdout.split("<details>")[0]
    assert "\\<script\\>" in rows[0] and "\\`\\`\\`" in rows[0]
    # The element lines hold the comment as it is, inside a fence of four backticks.
    assert "````diff" in done.stdout.splitlines()
    block = done.stdout.split("````diff\n", 1)[1].split("\n````\n", 1)[0]
    assert f'comment "{hostile}"' in block


def _changes(old: Path, new: Path) -> list[ForwardChange]:
    sides = []
    for path in (old, new):
        model = load_model(path)
        commands = batch(compile_host(model, model.hosts[0]))
        sides.append(forwards_of(read_document(commands), model.table))
    return compare(*sides)


def test_a_change_of_comment_alone_closes_no_connection(tmp_path: Path) -> None:
    new = edited(tmp_path, "CI runners: métriques ✓", "CI runners, moved")
    changes = _changes(EXAMPLE, new)
    # The range 9000-9002 (tcp and udp) is one changed forward per protocol.
    assert [(c.change, c.key.proto, c.key.port, c.last_port) for c in changes] == [
        ("~", "tcp", 9000, 9002),
        ("~", "udp", 9000, 9002),
    ]
    assert gone_flows(changes) == []


def test_a_new_target_with_a_new_comment_still_closes_its_connections(tmp_path: Path) -> None:
    new = edited(
        tmp_path,
        '{port: 443, comment: "HTTPS for staff; renew the cert in March"}',
        '{port: 443, to: 8443, comment: "moved"}',
    )
    assert gone_flows(_changes(EXAMPLE, new)) == [
        Flow("ip", "tcp", 443, 443, "10.20.0.10", 443, 1),
        Flow("ip6", "tcp", 443, 443, "fd00:20::10", 443, 1),
    ]


def test_a_comment_read_from_the_kernel_cannot_rewrite_the_terminal() -> None:
    """nft's JSON input takes any string: a comment someone else put on nftfwd's live
    elements is shown with what could rewrite a terminal escaped."""
    live = [
        {"map": {"table": "nftfwd", "name": "dnat_addr_any4", "elem": [
            [{"elem": {"val": {"concat": ["tcp", 80]}, "comment": "x\x1b[2J\ny"}}, "10.0.0.2"]]}},
        {"map": {"table": "nftfwd", "name": "dnat_port_any4", "elem": [
            [{"elem": {"val": {"concat": ["tcp", 80]}, "comment": "x\x1b[2J\ny"}}, 80]]}},
    ]  # fmt: skip
    (change,) = compare(forwards_of(read_objects(live), "nftfwd"), {})
    text = describe(change, {"10.0.0.2": "web"})
    assert text == 'tcp 80 on any IPv4 host address -> web 10.0.0.2 port 80 "x\\x1b[2J\\ny"'
    (element,) = compare_elements(elements_of(read_objects(live), "nftfwd"), {})[:1]
    assert element.element == 'tcp . 80 comment "x\\x1b[2J\\ny" : 10.0.0.2'


def test_protocols_listed_as_numbers_get_their_names_back_in_commented_elements() -> None:
    """The live listing (protocols as numbers, for speed) reads as nftfwd writes it."""
    listed = [
        {"map": {"name": "m", "type": ["inet_proto", "inet_service"], "map": "ipv4_addr",
                 "elem": [[{"elem": {"val": {"concat": [6, 80]}, "comment": "web"}}, "10.0.0.2"]]}},
        {"set": {"name": "p", "type": "inet_proto",
                 "elem": [{"elem": {"val": 17, "comment": "dns"}}, 6]}},
    ]  # fmt: skip
    for obj in listed:
        name_protocols(obj)
    assert listed[0]["map"]["elem"] == [
        [{"elem": {"val": {"concat": ["tcp", 80]}, "comment": "web"}}, "10.0.0.2"]
    ]
    assert listed[1]["set"]["elem"] == [{"elem": {"val": "udp", "comment": "dns"}}, "tcp"]
