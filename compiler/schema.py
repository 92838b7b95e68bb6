"""Stage 2a: check the shape of the model against the published JSON Schema."""

from __future__ import annotations

import datetime
import difflib
import json
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from nftfwd.errors import ModelError, Problem
from nftfwd.schema_fast import Check, compile_check
from nftfwd.source import Document, KeyPath, format_path

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

SCHEMA_FILE = "nftfwd.schema.json"


def schema_text() -> str:
    return resources.files("nftfwd.schemas").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


@cache
def _schema() -> dict[str, Any]:
    """The schema as both checks see it: references inlined. (jsonschema resolves each
    `$ref` on every visit, which made validation of a 10,000-forward model a third
    slower.)"""
    schema = json.loads(schema_text())
    inlined: dict[str, Any] = _inline_refs(schema, schema.pop("$defs"))
    return inlined


@cache
def _fast_check() -> Check:
    return compile_check(_schema())[0]


@cache
def _validator() -> Draft202012Validator:
    # Imported here: jsonschema takes longer to import than a small model takes to
    # build, and only a model the fast check refused needs it.
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_schema())


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    """The schema with every `#/$defs/NAME` replaced by its definition (which keeps its
    own description, so messages read the same)."""
    if isinstance(node, list):
        return [_inline_refs(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    inlined = {key: _inline_refs(value, defs) for key, value in node.items() if key != "$ref"}
    if "$ref" in node:
        inlined |= _inline_refs(defs[node["$ref"].removeprefix("#/$defs/")], defs)
    return inlined


def validate_shape(doc: Document) -> None:
    """Raise ModelError with one problem per shape error, each at its key's line.

    A fast yes/no check compiled from the same schema (schema_fast.py) passes a valid
    model in a fraction of jsonschema's time. jsonschema stays the authority: it runs
    whenever the fast check says no, to find and explain the problems, and a model in
    which it finds none is valid.
    """
    try:
        valid = _fast_check()(doc.data)
    except Exception:  # data it cannot judge is for jsonschema to judge
        valid = False
    if valid:
        return
    problems: list[Problem] = []
    for error in _validator().iter_errors(doc.data):
        problems.extend(_problems(doc, error))
    if problems:
        raise ModelError(_unique(problems))


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: dict[tuple[str, str], Problem] = {}
    for problem in problems:
        seen.setdefault((problem.path, problem.message), problem)
    return list(seen.values())


def _problem(doc: Document, path: KeyPath, message: str) -> Problem:
    return Problem(doc.location(path), format_path(path), message)


def _problems(doc: Document, error: ValidationError) -> list[Problem]:
    path: KeyPath = tuple(error.absolute_path)
    # The keyword that refused (a str); older stubs (Debian 13's typeshed) call it a Validator.
    kind: Any = error.validator
    schema: Any = error.schema
    instance: Any = error.instance
    expected: Any = error.validator_value
    if kind == "additionalProperties":
        known = sorted(schema.get("properties", {}))
        return [
            _problem(doc, (*path, key), _unknown_key(key, known))
            for key in sorted(set(instance) - set(known))
        ]
    if kind == "required":
        missing = [k for k in expected if k not in instance]
        return [_problem(doc, path, f"missing key '{key}'; add it") for key in missing]
    if kind == "propertyNames":
        return []  # reported by the name check itself, at the name's own line
    if error.relative_schema_path and "propertyNames" in error.schema_path:
        return [
            _problem(
                doc,
                (*path, instance),
                f"'{instance}' is not a valid name here: expected {_describe(schema)}; rename it",
            )
        ]
    if kind == "type" and expected == "string":
        if path in doc.unquoted:
            return [
                _problem(
                    doc,
                    path,
                    "YAML read this as a number, not an address; "
                    'write it in quotes, for example "2001:db8::1"',
                )
            ]
        return [
            _problem(
                doc,
                path,
                f"must be {_describe(schema)} written as a quoted string, "
                f"not {_yaml_type(instance)}; write it in quotes",
            )
        ]
    if kind == "type":
        return [_problem(doc, path, f"must be {_describe(schema)}, not {_yaml_type(instance)}")]
    if kind == "const" and path == ("version",):
        return [
            _problem(
                doc,
                path,
                f"unsupported version {instance!r}; only version 1 exists, so write `version: 1`",
            )
        ]
    if kind == "anyOf":
        options = " or ".join(f"'{r['required'][0]}'" for r in expected)
        return [_problem(doc, path, f"needs {options}; add one")]
    if kind == "minProperties":
        return [_problem(doc, path, "must list at least one entry")]
    if kind == "minItems":
        return [_problem(doc, path, "must list at least one item")]
    if kind == "uniqueItems":
        return [_problem(doc, path, "lists the same item twice; remove the repeat")]
    return [
        _problem(doc, path, f"{_show(instance)} is not valid here: expected {_describe(schema)}")
    ]


def _unknown_key(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    if close:
        return f"unknown key '{key}'; did you mean '{close[0]}'?"
    return f"unknown key '{key}'; the keys allowed here are {', '.join(known)}"


def _describe(schema: Any) -> str:
    if isinstance(schema, dict):
        if "description" in schema:
            text = str(schema["description"]).rstrip(".")
            return text[:1].lower() + text[1:]
        if "enum" in schema:
            return " or ".join(str(v) for v in schema["enum"])
        if "type" in schema:
            return {
                "boolean": "true or false",
                "integer": "a whole number",
                "object": "a mapping of names",
                "array": "a list",
                "string": "a string",
            }.get(str(schema["type"]), str(schema["type"]))
    return "a different value"


def _yaml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "empty"
    return "a string"


def _show(value: Any) -> str:
    if isinstance(value, dict | list):
        return _yaml_type(value)
    if isinstance(value, datetime.date):  # YAML 1.1 reads an unquoted 2024-01-01 so
        return f"{value.isoformat()} (a date to YAML)"
    if isinstance(value, bytes):
        return "binary data"
    return json.dumps(value)
