"""Hostile model files and arguments: refused with a located error in bounded time,
memory and output, never a traceback or a hang (issue 12: the input half).

tests/data/bad/ holds one file per refused value (tags, typed scalars, port forms,
trailing newlines, scope ids, IPv4-mapped IPv6, bridge subnets, recursive aliases, the
alias bomb, deep nesting); this file tests what a single bad file cannot show.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from cli_runner import run_cli
from conftest import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from nftfwd import schema
from nftfwd.config import select_host
from nftfwd.errors import MAX_ECHO, MAX_REPORTED, ModelError, NftfwdError
from nftfwd.semantic import build_model
from nftfwd.source import (
    DEFAULT_MAX_MODEL_BYTES,
    MAX_SIZE_VARIABLE,
    load_file,
    load_text,
    max_model_bytes,
)

HOSTILE = runpy.run_path(str(REPO / "bench" / "hostile.py"))
HEADER = "version: 1\nhosts:\n  h:\n    uplinks: [eth0]\n"
VALID = HEADER + (
    "    bridges:\n      br0:\n        subnet: 10.0.0.0/24\n        guests:\n"
    "          g:\n            address: 10.0.0.2\n            forwards:\n"
    "              - {port: 8080, to: 80}\n"
)


def _nftfwd(*args: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "nftfwd", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


# ---- the reader's bounds ---------------------------------------------------------------


def test_the_alias_bomb_is_refused_in_under_a_second_with_bounded_memory() -> None:
    bomb = HOSTILE["alias_bomb"]()
    assert len(bomb.encode()) == 612
    start = time.process_time()  # CPU time: CI machines are shared
    with pytest.raises(ModelError, match="an alias bomb"):
        load_text(bomb, "bomb.yaml")
    assert time.process_time() - start < 1.0
    tracemalloc.start()  # (which slows Python down: timed apart)
    try:
        with pytest.raises(ModelError, match="an alias bomb"):
            load_text(bomb, "bomb.yaml")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024 * 1024


def test_aliases_within_the_budget_still_work() -> None:
    forwards = "[" + ", ".join(f"{{port: {p}}}" for p in range(1000, 1100)) + "]"
    text = "common: &f " + forwards + "\n" + "".join(f"g{i}: *f\n" for i in range(100))
    doc = load_text(text, "m.yaml")
    assert len(doc.data["g99"]) == 100


def test_the_report_shows_the_first_problems_then_a_count(tmp_path: Path) -> None:
    text = HEADER + "".join(f"junk{i}: {i}\n" for i in range(500))
    result = run_cli("build", _written(tmp_path, text))
    lines = result.stderr.splitlines()
    assert result.code == 2
    assert len(lines) == MAX_REPORTED + 1
    assert "junk0: unknown key 'junk0'" in lines[0]
    assert lines[-1].strip() == "... and 450 more problem(s) not shown; fix these first"


def test_duplicate_keys_are_counted_beyond_the_report() -> None:
    text = "".join("a: 1\n" for _ in range(1000))
    with pytest.raises(ModelError) as caught:
        load_text(text, "m.yaml")
    assert len(caught.value.problems) == MAX_REPORTED
    assert caught.value.omitted == 999 - MAX_REPORTED


def test_an_echoed_value_is_cut(tmp_path: Path) -> None:
    result = run_cli("build", _written(tmp_path, HEADER + f"table: {'k' * 100_000}\n"))
    assert result.code == 2
    assert '"' + "k" * MAX_ECHO + '"...' in result.stderr
    assert len(result.stderr) < 1000
    # A key longer than libyaml takes as a key is a syntax error, not echoed.
    result = run_cli("build", _written(tmp_path, HEADER + f"{'k' * 100_000}: 1\n"))
    assert result.code == 2
    assert len(result.stderr) < 1000


def test_an_echoed_value_cannot_write_to_the_terminal(tmp_path: Path) -> None:
    result = run_cli("build", _written(tmp_path, HEADER + 'table: "a\\u001b[2Jb"\n'))
    assert result.code == 2
    assert "\x1b" not in result.stderr


def test_nesting_is_bounded_however_deep() -> None:
    for text in ("[" * 100_000, "- " * 100_000 + "x", "{a: " * 100_000):
        with pytest.raises(ModelError, match="nest deeper than 64 levels"):
            load_text(text, "m.yaml")


def test_file_size_limit_default_and_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MAX_SIZE_VARIABLE, raising=False)
    assert max_model_bytes() == DEFAULT_MAX_MODEL_BYTES == 8 * 1024 * 1024
    model = tmp_path / "m.yaml"
    model.write_text(VALID + "#" * 2000 + "\n")
    monkeypatch.setenv(MAX_SIZE_VARIABLE, "1K")
    with pytest.raises(NftfwdError, match=r"larger than 1 KiB, the limit.*NFTFWD_MAX_MODEL_SIZE"):
        load_file(model)
    monkeypatch.setenv(MAX_SIZE_VARIABLE, "4k")
    assert load_file(model).data["version"] == 1
    for value in ("64M", "64MiB", "64mb"):
        monkeypatch.setenv(MAX_SIZE_VARIABLE, value)
        assert max_model_bytes() == 64 * 1024 * 1024
    monkeypatch.setenv(MAX_SIZE_VARIABLE, "lots")
    with pytest.raises(NftfwdError, match="is not a size"):
        max_model_bytes()


def test_fifty_megabytes_of_junk_are_refused_at_once(tmp_path: Path) -> None:
    junk = tmp_path / "junk.yaml"
    HOSTILE["write_junk_keys"](junk, 50 * 1000 * 1000)
    start = time.process_time()
    result = run_cli("build", str(junk))
    assert time.process_time() - start < 1.0
    assert result.code == 2
    assert "larger than 8 MiB, the limit" in result.stderr
    assert len(result.stderr) < 300


def test_junk_just_under_the_limit_gives_a_bounded_report(tmp_path: Path) -> None:
    junk = tmp_path / "junk.yaml"
    lines = [HEADER] + [f"an_unknown_key_number_{i}: {i}\n" for i in range(8000)]
    junk.write_text("".join(lines))
    assert 230_000 < junk.stat().st_size < 256 * 1024
    result = _nftfwd("build", str(junk), env={MAX_SIZE_VARIABLE: "256K"})
    assert result.returncode == 2
    assert b"Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == MAX_REPORTED + 1
    assert re.search(rb"\.\.\. and \d+ more problem\(s\) not shown", result.stderr)


def test_a_file_of_tiny_values_is_bounded_by_the_size_limit() -> None:
    text = HEADER + "junk:\n" + "- 1\n" * 2000
    with pytest.raises(ModelError, match="more than 1000 values"):
        load_text(text, "m.yaml", max_nodes=1000)


# ---- the model path -------------------------------------------------------------------


def test_a_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "model.yaml"
    os.mkfifo(fifo)
    result = _nftfwd("build", str(fifo))  # nobody writes: a blocking open would hang
    assert result.returncode == 2
    assert b"is a FIFO (named pipe), not a regular file" in result.stderr


@pytest.mark.parametrize(
    ("path", "kind"), [("/dev/zero", "a character device"), ("/", "a directory")]
)
def test_a_device_or_directory_is_refused(path: str, kind: str) -> None:
    result = run_cli("build", path)
    assert result.code == 2
    assert f"{path}: is {kind}, not a regular file" in result.stderr


def test_dash_reads_the_model_from_stdin(tmp_path: Path) -> None:
    model = tmp_path / "m.yaml"
    model.write_text(VALID)
    from_file = _nftfwd("build", str(model))
    from_stdin = _nftfwd("build", "-", stdin=VALID.encode())
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert from_stdin.stdout == from_file.stdout
    bad = _nftfwd("build", "-", stdin=VALID.replace("8080", "0x50").encode())
    assert bad.returncode == 2
    assert bad.stderr.decode().startswith("error: <stdin>:12:18: ")


def test_stdin_is_bounded_too() -> None:
    result = _nftfwd("build", "-", stdin=b"#" * 5000, env={MAX_SIZE_VARIABLE: "1K"})
    assert result.returncode == 2
    assert b"<stdin>: the model file is larger than 1 KiB" in result.stderr


def test_a_model_that_is_not_utf8_gets_a_located_error(tmp_path: Path) -> None:
    model = tmp_path / "m.yaml"
    model.write_bytes(VALID.replace("address: 10.0.0.2", "address: 10.0.\xe9.2").encode("latin-1"))
    result = run_cli("build", str(model))
    assert result.code == 2
    assert result.stderr.startswith(
        f"error: {model}:10:27: byte 0xe9 is not UTF-8 text; save the file as UTF-8"
    )


# ---- libvirt import -------------------------------------------------------------------

NETWORK = """<network>
  <name>default</name>
  <forward mode='open'/>
  <bridge name='virbr0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp><host mac='52:54:00:00:00:01' name='web' ip='192.168.122.10'/></dhcp>
  </ip>
  <ip family='ipv6' address='fd00:122::1' prefix='64'>
    <dhcp><host id='0:1:2:3' name='web' ip='ADDRESS6'/></dhcp>
  </ip>
