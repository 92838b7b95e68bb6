"""The event-stream loader in nftfwd.source gives exactly what the node-tree loader gave.

nftfwd.source used to compose a node tree (`yaml.compose`) and construct each scalar
with SafeLoader; it now builds the data from libyaml's events, which is several times
faster. The old code is kept here, verbatim, as the oracle: for every model file in the
repository and the shared scenarios, tricky snippets, truncated files and generated
documents, both must give the same data (types included), the same locations (order
included), the same unquoted set, or the same error.
"""

from __future__ import annotations

import itertools
import runpy
from typing import Any

import pytest
import yaml
from conftest import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nftfwd import source
from nftfwd.errors import Location, ModelError, Problem
from nftfwd.source import KeyPath, format_path, load_text

# ---- the oracle: nftfwd.source as it was before the event-stream loader ----------------

_OLD_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def old_load_text(text: str, file: str) -> tuple[Any, dict[KeyPath, Location], frozenset[KeyPath]]:
    try:
        root = yaml.compose(text, Loader=_OLD_LOADER)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = Location(file, mark.line + 1, mark.column + 1) if mark else None
        what = err.problem or err.context or "invalid YAML"
        raise ModelError(
            [Problem(where, "", f"this is not valid YAML: {what}; fix the syntax here")]
        ) from None
    except yaml.YAMLError as err:
        raise ModelError(
            [Problem(Location(file, 1, 1), "", f"this is not valid YAML: {err}")]
        ) from None
    builder = _OldBuilder(file)
    data = builder.build(root, ()) if root is not None else None
    if builder.problems:
        raise ModelError(builder.problems)
    return data, builder.locations, frozenset(builder.unquoted)


