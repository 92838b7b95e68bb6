"""Stage 2a: check the shape of the model against the published JSON Schema."""

from __future__ import annotations

import datetime
import difflib
import json
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from nftfwd.errors import MAX_ECHO, MAX_REPORTED, Location, ModelError, Problem, echo
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
    data, more = _without_excess_keys(_schema(), doc.data)
    for error in _validator().iter_errors(data):
        found, uncounted = _problems(doc, error)
        problems.extend(found)
        more += uncounted
    if problems:
        raise ModelError(_unique(problems), more)


def _without_excess_keys(schema: Any, data: Any) -> tuple[Any, int]:
    """`data` without the unknown keys of each mapping beyond its first MAX_REPORTED,
    and how many were left out. They could only be listed, and jsonschema lists the
    unknown keys of a mapping in one error, sorting them all: seconds for a file of
    junk keys."""
    if isinstance(data, dict) and isinstance(schema, dict):
        known = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        kept: dict[str, Any] = {}
        unknown = omitted = 0
        for key, value in data.items():
            sub = known.get(key)
            if sub is None and extra is False:
                unknown += 1
                if unknown > MAX_REPORTED:
                    omitted += 1
                    continue
            elif sub is None and isinstance(extra, dict):
                sub = extra
            if sub is not None:
                value, left_out = _without_excess_keys(sub, value)
                omitted += left_out
            kept[key] = value
        return kept, omitted
    if (
        isinstance(data, list)
        and isinstance(schema, dict)
        and isinstance(schema.get("items"), dict)
    ):
        items = [_without_excess_keys(schema["items"], item) for item in data]
        return [item for item, _ in items], sum(left_out for _, left_out in items)
    return data, 0


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: dict[tuple[str, str], Problem] = {}
    for problem in problems:
        seen.setdefault((problem.path, problem.message), problem)
    return list(seen.values())


def _problem(doc: Document, path: KeyPath, message: str) -> Problem:
    # An empty file has no location at all: its start, then.
    where = doc.location(path) or Location(doc.path, 1, 1)
    return Problem(where, format_path(path), message)


def _problems(doc: Document, error: ValidationError) -> tuple[list[Problem], int]:
    """The problems `error` stands for, and how many more it stands for that are not
    worth spelling out (beyond what a report shows)."""
    path: KeyPath = tuple(error.absolute_path)
    # The keyword that refused (a str); older stubs (Debian 13's typeshed) call it a Validator.
    keyword: Any = error.validator
    if keyword == "additionalProperties":
        # One error for all the unknown keys of a mapping, which may be millions: the
        # first ones in the file are spelled out, the others counted.
        schema: Any = error.schema
        instance: Any = error.instance
        known = sorted(schema.get("properties", {}))
        unknown = [key for key in instance if key not in known]
        return [
            _problem(doc, (*path, key), _unknown_key(key, known)) for key in unknown[:MAX_REPORTED]
        ], max(0, len(unknown) - MAX_REPORTED)
    return _explained(doc, path, error), 0


def _explained(doc: Document, path: KeyPath, error: ValidationError) -> list[Problem]:
    # The keyword that refused (a str); older stubs (Debian 13's typeshed) call it a Validator.
    kind: Any = error.validator
    schema: Any = error.schema
    instance: Any = error.instance
    expected: Any = error.validator_value
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
                f"'{echo(instance)}' is not a valid name here: expected {_describe(schema)}; "
                "rename it",
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
    shown = _show(instance)
    if path in doc.written:
        shown = f"{echo(doc.written[path])} (YAML 1.1 reads {shown})"
    return [_problem(doc, path, f"{shown} is not valid here: expected {_describe(schema)}")]


def _unknown_key(key: str, known: list[str]) -> str:
    # A key far longer than any known one is like none of them (and costly to compare).
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.5) if len(key) < 64 else []
    if close:
        return f"unknown key '{echo(key)}'; did you mean '{close[0]}'?"
    return f"unknown key '{echo(key)}'; the keys allowed here are {', '.join(known)}"


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
    if isinstance(value, str):  # json.dumps escapes control characters
        return json.dumps(value[:MAX_ECHO]) + ("..." if len(value) > MAX_ECHO else "")
    return echo(json.dumps(value))