</network>
"""


def test_libvirt_import_of_non_utf8_xml_is_a_located_error(tmp_path: Path) -> None:
    xml = tmp_path / "net.xml"
    xml.write_bytes(NETWORK.replace("default", "d\xe9faut").encode("latin-1"))
    result = run_cli("libvirt", "import", str(xml))
    assert result.code == 2
    assert result.stderr.startswith(f"error: {xml}:2:10: byte 0xe9 is not UTF-8 text")


@pytest.mark.parametrize("address6", ["fd00:122::10%virbr0", "::ffff:192.168.122.10"])
def test_libvirt_import_skips_addresses_the_model_refuses(tmp_path: Path, address6: str) -> None:
    xml = tmp_path / "net.xml"
    xml.write_text(NETWORK.replace("ADDRESS6", address6))
    result = run_cli("libvirt", "import", str(xml))
    assert result.code == 0, result.stderr
    assert f"ignored DHCP host 'web': its ip '{address6}'" in result.stdout
    assert "address6" not in result.stdout.split("guests:")[1]
    build_model(load_text(result.stdout, "skeleton.yaml"))  # what it wrote is valid


def test_libvirt_import_reads_a_pipe(tmp_path: Path) -> None:
    fifo = tmp_path / "net.xml"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"cat > '{fifo}'"], stdin=subprocess.PIPE)
    assert writer.stdin is not None
    writer.stdin.write(NETWORK.replace("ADDRESS6", "fd00:122::10").encode())
    writer.stdin.close()
    result = _nftfwd("libvirt", "import", str(fifo))
    writer.wait(timeout=10)
    assert result.returncode == 0, result.stderr
    assert b'subnet: "192.168.122.0/24"' in result.stdout


# ---- schema patterns ------------------------------------------------------------------


def _patterns(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        return found + [p for value in node.values() for p in _patterns(value)]
    if isinstance(node, list):
        return [p for item in node for p in _patterns(item)]
    return []


PATTERNS = sorted(set(_patterns(json.loads(schema.schema_text()))))


def test_the_schema_has_patterns() -> None:
    assert len(PATTERNS) >= 4


@pytest.mark.parametrize("pattern", PATTERNS)
@settings(max_examples=30, derandomize=True)
@given(data=st.data())
def test_every_schema_pattern_rejects_a_trailing_newline(pattern: str, data: st.DataObject) -> None:
    # Ended with `$(?!\n)`: ECMA-262 (editors) and Python (jsonschema, the fast check)
    # both read it as the end of the string; `$` alone matches before a final newline.
    assert pattern.startswith("^") and pattern.endswith("$(?!\\n)")
    example = data.draw(st.from_regex(pattern.removesuffix("(?!\\n)"), fullmatch=True))
    assert re.search(pattern, example)
    assert not re.search(pattern, example + "\n")


def test_a_trailing_newline_is_refused_by_both_shape_checks() -> None:
    doc = load_text(HEADER.replace("[eth0]", '["eth0\\n"]'), "m.yaml")
    assert not schema._fast_check()(doc.data)
    assert not schema._validator().is_valid(doc.data)


# ---- --host ---------------------------------------------------------------------------

FLEET = """version: 1
hosts:
  web1: {uplinks: [eth0]}
  web1.example.com: {uplinks: [eth1]}
  DB: {uplinks: [eth2]}
