"""A fast yes/no check of data against a JSON Schema, compiled into Python closures.

`validate_shape` asks this first. Only when it answers no does jsonschema, which stays the
authority, run to find and explain the problems; if jsonschema then finds none, the data
is valid. So this check may wrongly say no (that only costs the time of asking
jsonschema) but must never say yes to data jsonschema rejects: tests/source/test_schema_fast.py
holds it to agreeing with jsonschema on every model the tests know and on hundreds of
mutated ones.

It knows the keywords nftfwd's schema uses, each with the meaning jsonschema's
Draft 2020-12 validator gives it: `True` is not an integer but `1.0` is, `const: 1`
accepts `1.0` but not `True`, `pattern` is `re.search` (so `$` also matches before a
final newline: nftfwd's patterns end in `$(?!\n)`), `items` applies to every item.
Where it cannot be sure it answers no: a keyword it does not know (or a `$ref`: give it
the schema with references inlined, as jsonschema gets it), a `const` or `enum` value
that is a list or a mapping, `uniqueItems` over items that are not all strings or all
integers.

Closures rather than a general validator: the model of 10,000 guests is checked in a
few tens of milliseconds (jsonschema takes over a second), and compiling the schema
takes well under a millisecond, so nothing is generated or cached on disk.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]

# Keywords that only annotate: they never make an instance invalid.
_ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$anchor",
        "$comment",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
    }
)
_OBJECT = frozenset(
    {"properties", "additionalProperties", "propertyNames", "required", "minProperties"}
    | {"maxProperties"}
)
_ARRAY = frozenset({"items", "minItems", "maxItems", "uniqueItems"})
_STRING = frozenset({"pattern", "minLength", "maxLength"})
_NUMBER = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
_OTHER = frozenset({"type", "const", "enum", "anyOf", "oneOf", "allOf", "not"})
KNOWN = _ANNOTATIONS | _OBJECT | _ARRAY | _STRING | _NUMBER | _OTHER


def compile_check(schema: Any) -> tuple[Check, frozenset[str]]:
    """The check for `schema`, and the keywords it did not know (a schema node with one
    of them answers no to everything)."""
    unknown: set[str] = set()
    return _compile(schema, unknown), frozenset(unknown)


def _never(value: Any) -> bool:
    return False


def _always(value: Any) -> bool:
    return True


def _compile(schema: Any, unknown: set[str]) -> Check:
    if schema is True or schema == {}:
        return _always
    if schema is False:
        return _never
    if not isinstance(schema, dict):
        unknown.add(f"a schema that is {type(schema).__name__}")
        return _never
    strange = set(schema) - KNOWN
    if strange:
        unknown.update(strange)
        return _never
    checks: list[Check] = []
    kind = schema.get("type")
    # A lone `type` other than boolean or null is checked by that kind's own check.
    fused = kind if kind in ("object", "array", "string", "integer", "number") else None
    if "type" in schema and fused is None:
        checks.append(_type(kind, unknown))
    if fused == "object" or _OBJECT & schema.keys():
        checks.append(_object(schema, fused == "object", unknown))
    if fused == "array" or _ARRAY & schema.keys():
        checks.append(_array(schema, fused == "array", unknown))
    if fused == "string" or _STRING & schema.keys():
        checks.append(_string(schema, fused == "string"))
    if fused in ("integer", "number") or _NUMBER & schema.keys():
        checks.append(_number(schema, fused))
    if "const" in schema:
        checks.append(_one_of_values([schema["const"]], unknown))
    if "enum" in schema:
        checks.append(_one_of_values(schema["enum"], unknown))
    if "allOf" in schema:
        checks.extend(_compile(sub, unknown) for sub in schema["allOf"])
    if "anyOf" in schema:
        checks.append(_any_of([_compile(sub, unknown) for sub in schema["anyOf"]]))
    if "oneOf" in schema:
        checks.append(_exactly_one([_compile(sub, unknown) for sub in schema["oneOf"]]))
    if "not" in schema:
        checks.append(_negate(_compile(schema["not"], unknown)))
    return _all(checks)


# The loops below are spelled out (not all() or any() over a generator): they run once
# or more per value of a model, and a generator costs more than the checks themselves.


def _all(checks: list[Check]) -> Check:
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks

        def both(value: Any) -> bool:
            return first(value) and second(value)

        return both

    def every(value: Any) -> bool:
        for check in checks:  # noqa: SIM110
            if not check(value):
                return False
        return True

    return every


def _any_of(checks: list[Check]) -> Check:
    def any_of(value: Any) -> bool:
        for check in checks:  # noqa: SIM110
            if check(value):
                return True
        return False

    return any_of


def _exactly_one(checks: list[Check]) -> Check:
    def exactly_one(value: Any) -> bool:
        found = False
        for check in checks:
            if check(value):
                if found:
                    return False
                found = True
        return found

    return exactly_one


def _negate(check: Check) -> Check:
    def negated(value: Any) -> bool:
        return not check(value)

    return negated


def _is_integer(value: Any) -> bool:
    if type(value) is int:
        return True
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _is_number(value: Any) -> bool:
    if type(value) is int or type(value) is float:
        return True
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


_TYPES: dict[str, Check] = {
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
    "string": lambda value: isinstance(value, str),
    "boolean": lambda value: isinstance(value, bool),
    "null": lambda value: value is None,
    "integer": _is_integer,
    "number": _is_number,
}


def _type(kind: Any, unknown: set[str]) -> Check:
    kinds = [kind] if isinstance(kind, str) else kind
    if not isinstance(kinds, list) or not all(k in _TYPES for k in kinds):
        unknown.add(f"type {kind!r}")
        return _never
    return _any_of([_TYPES[k] for k in kinds]) if len(kinds) != 1 else _TYPES[kinds[0]]


def _object(schema: dict[str, Any], strict: bool, unknown: set[str]) -> Check:
    properties = {key: _compile(sub, unknown) for key, sub in schema.get("properties", {}).items()}
    extra = schema.get("additionalProperties", True)
    additional = None if extra is True else _compile(extra, unknown)
    names = _compile(schema["propertyNames"], unknown) if "propertyNames" in schema else None
    required = list(schema.get("required", []))
    least = schema.get("minProperties", 0)
    most = schema.get("maxProperties")
    each = properties or additional is not None or names is not None
    check_item = properties.get

    def check_object(value: Any) -> bool:
        if not isinstance(value, dict):
            return not strict
        if len(value) < least or (most is not None and len(value) > most):
            return False
        for key in required:
            if key not in value:
                return False
        if each:
            for key, item in value.items():
                if names is not None and not names(key):
                    return False
                check = check_item(key)
                if check is None:
                    if additional is not None and not additional(item):
                        return False
                elif not check(item):
                    return False
        return True

    return check_object


def _array(schema: dict[str, Any], strict: bool, unknown: set[str]) -> Check:
    items = _compile(schema["items"], unknown) if "items" in schema else None
    least = schema.get("minItems", 0)
    most = schema.get("maxItems")
    unique = bool(schema.get("uniqueItems", False))

    def check_array(value: Any) -> bool:
        if not isinstance(value, list):
            return not strict
        if len(value) < least or (most is not None and len(value) > most):
            return False
        if unique and not _unique(value):
            return False
        if items is not None:
            for item in value:
                if not items(item):
                    return False
        return True

    return check_array


def _unique(items: list[Any]) -> bool:
    """Whether jsonschema would call `items` unique; no where unsure (mixed items)."""
    if all(isinstance(item, str) for item in items) or all(
        isinstance(item, int) and not isinstance(item, bool) for item in items
    ):
        return len(set(items)) == len(items)
    return False


def _string(schema: dict[str, Any], strict: bool) -> Check:
    pattern = re.compile(schema["pattern"]).search if "pattern" in schema else None
    least = schema.get("minLength", 0)
    most = schema.get("maxLength")

    def check_string(value: Any) -> bool:
        if not isinstance(value, str):
            return not strict
        if len(value) < least or (most is not None and len(value) > most):
            return False
        return pattern is None or pattern(value) is not None

    return check_string


def _number(schema: dict[str, Any], kind: str | None) -> Check:
    """`minimum` and its kin, with `type: integer` or `type: number` when `kind` says so."""
    low: Any = schema.get("minimum")
    high: Any = schema.get("maximum")
    above: Any = schema.get("exclusiveMinimum")
    below: Any = schema.get("exclusiveMaximum")
    is_kind = {"integer": _is_integer, "number": _is_number}.get(kind or "")
    # The common case first: a plain int against both bounds (a port).
    plain = low is not None and high is not None and above is None and below is None

    def check_number(value: Any) -> bool:
        if plain and type(value) is int:
            return bool(low <= value <= high)
        if is_kind is not None and not is_kind(value):
            return False
        if not _is_number(value):
            return True
        return not (
            (low is not None and value < low)
            or (high is not None and value > high)
            or (above is not None and value <= above)
            or (below is not None and value >= below)
        )

    return check_number


def _one_of_values(allowed: Any, unknown: set[str]) -> Check:
    """`enum` (and `const`, as a one-value enum) with jsonschema's `equal`: strings
    compare as strings, `True` equals only `True`, `1.0` equals `1`."""
    if not isinstance(allowed, list) or not all(
        value is None or isinstance(value, str | bool | int | float) for value in allowed
    ):
        unknown.add("const or enum of lists or mappings")
        return _never
    singletons = [value for value in allowed if value is None or isinstance(value, bool)]
    others = [value for value in allowed if not (value is None or isinstance(value, bool))]

    def check_value(value: Any) -> bool:
        if value is None or isinstance(value, bool):
            return any(value is allowed for allowed in singletons)
        return any(value == allowed for allowed in others)

    return check_value
