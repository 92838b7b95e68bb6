"""Generated models: every valid one compiles to rules the kernel loads; every mutation of
one either compiles or is refused with exit 2 and a message, never a traceback."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_runner import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nftfwd.compiler import compile_host, load_model, render
from nftfwd.kernel.sandbox import kernel_check

PROTOS = st.sampled_from(["tcp", "udp", ["tcp", "udp"]])


@st.composite
def forwards(draw: st.DrawFn, ports: list[int], snat: bool, v6: bool) -> list[dict[str, Any]]:
    result = []
    for port in ports:
        forward: dict[str, Any] = {"port": port}
        if draw(st.booleans()):
            forward["to"] = draw(st.integers(1, 65535))
        if draw(st.booleans()):
            forward["port"] = f"{port}-{port + draw(st.integers(0, 3))}"
            if "to" in forward:
                first = min(forward["to"], 65000)
                forward["to"] = f"{first}-{first + int(forward['port'].split('-')[1]) - port}"
        forward["proto"] = draw(PROTOS)
        if draw(st.booleans()):
            forward["sources"] = ["198.51.100.0/24"] + (["2001:db8:100::/48"] if v6 else [])
        if snat:
            forward["snat"] = True
        result.append(forward)
    return result


@st.composite
def models(draw: st.DrawFn) -> dict[str, Any]:
    # Host ports are drawn apart (steps of 10) so generated forwards never collide.
    base = draw(st.integers(1, 6000))
    port_pool = iter(range(base, base + 10 * 40, 10))
    bridges: dict[str, Any] = {}
    for b in range(draw(st.integers(1, 3))):
        v6 = draw(st.booleans())
        bridge: dict[str, Any] = {"subnet": f"10.{b}.0.0/24", "guests": {}}
        if v6:
            bridge["subnet6"] = f"fd00:{b}::/64"
        if draw(st.booleans()):
            bridge["masquerade"] = False
        for g in range(draw(st.integers(0, 4))):
            guest: dict[str, Any] = {"address": f"10.{b}.0.{g + 2}"}
            if v6:
                guest["address6"] = f"fd00:{b}::{g + 2}"
            count = draw(st.integers(0, 4))
            ports = [next(port_pool) for _ in range(count)]
            guest["forwards"] = draw(forwards(ports, draw(st.booleans()), v6))
            bridge["guests"][f"g{b}{g}"] = guest
        bridges[f"br{b}"] = bridge
    host: dict[str, Any] = {"uplinks": ["eth0"], "bridges": bridges}
    if draw(st.booleans()):
        host["hairpin"] = False
    if draw(st.booleans()):
        host["addresses"] = ["203.0.113.1", "2001:db8::1"]
    return {"version": 1, "hosts": {"h1": host}}


def _write(tmp: Path, data: dict[str, Any]) -> Path:
    path = tmp / "model.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.kernel
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=models())
def test_valid_models_compile_to_rules_the_kernel_loads(
    tmp_path: Path, data: dict[str, Any]
) -> None:
    path = _write(tmp_path, data)
    result = run_cli("build", str(path))
    assert result.code == 0, result.stderr
    model = load_model(path)
    table = compile_host(model, model.hosts[0])
    kernel_check(render(table, "json"), "json")
    kernel_check(result.stdout, "nft")


def _mutations() -> st.SearchStrategy[tuple[str, Any]]:
    values = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 70000),
        st.text(max_size=12),
        st.lists(st.integers(0, 3), max_size=2),
        st.dictionaries(st.text(max_size=5), st.none(), max_size=2),
        st.sampled_from(
            ["eth*", "::1", "1.2.3.4/33", "10.0.0.0/8", "65535-1", "fwd", "a b", "2001:db8::1"]
        ),
    )
    return st.tuples(st.sampled_from(["set", "delete", "add"]), values)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=models(), choice=st.data())
def test_mutated_models_compile_or_fail_cleanly(
    tmp_path: Path, data: dict[str, Any], choice: st.DataObject
) -> None:
    mutated = copy.deepcopy(data)
    for _ in range(choice.draw(st.integers(1, 3))):
        paths = [p for p in _paths(mutated) if p]
        path = choice.draw(st.sampled_from(paths))
        kind, value = choice.draw(_mutations())
        parent = mutated
        for part in path[:-1]:
            parent = parent[part]
        if kind == "delete":
            del parent[path[-1]]
        elif kind == "add" and isinstance(parent, dict):
            parent[choice.draw(st.text(min_size=1, max_size=8))] = value
        else:
            parent[path[-1]] = value
    result = run_cli("build", str(_write(tmp_path, mutated)))
    assert result.code in (0, 2)
    assert "Traceback" not in result.stderr
    if result.code == 2:
        assert result.stderr.startswith("error: "), result.stderr
        assert result.stdout == ""
    else:
        assert result.stdout.startswith("#!/usr/sbin/nft -f")