class _OldBuilder:
    """Turns a composed YAML node tree into plain data plus a location table."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.locations: dict[KeyPath, Location] = {}
        self.unquoted: set[KeyPath] = set()
        self.problems: list[Problem] = []
        self._constructor = yaml.SafeLoader("")

    def _loc(self, node: yaml.Node) -> Location:
        return Location(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self.locations[path] = self._loc(node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.ScalarNode):
            value = self._constructor.construct_object(node, deep=True)
            if not isinstance(value, str) and not node.style and ":" in node.value:
                self.unquoted.add(path)
            return value
        return None

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_seen: dict[str, Location] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(
                    Problem(self._loc(key_node), format_path(path), "a key must be a plain name")
                )
                continue
            key = key_node.value
            if key in first_seen:
                self.problems.append(
                    Problem(
                        self._loc(key_node),
                        format_path((*path, key)),
                        f"duplicate key '{key}' (first written at line {first_seen[key].line}); "
                        "each name may appear only once, so remove or rename one of them",
                    )
                )
                continue
            first_seen[key] = self._loc(key_node)
            result[key] = self.build(value_node, (*path, key))
            self.locations[(*path, key)] = self._loc(key_node)
        return result


# ---- comparing outcomes ----------------------------------------------------------------


def typed(value: Any) -> Any:
    """`value` with every type spelled out: True is not 1, 1.0 is not 1, nan is nan."""
    if isinstance(value, dict):
        return ("dict", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    return (type(value).__name__, repr(value))


def outcome_of(load: Any, text: str) -> Any:
    try:
        data, locations, unquoted = load(text)
    except RecursionError:
        # A recursive alias: the old builder recursed forever; so must the new one.
        return ("RecursionError",)
    except ModelError as err:
        return ("ModelError", str(err), err.problems)
    except Exception as err:  # what escaped the old loader (a ConstructorError) must still
        return (type(err).__name__, str(err))
    return ("ok", typed(data), list(locations.items()), sorted(map(repr, unquoted)))


def old(text: str) -> Any:
    return old_load_text(text, "m.yaml")


def new(text: str) -> Any:
    doc = load_text(text, "m.yaml")
    assert doc.path == "m.yaml"
    return doc.data, doc.locations, doc.unquoted


# The one way the new loader may differ from the oracle: the bounded reader refuses,
# located, what the old one crashed on (a ConstructorError, a ValueError, endless
# recursion on a recursive alias), tags it never looked at (on collections), nesting
# deeper than MAX_DEPTH, and control characters it placed at 1:1. What it loads, it
# loads the same.
BOUNDED_READER_REFUSALS = (
    "unknown tag",
    "as its tag",
    "but it is not a valid one",
    "a special meaning",
    "so it never ends",
    "far too long",
    "this is not valid YAML: the character",
    "collections nest deeper than",
    "an alias bomb",
)


STOPS = ("collections nest deeper than", "an alias bomb", "so it never ends")


def _refused_by_the_bounded_reader(problem: Problem) -> bool:
    return problem.location is not None and any(
        marker in problem.message for marker in BOUNDED_READER_REFUSALS
    )


def _escaped(outcome: Any) -> Any:
    """An outcome with control characters in messages escaped, as the new loader
    escapes them (nftfwd.errors.echo): a key `"h\n"` is shown `h\\n`."""

    def text(value: str) -> str:
        return "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in value)

    def line(value: str) -> str:
        return "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)

    if outcome[0] != "ModelError":
        return outcome
    problems = [Problem(p.location, line(p.path), line(p.message)) for p in outcome[2]]
    return ("ModelError", "\n".join(map(str, problems)), problems)


def assert_same(text: str) -> Any:
    expected = _escaped(outcome_of(old, text))
    got = outcome_of(new, text)
    if got != expected:
        assert got[0] == "ModelError", (text, expected, got)
        if expected[0] not in ("ok", "ModelError"):
            # The old loader crashed there; the new one goes on, and finds more.
            assert any(map(_refused_by_the_bounded_reader, got[2])), (text, expected, got)
            return expected
        new_problems = [p for p in got[2] if p not in (expected[2] if len(expected) > 2 else [])]
        assert new_problems, (text, expected, got)
        assert all(map(_refused_by_the_bounded_reader, new_problems)), (text, expected, got)
        if expected[0] == "ModelError":  # the same problems, plus the bounded reader's
            # (which stops reading at a nesting too deep or an alias that does not end:
            # problems after that point are not found).
            stops = [p.location for p in got[2] if any(s in p.message for s in STOPS)]
            end = min(stops) if stops else None
            wanted = [
                p for p in expected[2] if end is None or p.location is None or p.location < end
            ]
            kept = [p for p in wanted if p in got[2] or "not valid YAML" in p.message]
            assert kept == wanted, (text, expected, got)
    return expected


# ---- inputs ----------------------------------------------------------------------------


def model_texts() -> list[tuple[str, str]]:
    roots = [REPO / "tests" / "data", REPO / "examples", REPO / "golden"]
    files = sorted(
        path
        for root in roots
        if root.is_dir()
        for path in itertools.chain(root.rglob("*.yaml"), root.rglob("*.yml"))
    )
    # Not the alias bomb: the old loader expands it without bound (gigabytes), which is
    # what the new one refuses (tests/semantic/test_hostile_input.py).
    texts = [
        (str(path.relative_to(path.parents[1])), path.read_text("utf-8"))
        for path in files
        if path.name != "alias-bomb.yaml"
    ]
    # The benchmark's model, in small.
    model_yaml = runpy.run_path(str(REPO / "bench" / "models.py"))["model_yaml"]
    texts.append(("bench model_yaml(300)", model_yaml(300)))
    return texts


MODELS = model_texts()

SNIPPETS = [
    # Empty documents, comments only, document markers, several documents.
    "",
    "\n",
    "# only a comment\n",
    "---\n",
    "--- \n...\n",
    "...\n",
    "---\na: 1\n...\n",
    "%YAML 1.1\n---\na: 1\n",
    "%TAG !e! tag:example.com,2000:\n---\na: !e!x 1\n",
    "a: 1\n---\nb: 2\n",
    "a: 1\n---\nb: [\n",
    "---\n---\n",
    "a: 1\n...\n---\n",
    "--- 5\n",
    "--- ~\n",
    "--- !!str\n",
    "- 1\n- 2\n",
    "just a string\n",
    "80\n",
    # Sexagesimal and other YAML 1.1 integers.
    "a: 8080:80\nb: 1:2:3:4:5:6:7:8\nc: 190:20:30\nd: '8080:80'\ne: 1:60\n",
    "a: -1:30\nb: +1:30\nc: 1:30.5\nd: 0:30\ne: 1_0:30\n",
    "a: 0x10\nb: 0o17\nc: 010\nd: 0b101\ne: 1_000\nf: 0\ng: -0\nh: +12\ni: 00\nj: 09\n",
    "a: 0x_1f\nb: 0X10\nc: 0b2\nd: 0xg\ne: 0o8\nf: 1__0\ng: _1\nh: 1_\n",
    "a: 12345678901234567890123\nb: 007\nc: 0_7\nd: '10'\ne: \"10\"\n",
    "a: ١٢٣\nb: ²\nc: 1٢\n",  # non-ASCII digits stay strings
    # Floats.
    "a: 1e3\nb: 1.0e3\nc: 1.0e+3\nd: 1.5\ne: .5\nf: 1.\ng: -.inf\nh: .inf\ni: .NaN\nj: .nan\n",
    "a: +.Inf\nb: .INF\nc: 6.8523015e+5\nd: 685.230_15e+03\ne: 1_0.5\nf: -1.5\ng: 1e-3\n",
    "a: 0.\nb: -0.0\nc: 1.2.3\nd: 10.0.0.1\ne: 1:20.5\nf: .\ng: ..\n",
    # Booleans and nulls.
    "a: yes\nb: No\nc: on\nd: OFF\ne: y\nf: n\ng: Y\nh: N\ni: true\nj: False\nk: TRUE\n",
    "a: yEs\nb: tRUE\nc: nO\nd: oN\n",
    "a: ~\nb: null\nc: Null\nd: NULL\ne:\nf: nULL\ng: ''\nh: \"\"\ni: '~'\n",
    "[~, null, , yes, 'yes']\n",
    "{a, b: , c: ~}\n",
    # Timestamps.
    "a: 2001-12-14\nb: 2001-12-14t21:59:43.10-05:00\nc: 2001-12-14 21:59:43.10 -5\n"
    "d: 2001-12-15T02:59:43.1Z\ne: 2002-12-14\nf: 2001-1-1\ng: 2001-13-40\n",
    "a: 2001-12-14 21:59:43.1234567\nb: 1999-01-01T00:00:00+01:30\n",
    # Quoted, tagged and explicit-typed scalars.
    'a: \'80\'\nb: "80"\nc: !!str 80\nd: !!int "80"\ne: !!float 1\nf: !!bool yes\n',
    "a: !!null ''\nb: !!str\nc: !!binary aGVsbG8=\nd: !!timestamp 2001-12-14\n",
    "a: ! 80\nb: ! '80'\nc: !<tag:yaml.org,2002:int> 42\nd: !!str yes\ne: !!int 0x1f\n",
    # Quoted and block text that a tag makes a number: not "unquoted".
    "a: !!int \"1:30\"\nb: !!timestamp '2001-12-14 21:59:43.10 -5'\nc: !!float |\n  1:30.5\n",
    "a: !!int abc\n",
    "a: !!float abc\n",
    "a: !!bool maybe\n",
    "a: !!map x\n",
    "a: !!seq x\n",
    "a: !!set x\n",
    "a: !!omap x\n",
    "a: !!pairs x\n",
    "a: !foo bar\n",
    "a: !!python/tuple x\n",
    "a: !!binary '@@@'\n",
    "a: !!timestamp yesterday\n",
    "a: =\n",
    "a: <<\n",
    "a: '<<'\nb: '='\n",
    "a: !!merge x\n",
    "a: !!value x\n",
    "a: !!set {x, y}\nb: !!omap [{x: 1}, {y: 2}]\nc: !!pairs [{x: 1}]\nd: !foo {x: 1}\n",
    "a: !!str [1]\nb: !!map [1]\nc: !!int {a: 1}\n",
    "!foo\na: 1\n",
    # Block and multi-line scalars.
    "a: |\n  line 1\n  line 2\nb: >\n  folded\n  text\nc: |-\n  80\nd: >+\n  x\n\n",
    "a: |\n  1:2\nb: >\n  8080:80\nc: plain\n  continued\nd: 'quoted\n  continued'\n",
    "a: \"double \\\"escapes\\\" \\n \\t \\u263A\"\nb: 'it''s'\n",
    "a: |2\n   indented\nb: >1\n  x\n",
    # Anchors, aliases, merge keys.
    "a: &x 1\nb: *x\n",
    "a: &x 8080:80\nb: *x\nc: [*x, *x]\n",
    "a: &x {p: 1, q: [1, 2]}\nb: *x\nc: [*x]\n",
    "base: &b {x: 1}\nc:\n  <<: *b\n  y: 2\n",
    "base: &b {x: 1}\nc:\n  <<: [*b]\n  x: 2\n",
    "a: &x\nb: *x\n",
    "&r\na: 1\n",
    "&k a: 1\n*k : 2\n",
    "&k a: 1\nb: {*k : 2}\n",
    "x: &m {a: 1}\n*m : 2\n",
    "a: *x\n",
    "a: &x 1\nb: &x 2\n",
    "a: &x 1\nb: *y\n",
    "a: &x 2001-12-14\nb: *x\nc: &y 1.5\nd: *y\n",
    "a: &x !!int abc\n",
    "a: &x !!int abc\nb: *x\n",
    "a: &x {b: *x}\n",
    "a: &x [*x]\n",
    "a: &x [1, [2, *x]]\n",
    "a: 1\na: &x {b: *x}\n",
    "a: &x {b: 1}\nc: {*x : 2}\n",
    "a: &x [1]\nb: {*x : 2}\n",
    "a: 1\na: &x {b: 1}\nc: *x\n",
    "? [a]\n: &x 1\nb: *x\n",
    "a: [&x 1, *x]\nb: &y\n  - *x\n  - *y\n",
    "a: &x {b: 1, b: 2}\nc: *x\nd: [*x]\n",
    "a: &x [{? [k] : 1}]\nb: *x\n",
    "a: &v x\n*v : 1\n",
    # Duplicate keys, at every depth and with every kind of key text.
    "a: 1\na: 2\n",
    "a: 1\na: 2\na: 3\n",
    "a: 1\n'a': 2\n\"a\": 3\n",
    "a: {b: 1, b: 2}\n",
    "a:\n  - {x: 1, x: 2}\n  - {y: 1, y: {z: 1, z: 2}}\n",
    "1: a\n'1': b\n",
    "a: 1\na: {b: !foo x}\n",
    "a: !!int x\na: 1\n",
    "a: 1\na: !!int x\n",
    "a: 1\n!!str a: 2\n",
    "a: {b: 1, b: 2}\na: 3\n",
    "a: 1\nb: [\na: 1\n",
    # Keys that look like numbers, booleans, nulls; tagged keys; odd keys.
    "1: a\nyes: b\n1e3: c\n~: d\nnull: e\n0x10: f\n1:30: g\n2001-12-14: h\n",
    "'': 1\n? \n: 2\n",
    "!!int 5: a\n!!str 6: b\n!foo 7: c\n",
    "? |\n  block key\n: 1\n",
    "? a\n? b\n: 2\n",
    "<<: {a: 1}\n",
    "=: 1\n",
    # Non-scalar keys.
    "[a]: 1\n",
    "? {a: 1}\n: 2\n",
    "? [a, b]\n: 1\nc: 2\n",
    "{[a]: 1, {b: 2}: 3, c: 4}\n",
    "x:\n  ? - a\n  : 1\n  ? {b: 1}\n  : 2\n",
    "? [a]\n: !!int x\n",
    "? [!!int x]\n: 1\n",
    "[a]: 1\n[a]: 2\n",
    "? [a]\n: 1\na: 2\na: 3\n",
    # Flow and block styles, nested.
    "a: [1, [2, [3, {b: [4, {c: 5}]}]]]\n",
    "- - - 1\n    - 2\n  - 3\n- 4\n",
    "a:\n- 1\n- b:\n  - c\n",
    "{a: 1, b: [x, y], c: {d: e}}\n",
    "[a, {b: c}, [d], , ]\n",
    "a: [\n  1,\n  2,\n]\n",
    "- a: 1\n  b: 2\n- c: 3\n",
    "a: {b: }\nc: [ ]\nd: { }\n",
    "a: [b: c, d: e]\n",
    # Invalid YAML of many kinds.
    "a: [1, 2\n",
    "a: {b: 1\n",
    "a: b: c\n",
    "a:\n  - 1\n  b: 2\n",
    "\ta: 1\n",
    "a: 'unterminated\n",
    'a: "unterminated\n',
    "a: @x\n",
    "a: `x\n",
    "a: b\n\x01",
    "a: !<> x\n",
    "a: &\n",
    "a: *\n",
    "%FOO bar\n---\na: 1\n",
    "%YAML 1.1\n%YAML 1.1\n---\n",
    "%YAML 2.0\n---\na: 1\n",
    "a: !e!x 1\n",
    "--- a\n--- b\n",
    "a: 1\n b: 2\n",
    "- 1\na: 2\n",
    "a: 1\n---\na: 1\na: 2\n",
    "a: *x\nb: [\n",
    "a: &x 1\nb: &x 2\nc: [\n",
    "a: !!int x\nb: [\n",
    "a: 1\na: 2\nb: [\n",
    "? [a]\n: 1\nb: [\n",
    'a: "\\q"\n',
    'a: "\\x4"\n',
    "a: |0\n  x\n",
    "a: >\n x\n  y\nb\n",
    "\ufeffa: 1\n",
    "a: \ud800\n",
    # Unicode, long text, whitespace.
    "ключ: значение\n'ü': 'ö'\n😀: 😀\n",
    "a:    spaced    \nb: 'trailing '\n",
    "a: x # comment\nb: 'x # not a comment'\nc: x#y\n",
    "a: -\nb: - \nc: '-'\n",
]


# ---- the tests -------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "text"), MODELS, ids=[name for name, _ in MODELS])
def test_model_files_load_the_same(name: str, text: str) -> None:
    expected = assert_same(text)
    if "/bad/" not in f"/{name}":
        assert expected[0] in ("ok", "ModelError"), expected


def test_there_are_model_files() -> None:
    assert len(MODELS) >= 10


@pytest.mark.parametrize("text", SNIPPETS)
def test_snippets_load_the_same(text: str) -> None:
    assert_same(text)


def test_the_snippets_reach_every_outcome() -> None:
    kinds = {outcome_of(old, text)[0] for text in SNIPPETS}
    assert {"ok", "ModelError", "ConstructorError", "RecursionError"} <= kinds


@pytest.mark.parametrize(("name", "text"), MODELS, ids=[name for name, _ in MODELS])
def test_truncated_model_files_load_the_same(name: str, text: str) -> None:
    # Cut anywhere: mid-key, mid-value, mid-flow-collection, between lines.
    step = max(1, len(text) // 60)
    for end in range(0, len(text), step):
        assert_same(text[:end])


@pytest.mark.parametrize(("name", "text"), MODELS, ids=[name for name, _ in MODELS])
def test_model_files_with_lines_repeated_load_the_same(name: str, text: str) -> None:
    # Repeating a line makes duplicate keys (or, at times, invalid YAML) at every depth.
    lines = text.splitlines(keepends=True)
    for i in range(0, len(lines), max(1, len(lines) // 25)):
        assert_same("".join([*lines[: i + 1], lines[i], *lines[i + 1 :]]))


SCALARS = [
    "1", "0", "01", "10", "-1", "+1", "1_0", "0x1F", "0o17", "0b11", "1:30", "8080:80",
    "1e3", "1.5", ".5", ".inf", "-.inf", ".nan", "yes", "no", "On", "off", "y", "N",
    "true", "False", "~", "null", "", "2001-12-14", "2001-12-14 21:59:43.10 -5", "=", "<<",
    "'80'", '"yes"', "!!str 80", '!!int "80"', "! 80", "!!float 1", "!!binary aGk=",
    "10.0.0.1", "fe80::1", "1:2:3:4:5:6:7:8", "eth0", "a b", "-", "|\n  x", ">\n  1:2",
    "!!int x", "!x y", "&A 1", "&B yes", "*A", "*B", "*C", "&C [1, *A]", "&D {k: *B}",
]  # fmt: skip
KEYS = ["a", "b", "1", "yes", "~", "'a'", "!!str b", "&K c", "*K", "[a]", "{a: 1}", "<<", "1:30"]


@st.composite
def documents(draw: st.DrawFn) -> str:
    """Block mappings and sequences of tricky keys and scalars, with anchors and aliases."""

    def node(depth: int, indent: int) -> str:
        kinds = ["scalar", "scalar", "map", "seq", "flow"] if depth else ["scalar"]
        kind = draw(st.sampled_from(kinds))
        pad = " " * indent
        if kind == "scalar":
            return " " + draw(st.sampled_from(SCALARS)).replace("\n", "\n" + pad) + "\n"
        if kind == "flow":
            items = draw(st.lists(st.sampled_from(SCALARS[:40]), max_size=3))
            return " [" + ", ".join(items) + "]\n"
        size = draw(st.integers(0, 3))
        out = [draw(st.sampled_from(["", " &M", " &N"])) + "\n"]
        for _ in range(size):
            if kind == "map":
                out.append(f"{pad}{draw(st.sampled_from(KEYS))}:{node(depth - 1, indent + 2)}")
            else:
                out.append(f"{pad}-{node(depth - 1, indent + 2)}")
        return "".join(out) if size else " {}\n"

    more = draw(st.lists(st.sampled_from(KEYS), max_size=3))
    return "top:" + node(3, 2) + "".join(f"{key}:{node(2, 2)}" for key in more)


@settings(max_examples=400, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_generated_documents_load_the_same(text: str) -> None:
    assert_same(text)


TOKENS = [
    "a", "b", "1", "1:2", "yes", "~", ":", ": ", "- ", "? ", ",", "[", "]", "{", "}",
    "&x ", "*x", "&y ", "*y", "!!str ", "!!int ", "! ", "'", '"', "|", ">", "#", "\n",
    "\n  ", "\n    ", "---\n", "...\n", " ", "<<", "0x1", "2001-12-14", "%YAML 1.1\n",
]  # fmt: skip


@settings(max_examples=600, derandomize=True)
@given(st.lists(st.sampled_from(TOKENS), max_size=24).map("".join))
def test_token_soup_loads_the_same(text: str) -> None:
    assert_same(text)


# ---- where PyYAML's internals changed: its own resolver and constructor take over ------

_STR_TAG = source._STR_TAG


def test_pyyaml_as_it_is_lets_the_builder_type_scalars_itself() -> None:
    assert source.implicit_resolvers() is source._LOADER.yaml_implicit_resolvers
    assert source._IMPLICIT is not None


class _NoResolverTables:
    """A loader class without the resolver tables nftfwd.source reads."""


@pytest.mark.parametrize(
    "change",
    ["tables gone", "other table shape", "wildcard resolver", "path resolver", "str constructor"],
)
def test_changed_pyyaml_internals_are_noticed(monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    loader = source._LOADER
    if change == "tables gone":
        monkeypatch.setattr(source, "_LOADER", _NoResolverTables)
    elif change == "other table shape":
        monkeypatch.setattr(loader, "yaml_implicit_resolvers", {"1": [(_STR_TAG, "1.*")]})
    elif change == "wildcard resolver":
        monkeypatch.setitem(loader.yaml_implicit_resolvers, None, [])
    elif change == "path resolver":
        monkeypatch.setattr(loader, "yaml_path_resolvers", {((), None): _STR_TAG})
    else:
        monkeypatch.setitem(
            yaml.SafeLoader.yaml_constructors, _STR_TAG, yaml.SafeLoader.construct_scalar
        )
    assert source.implicit_resolvers() is None


def test_without_pyyaml_internals_everything_loads_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What load_text does where implicit_resolvers() found them changed: every scalar
    # through PyYAML's resolver and constructor. Same data, locations and errors.
    monkeypatch.setattr(source, "_IMPLICIT", None)
    for text in SNIPPETS:
        assert_same(text)
    for _, text in MODELS:
        assert_same(text)
    scalars = (scalar.replace("\n", "\n    ") for scalar in SCALARS)
    assert_same("top:\n" + "".join(f"  k{i}: {text}\n" for i, text in enumerate(scalars)))
