"""The fast shape check (nftfwd.schema_fast) against jsonschema, the authority.

validate_shape skips jsonschema whenever the fast check says yes, so the one dangerous
disagreement is the fast check accepting data jsonschema rejects. These tests hold the
two to the same answer on every model file the project has, on edge values at every
place of a model, and on hundreds of randomly mutated models; and they check that
validate_shape reports exactly what the jsonschema-only path reports.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, TEST_DATA
from jsonschema import Draft202012Validator

from nftfwd import schema
from nftfwd.errors import ModelError, NftfwdError, Problem
from nftfwd.schema_fast import compile_check
from nftfwd.source import Document, load_file, load_text

MODEL_FILES = sorted(
    [
        *(REPO / "tests" / "data").rglob("*.yaml"),
        *(REPO / "examples").rglob("*.yaml"),
    ]
)


def _fast(data: Any) -> bool:
    return schema._fast_check()(data)


def _authority(data: Any) -> bool:
    return schema._validator().is_valid(data)


def _reference_problems(doc: Document) -> list[Problem] | str:
    """What validate_shape reported before the fast check: jsonschema alone (or the
    exception it raised)."""
    problems: list[Problem] = []
    try:
        for error in schema._validator().iter_errors(doc.data):
            problems.extend(schema._problems(doc, error)[0])
    except Exception as err:
        return repr(err)
    return ModelError(schema._unique(problems)).problems if problems else []


def _shape_problems(doc: Document) -> list[Problem] | str:
    try:
        schema.validate_shape(doc)
    except ModelError as err:
        return list(err.problems)
    except Exception as err:
        return repr(err)
    return []


def _load(path: Path) -> Document | None:
    try:
        return load_file(path)
    except NftfwdError:  # not YAML, or a duplicate key: refused before the shape check
        return None


# The files the shape check sees (a file that is not YAML, or has a duplicate key, is
# refused before it).
SHAPE_CHECKED = [path for path in MODEL_FILES if _load(path) is not None]


def test_the_schema_uses_only_keywords_the_fast_check_knows() -> None:
    # An unknown keyword would make the fast check refuse every model: correct, but slow.
    _check, unknown = compile_check(schema._schema())
    assert unknown == frozenset()


def test_there_are_model_files_to_compare() -> None:
    assert len(SHAPE_CHECKED) >= 50
    # Refused by the reader (not YAML, a duplicate key, a tag, an alias bomb...): only
    # files made to be refused.
    assert all(p.parent.name == "bad" for p in set(MODEL_FILES) - set(SHAPE_CHECKED))
    assert any(path.parent.name == "scenarios" for path in MODEL_FILES)


@pytest.mark.parametrize(
    "path", SHAPE_CHECKED, ids=[f"{p.parent.name}/{p.stem}" for p in SHAPE_CHECKED]
)
def test_model_file_judged_alike(path: Path) -> None:
    doc = _load(path)
    assert doc is not None
    assert _fast(doc.data) == _authority(doc.data)
    assert _shape_problems(doc) == _reference_problems(doc)


# Values that sit on the edges of what the schema means: booleans and floats where
# integers belong, strings that almost match a pattern, repeated list items, YAML's
# dates and binaries.
EDGE_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    1.0,
    1.5,
    80.0,
    65535,
    65535.0,
    65536,
    10**20,
    float("nan"),
    float("inf"),
    "",
    "x",
    "1",
    "80",
    "080",
    "80-90",
    "80-",
    "80\n",
    "123456",
    "1-2-3",
    " 80",
    "tcp",
    "udp",
    "TCP",
    "tcp\n",
    "eth0",
    "eth0\n",
    ".",
    "..",
    "eth*",
    "a b",
    "a" * 15,
    "a" * 16,
    "a" * 253,
    "a" * 254,
    "_x",
    "10.0.0.2",
    "198.51.100.0/24",
    [],
    [1],
    [True],
    [1, True],
    [1, 1.0],
    ["tcp"],
    ["udp", "tcp"],
    ["tcp", "tcp"],
    ["tcp", "TCP"],
    ["eth0", "eth0"],
    ["eth0", "eth1"],
    ["198.51.100.0/24", "198.51.100.0/24"],
    [["tcp"]],
    {},
    {"address": "10.0.0.2"},
    {"port": 80},
    {"uplinks": ["eth0"]},
    {"subnet": "10.0.0.0/24"},
    datetime.date(2024, 1, 1),
    b"\x00",
]

NEAR_MISS_KEYS = ["adress", "ports", "proto ", "Uplinks", "subnet4", "1", "", "guest", "x y"]


def _base_models() -> list[Any]:
    """Every valid model the project has, as data."""
    bases = []
    for path in MODEL_FILES:
        doc = _load(path)
        if doc is not None and _authority(doc.data):
            bases.append(doc.data)
    return bases


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


def _parent(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        data = data[part]
    return data


def _set(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    _parent(data, path)[path[-1]] = value
    return data


def _richest_model() -> Any:
    return max(_base_models(), key=lambda data: len(list(_paths(data))))


def test_there_are_valid_models_to_mutate() -> None:
    assert len(_base_models()) >= 10


def test_edge_values_everywhere_judged_alike() -> None:
    base = _richest_model()
    disagreements = []
    checked = 0
    for path in list(_paths(base)):
        for value in EDGE_VALUES:
            data = _set(copy.deepcopy(base), path, copy.deepcopy(value))
            checked += 1
            if _fast(data) != _authority(data):
                disagreements.append((path, value))
    assert disagreements == []
    assert checked > 1000


def _mutate(rng: random.Random, data: Any) -> Any:
    paths = list(_paths(data))
    path = rng.choice(paths)
    node = data
    for part in path:
        node = node[part]
    kind = rng.choice(
        ["set", "set", "set", "delete", "add", "rename", "repeat", "empty", "wrap", "unwrap"]
    )
    if kind == "set":
        return _set(data, path, copy.deepcopy(rng.choice(EDGE_VALUES)))
    if kind == "delete" and path:
        del _parent(data, path)[path[-1]]
        return data
    if kind == "add" and isinstance(node, dict):
        node[rng.choice(NEAR_MISS_KEYS)] = copy.deepcopy(rng.choice(EDGE_VALUES))
        return data
    if kind == "rename" and path and isinstance(path[-1], str):
        parent = _parent(data, path)
        new = rng.choice([*NEAR_MISS_KEYS, "..", ".", "a" * 254, "g\n", "ok-name_1.x"])
        parent[new] = parent.pop(path[-1])
        return data
    if kind == "repeat" and isinstance(node, list) and node:
        node.append(copy.deepcopy(rng.choice(node)))
        return data
    if kind == "empty" and isinstance(node, dict | list):
        node.clear()
        return data
    if kind == "wrap":
        return _set(data, path, [node])
    if kind == "unwrap" and isinstance(node, list) and node:
        return _set(data, path, node[0])
    return data


def _variants(count: int, seed: int) -> list[Any]:
    rng = random.Random(seed)
    bases = _base_models()
    variants = []
    for _ in range(count):
        data = copy.deepcopy(rng.choice(bases))
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            data = _mutate(rng, data)
        variants.append(data)
    return variants


def test_mutated_models_judged_alike() -> None:
    variants = _variants(600, seed=20240601)
    verdicts = [(_fast(data), _authority(data)) for data in variants]
    disagreements = [
        (data, fast)
        for data, (fast, authority) in zip(variants, verdicts, strict=True)
        if fast != authority
    ]
    assert disagreements == []
    accepted = sum(authority for _, authority in verdicts)
    # Both answers are exercised, not just refusals.
    assert 60 <= accepted <= len(variants) - 60, accepted


def _as_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def test_mutated_models_read_from_yaml_get_the_same_problems() -> None:
    # Through the loader, as a user's file would come: YAML's own types, and every
    # problem's message and line the same as with jsonschema alone.
    compared = 0
    for data in _variants(200, seed=7):
        try:
            doc = load_text(_as_yaml(data), "mutated.yaml")
        except NftfwdError:
            continue
        assert _fast(doc.data) == _authority(doc.data), _as_yaml(data)
        assert _shape_problems(doc) == _reference_problems(doc), _as_yaml(data)
        compared += 1
    assert compared >= 150


@pytest.mark.parametrize(
    "text",
    [
        "port: 80.0",
        "port: 1.0e+2",
        "port: !!float 80",
        "port: true",
        "port: yes",
        "port: 0x50",
        "port: 0o120",
        "port: 1_000",
        "port: 1:20",
        "port: .nan",
        "port: .inf",
        "port: 2024-01-01",
        "port: !!binary AAAA",
        "port: '80'",
        'port: "80\\n"',
        "port: '80-90'",
        "port: '1-2-3'",
        "port: 80, proto: [tcp, tcp]",
        "port: 80, proto: [tcp, udp]",
        "port: 80, proto: []",
        "port: 80, proto: TCP",
        "port: 80, to: 65536",
        "port: 80, to: 0",
        "port: 80, sources: []",
        "port: 80, snat: 1",
        "port: 80, snat: on",
    ],
)
def test_yaml_scalars_judged_alike(text: str) -> None:
    model = (
        "version: 1\nhosts:\n  h1:\n    uplinks: [eth0]\n    bridges:\n      br0:\n"
        "        subnet: 10.0.0.0/24\n        guests:\n          g1:\n"
        "            address: 10.0.0.2\n            forwards:\n"
        f"              - {{{text}}}\n"
    )
    doc = load_text(model, "scalar.yaml")
    assert _fast(doc.data) == _authority(doc.data)
    assert _shape_problems(doc) == _reference_problems(doc)


@pytest.mark.parametrize(
    "value",
    ["version: 1.0", "version: true", "version: '1'", "version: 2", "version: [1]"],
)
def test_version_judged_alike(value: str) -> None:
    doc = load_text(f"{value}\nhosts:\n  h1:\n    uplinks: [eth0]\n", "version.yaml")
    assert _fast(doc.data) == _authority(doc.data)
    assert _shape_problems(doc) == _reference_problems(doc)


# Small schemas, one keyword or two each, against many values: the fast check must never
# accept what jsonschema rejects, and is exact except where it is documented to refuse
# when unsure.
SMALL_SCHEMAS: list[Any] = [
    {"type": "integer"},
    {"type": "number"},
    {"type": "string"},
    {"type": "boolean"},
    {"type": "null"},
    {"type": "array"},
    {"type": "object"},
    {"type": ["string", "null"]},
    {"type": "integer", "minimum": 1, "maximum": 65535},
    {"minimum": 1},
    {"exclusiveMinimum": 0, "exclusiveMaximum": 10},
    {"const": 1},
    {"const": True},
    {"const": None},
    {"const": "tcp"},
    {"enum": ["tcp", "udp"]},
    {"enum": [0, False, None]},
    {"pattern": "^[0-9]{1,5}(-[0-9]{1,5})?$"},
    {"type": "string", "maxLength": 3, "minLength": 1},
    {"not": {"enum": [".", ".."]}},
    {"uniqueItems": True},
    {"minItems": 1, "maxItems": 2},
    {"items": {"type": "string"}},
    {"items": False},
    {"required": ["a"]},
    {"properties": {"a": {"type": "integer"}}, "additionalProperties": False},
    {"additionalProperties": {"type": "string"}},
    {"propertyNames": {"pattern": "^[a-z]+$"}},
    {"minProperties": 1, "maxProperties": 1},
    {"anyOf": [{"required": ["a"]}, {"required": ["b"]}]},
    {"oneOf": [{"type": "integer"}, {"type": "number"}]},
    {"allOf": [{"type": "string"}, {"pattern": "a"}]},
    True,
    False,
    {},
    {"format": "ipv4"},
    {"$ref": "#/$defs/x", "$defs": {"x": {}}},
    {"const": [1]},
]
SMALL_VALUES: list[Any] = [
    *EDGE_VALUES,
    {"a": 1},
    {"a": 1.0},
    {"a": True},
    {"b": 1},
    {"a": 1, "b": 2},
    {"A": "x"},
    ["a", "a"],
    [0, False],
    [1, 1],
    [1.0, 1],
    [None, None],
    [[1], [True]],
    [{"a": 1}, {"a": 1}],
    "aaa",
    "aaaa",
]


@pytest.mark.parametrize("small", SMALL_SCHEMAS, ids=[json.dumps(s) for s in SMALL_SCHEMAS])
def test_small_schemas_never_accept_what_jsonschema_rejects(small: Any) -> None:
    check, unknown = compile_check(small)
    validator = Draft202012Validator(small)
    # By design it refuses when unsure: unknown keywords, uniqueItems over mixed items.
    exact = not unknown and small != {"uniqueItems": True}
    for value in SMALL_VALUES:
        fast, authority = check(value), validator.is_valid(value)
        assert not fast or authority, value
        if exact:
            assert fast == authority, value


def test_unknown_keywords_are_reported_and_refuse() -> None:
    check, unknown = compile_check({"type": "object", "properties": {"a": {"format": "ipv4"}}})
    assert unknown == {"format"}
    assert check({"b": 1})
    assert not check({"a": "10.0.0.1"})


def test_a_valid_model_is_built_without_importing_jsonschema(tmp_path: Path) -> None:
    # jsonschema's import costs more than building a small model: only a model the fast
    # check refuses may load it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    for path, imported in (
        (REPO / "examples" / "homelab.yaml", False),
        (TEST_DATA / "bad" / "unknown-key.yaml", True),
    ):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "nftfwd", "build", str(path)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        assert result.returncode == (2 if imported else 0), result.stderr[-2000:]
        modules = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
        assert ("jsonschema" in modules) == imported, result.stderr[-2000:]