"""


def test_the_machine_name_picks_the_exact_host_before_the_short_one() -> None:
    model = build_model(load_text(FLEET, "fleet.yaml"))
    assert select_host(model, None, "web1.example.com").name == "web1.example.com"
    assert select_host(model, None, "WEB1.Example.COM").name == "web1.example.com"
    assert select_host(model, None, "web1.other.org").name == "web1"
    assert select_host(model, None, "db.example.com").name == "DB"


def test_host_option_is_case_insensitive_exact_first() -> None:
    model = build_model(load_text(FLEET + "  db: {uplinks: [eth3]}\n", "fleet.yaml"))
    assert select_host(model, "WEB1").name == "web1"
    assert select_host(model, "db").name == "db"
    assert select_host(model, "DB").name == "DB"
    with pytest.raises(NftfwdError, match="differ only in case"):
        select_host(model, "Db")
    with pytest.raises(NftfwdError, match="no host 'web2' in the model"):
        select_host(model, "web2")


def test_diff_from_with_an_unknown_host_is_an_error(tmp_path: Path) -> None:
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(FLEET)
    new.write_text(FLEET)
    result = run_cli("diff", "--from", str(old), str(new), "--host", "typo")
    assert result.code == 2
    assert result.stderr.startswith(f"error: no host 'typo' in {old} or {new}; their hosts are")
    result = run_cli("diff", "--from", str(old), str(new), "--host", "Web1.EXAMPLE.com")
    assert result.code == 0
    assert "host web1.example.com" in result.stdout


def _written(tmp_path: Path, text: str) -> str:
    """The path of a model file holding `text`."""
    model = tmp_path / "model.yaml"
    model.write_text(text)
    return str(model)
