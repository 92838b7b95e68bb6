"""doctor and diff for machines and for review: the JSON documents (checked against their
schemas in schemas/), and the Mermaid diagram of `diff --format markdown`."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cli_runner import run_cli
from conftest import REPO, TEST_DATA
from jsonschema import Draft202012Validator

from nftfwd.doctor.boot import BootUnits, check_nftables_conf
from nftfwd.doctor.findings import Finding, Severity
from nftfwd.doctor.json_report import findings_document
from nftfwd.markdown import flowchart, format_markdown, mermaid_text
from nftfwd.plan import ForwardChange, ForwardKey, HostDiff, Target

HOMELAB = REPO / "examples" / "homelab.yaml"
FLEET = REPO / "examples" / "fleet.yaml"
DEBIAN_CONF = (TEST_DATA / "doctor" / "debian-nftables.conf").read_text()


@cache
def validator(name: str) -> Draft202012Validator:
    schema = json.loads((REPO / "schemas" / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def valid(name: str, text: str) -> dict[str, Any]:
    """The one JSON document in text, after checking it against schemas/NAME.schema.json."""
    document = json.loads(text)
    validator(name).validate(document)
    assert document["format"] == 1
    return document  # type: ignore[no-any-return]


def changed(tmp_path: Path, source: Path, *edits: tuple[str, str]) -> Path:
    text = source.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / f"new-{source.name}"
    path.write_text(text)
    return path


# --- doctor --------------------------------------------------------------------------------


def finding(id_: str, severity: Severity) -> Finding:
    return Finding(id_, f"subject of {id_}", "What fails, and why.", "a command\n# why", severity)


def test_doctor_document_has_each_finding_with_separate_fields() -> None:
    (flush,) = check_nftables_conf("/etc/nftables.conf", DEBIAN_CONF, BootUnits())
    found = [flush, finding("foreign-policy-drop", "error")]
    document = findings_document("kvm1", "nftfwd", found)
    valid("doctor", json.dumps(document))
    assert document["exit_code"] == 1 and document["counts"] == {
        "error": 1, "warning": 1, "note": 0}  # fmt: skip
    first, second = document["findings"]  # the most fundamental first
    assert first == {
        "id": "foreign-policy-drop",
        "severity": "error",
        "subject": "subject of foreign-policy-drop",
        "message": "What fails, and why.",
        "fix": "a command\n# why",
    }
    assert (second["id"], second["severity"], second["subject"]) == (
        "flush-ruleset-on-boot", "warning", "/etc/nftables.conf")  # fmt: skip
    assert second["fix"] == flush.fix and second["message"] == flush.message


@pytest.mark.parametrize(
    ("severities", "plain", "strict"),
    [([], 0, 0), (["note"], 0, 0), (["warning", "note"], 0, 1), (["error"], 1, 1)],
)
def test_doctor_document_exit_code_is_the_commands(
    severities: list[Severity], plain: int, strict: int
) -> None:
    found = [finding(f"kind-{i}", s) for i, s in enumerate(severities)]
    assert findings_document("h", "t", found)["exit_code"] == plain
    document = findings_document("h", "t", found, strict=True)
    assert (document["exit_code"], document["strict"]) == (strict, True)
    valid("doctor", json.dumps(document))


def test_the_schemas_are_installed_with_the_package() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"nftfwd.schemas" = ["*.json"]' in pyproject
    assert {"doctor.schema.json", "diff.schema.json"} <= {p.name for p in REPO.glob("schemas/*")}


# --- diff --format json ---------------------------------------------------------------------


def test_diff_json_of_a_model_change_is_structured(tmp_path: Path) -> None:
    new = changed(
        tmp_path,
        HOMELAB,
        ('"27015-27017", to: "28015-28017"', '"27015-27017", to: "29015-29017"'),
        ("{port: 8080, to: 80}", "{port: 8081, to: 80}"),
        ("198.51.100.0/24, ", "198.51.100.0/25, "),
    )
    done = run_cli("diff", "--from", str(HOMELAB), str(new), "--format", "json")
    assert done.code == 1, done.stderr
    document = valid("diff", done.stdout)
    assert (document["against"], document["changed"]) == ("model", True)
    (host,) = document["hosts"]
    assert (host["host"], host["table"], host["changed"]) == ("homelab", "nftfwd", True)
    assert host["rules_changed"] is True  # the allowed clients are a rule of their own
    forwards = host["forwards"]
    web = {"guest": "web", "guest_address": "192.168.122.10", "comment": None}
    assert {**web, "protocol": "tcp", "family": "ipv4", "listen_address": None,
            "host_port": {"first": 8081, "last": 8081}, "sources": None,
            "guest_port": {"first": 80, "last": 80}} in forwards["added"]  # fmt: skip
    assert {**web, "protocol": "tcp", "family": "ipv4", "listen_address": None,
            "host_port": {"first": 8080, "last": 8080}, "sources": None,
            "guest_port": {"first": 80, "last": 80}} in forwards["removed"]  # fmt: skip
    games = [f for f in forwards["changed"] if f["host_port"]["first"] == 27015]
    assert [(f["protocol"], f["host_port"], f["old"], f["new"]) for f in games] == [
        (proto, {"first": 27015, "last": 27017},
         {"guest": "games", "guest_address": "192.168.122.20",
          "guest_port": {"first": 28015, "last": 28017}, "comment": None},
         {"guest": "games", "guest_address": "192.168.122.20",
          "guest_port": {"first": 29015, "last": 29017}, "comment": None})
        for proto in ("tcp", "udp")
    ]  # fmt: skip
    ssh = [f for f in forwards["added"] if f["host_port"]["first"] == 2222]
    assert [(f["family"], f["sources"]) for f in ssh] == [("ipv4", ["198.51.100.0/25"])]
    assert all(isinstance(p, int) for f in forwards["added"] for p in f["host_port"].values())
    assert host["elements"]["added"] > 0 and host["elements"]["removed"] > 0


def test_diff_json_without_changes_and_with_a_listen_address(tmp_path: Path) -> None:
    same = run_cli("diff", "--from", str(FLEET), str(FLEET), "--format", "json")
    assert same.code == 0
    document = valid("diff", same.stdout)
    assert [(h["host"], h["changed"], h["rules_changed"]) for h in document["hosts"]] == [
        ("kvm1", False, False), ("kvm2", False, False)]  # fmt: skip
    assert document["changed"] is False
    new = changed(
        tmp_path,
        FLEET,
        ("{port: 993, address: 203.0.113.11}", "{port: 995, address: 203.0.113.11}"),
    )
    done = run_cli("diff", "--from", str(FLEET), str(new), "--format", "json", "--host", "kvm1")
    document = valid("diff", done.stdout)
    (kvm1,) = document["hosts"]
    assert kvm1["rules_changed"] is False and kvm1["rules_diff"] == []  # only map elements
    assert [(f["listen_address"], f["host_port"]["first"]) for f in kvm1["forwards"]["added"]] == [
        ("203.0.113.11", 995)]  # fmt: skip


def test_diff_json_of_a_new_bridge_says_the_rules_change(tmp_path: Path) -> None:
    new = changed(
        tmp_path,
        FLEET,
        ("      br-lab:\n", "      br-new:\n        subnet: 10.0.40.0/24\n      br-lab:\n"),
    )
    done = run_cli("diff", "--from", str(FLEET), str(new), "--format", "json")
    (kvm1, kvm2) = valid("diff", done.stdout)["hosts"]
    assert (kvm1["changed"], kvm2["changed"], kvm2["rules_changed"]) == (False, True, True)
    assert kvm2["forwards"] == {"added": [], "removed": [], "changed": []}
    assert any("br-new" in line for line in kvm2["rules_diff"]), kvm2["rules_diff"]
    assert done.code == 1


# --- diff --format markdown: the diagram ----------------------------------------------------


def mermaid_blocks(markdown: str) -> list[list[str]]:
    return [b.splitlines() for b in re.findall(r"```mermaid\n(.*?)\n```", markdown, re.S)]


def test_markdown_draws_every_changed_host_above_its_table(tmp_path: Path) -> None:
    new = changed(
        tmp_path,
        FLEET,
        ("              - {port: 25}\n", "              - {port: 2525, to: 25}\n"),
        ("              - {port: 443, proto: udp}\n", ""),
    )
    done = run_cli("diff", "--from", str(FLEET), str(new), "--format", "markdown")
    assert done.code == 1
    kvm1, kvm2 = done.stdout.split("### host ")[1:]
    for section in (kvm1, kvm2):
        assert section.index("```mermaid") < section.index("| | forward |")
    (one,), (two,) = mermaid_blocks(kvm1), mermaid_blocks(kvm2)
    assert one[0] == two[0] == "flowchart LR"
    # kvm1: port 25 moved to 2525, in both families: the old host port goes (dashed,
    # red), the new one comes (solid, green), to the same guest port, which stays
    nodes = dict(re.findall(r'^  (n\d+)\["(.*)"\]$', "\n".join(one), re.M))
    by_label = {label: node for node, label in nodes.items()}
    old4 = by_label["tcp 25<br>on 203.0.113.10"]
    new4 = by_label["tcp 2525<br>on 203.0.113.10"]
    guest4 = by_label["mail 10.0.10.25<br>port 25"]
    client = by_label["any client"]
    assert f"  {client} -.-> {old4}" in one and f"  {old4} -.->|removed| {guest4}" in one
    assert f"  {client} --> {new4}" in one and f"  {new4} -->|added| {guest4}" in one
    classes = {
        line.split()[2]: line.split()[1].split(",") for line in one if line.startswith("  class ")
    }
    assert old4 in classes["removed"] and new4 in classes["added"]
    assert guest4 not in classes["removed"] + classes["added"] and client not in classes["added"]
    assert any(line.startswith("  classDef removed") and "stroke-dasharray" in line for line in one)
    # kvm2: a removed forward only
    assert '["udp 443<br>on any IPv4 host address"]' in "\n".join(two)
    assert not any(line.startswith("  class ") and line.endswith(" added") for line in two)


def test_markdown_of_an_unchanged_host_has_no_diagram() -> None:
    done = run_cli("diff", "--from", str(FLEET), str(FLEET), "--format", "markdown")
    assert done.code == 0 and "```mermaid" not in done.stdout and "No change." in done.stdout


def test_a_changed_forward_keeps_its_host_side_and_shows_was_and_now() -> None:
    key = ForwardKey("ip6", "udp", 27015, "2001:db8::10", "2001:db8:100::/48")
    change = ForwardChange("~", key, 27017, Target("fd00::5", 27015), Target("fd00::6", 27015))
    lines = flowchart([change], {"fd00::5": "old", "fd00::6": "new"})
    assert lines[3:] == [
        '  n0["from 2001:db8:100::/48"]',
        '  n1["udp 27015-27017<br>on 2001:db8::10"]',
        '  n2["old fd00::5<br>port 27015-27017"]',
        '  n3["new fd00::6<br>port 27015-27017"]',
        "  n0 --> n1",
        "  n1 -.->|was| n2",
        "  n1 -->|now| n3",
        "  class n3 added",
        "  class n2 removed",
    ]


HOSTILE = 'a"]\n```\n%% end\n<b>x</b> & #quot; `md`\x00'


def test_mermaid_text_cannot_end_a_label_the_diagram_or_the_fence() -> None:
    assert mermaid_text(HOSTILE) == (
        "a#quot;] #96;#96;#96; #37;#37; end #lt;b#gt;x#lt;/b#gt; #amp; #35;quot; #96;md#96; "
    )


def test_a_hostile_guest_name_stays_inside_its_label() -> None:
    key = ForwardKey("ip", "tcp", 80, "any", "any")
    diff = HostDiff("h`", "t", [ForwardChange("+", key, 80, None, Target("10.0.0.2", 80))], [],
                    {"10.0.0.2": HOSTILE})  # fmt: skip
    (block,) = mermaid_blocks(format_markdown([diff]))
    labels = [line for line in block if "[" in line and line.startswith("  n")]
    assert len(labels) == 3 and all(re.fullmatch(r'  n\d+\["[^"\n`]*"\]', x) for x in labels)
    assert len(block) == 3 + 3 + 2 + 1  # flowchart and classDefs, nodes, links, one class
