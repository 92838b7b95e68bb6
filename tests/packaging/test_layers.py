"""The layers of the package, checked on its import graph (README, "Development").

pure stages < host adapters < orchestration < CLI: a module imports from its own layer
or one below, never above. Pure stages import nothing that touches the host; host
adapters read and change the host and know no command; orchestration composes the two
into a command; the CLI parses arguments and calls orchestration (it names a host
adapter's constants at most, as defaults its --help shows). Every module is placed here
once: a new module fails test_every_module_has_a_layer until it is.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO

# Where each package of nftfwd lives (pyproject.toml's package-dir).
PACKAGE_DIRS = {
    "nftfwd": REPO / "compiler",
    "nftfwd.kernel": REPO / "compiler/kernel",
    "nftfwd.doctor": REPO / "compiler/doctor",
    "nftfwd.semantic": REPO / "compiler/semantic",
    "nftfwd.templates": REPO / "templates",
    "nftfwd.schemas": REPO / "schemas",
}

PURE, HOST, ORCHESTRATION, CLI = "pure", "host", "orchestration", "cli"
RANK = {PURE: 0, HOST: 1, ORCHESTRATION: 2, CLI: 3}

LAYERS = {
    # pure stages: model file -> model -> IR -> text, plans, doctor's verdicts
    "nftfwd": PURE,  # __version__
    "nftfwd.errors": PURE,
    "nftfwd.source": PURE,
    "nftfwd.schema": PURE,
    "nftfwd.schema_fast": PURE,
    "nftfwd.keywords": PURE,
    "nftfwd.semantic": PURE,
    "nftfwd.semantic.values": PURE,
    "nftfwd.semantic.tree": PURE,
    "nftfwd.semantic.rules": PURE,
    "nftfwd.model": PURE,
    "nftfwd.config": PURE,
    "nftfwd.ir": PURE,
    "nftfwd.claims": PURE,
    "nftfwd.lower": PURE,
    "nftfwd.render_json": PURE,
    "nftfwd.render_nft": PURE,
    "nftfwd.nftjson": PURE,
    "nftfwd.nft_text": PURE,
    "nftfwd.templating": PURE,
    "nftfwd.templates": PURE,
    "nftfwd.schemas": PURE,
    "nftfwd.plan": PURE,
    "nftfwd.diffview": PURE,
    "nftfwd.markdown": PURE,
    "nftfwd.plan_json": PURE,
    "nftfwd.review": PURE,
    "nftfwd.libvirt": PURE,
    "nftfwd.manpage": PURE,
    "nftfwd.doctor": PURE,
    "nftfwd.doctor.boot": PURE,
    "nftfwd.doctor.findings": PURE,
    "nftfwd.doctor.flows": PURE,
    "nftfwd.doctor.hostchecks": PURE,
    "nftfwd.doctor.json_report": PURE,
    "nftfwd.doctor.judge": PURE,
    "nftfwd.doctor.listing": PURE,
    "nftfwd.doctor.ruleset": PURE,
    "nftfwd.doctor.run": PURE,
    "nftfwd.doctor.shape": PURE,
    "nftfwd.doctor.tri": PURE,
    "nftfwd.doctor.walk": PURE,
    "nftfwd.trace_events": PURE,  # trace: the monitor's lines, typed
    "nftfwd.trace_path": PURE,  # trace: events folded into a path and its end
    "nftfwd.trace_plan": PURE,  # trace: the forward traced, the trace table
    "nftfwd.trace_report": PURE,  # trace: text and JSON
    # host adapters: libnftables, namespaces, netlink, /proc and `ip`, sysctl, systemd,
    # files and the state directory
    "nftfwd.files": HOST,
    "nftfwd.kernel": HOST,
    "nftfwd.kernel.libnft": HOST,
    "nftfwd.kernel.sandbox": HOST,
    "nftfwd.kernel.netlink": HOST,
    "nftfwd.kernel.owner": HOST,
    "nftfwd.kernel.conntrack": HOST,
    "nftfwd.kernel.hoststate": HOST,
    "nftfwd.kernel.forwarding": HOST,
    "nftfwd.kernel.system": HOST,
    "nftfwd.kernel.state": HOST,
    "nftfwd.kernel.pending": HOST,
    "nftfwd.kernel.hooklog": HOST,
    "nftfwd.kernel.tracer": HOST,  # trace table, nft monitor child, --probe
    # orchestration: one command each
    "nftfwd.compiler": ORCHESTRATION,  # build: the pure stages in a row
    "nftfwd.kernel.check": ORCHESTRATION,  # check
    "nftfwd.kernel.live": ORCHESTRATION,  # diff
    "nftfwd.kernel.load": ORCHESTRATION,  # load, confirm
    "nftfwd.kernel.guard": ORCHESTRATION,  # load --confirm --detach's guard process
    "nftfwd.kernel.examine": ORCHESTRATION,  # doctor
    "nftfwd.kernel.hook": ORCHESTRATION,  # libvirt hook
    "nftfwd.install": ORCHESTRATION,  # install, uninstall: the files
    "nftfwd.kernel.service": ORCHESTRATION,  # install, uninstall: systemd and the table
    "nftfwd.kernel.trace": ORCHESTRATION,  # trace
    # the command line, and what is built from it
    "nftfwd.cli": CLI,
    "nftfwd.__main__": CLI,
    "nftfwd.distfiles": CLI,  # man page, completion, unit and hook of the Debian package
}

# Third-party and standard modules that touch the host: no pure stage imports them.
HOST_LIBRARIES = {"nftables", "subprocess", "ctypes", "fcntl", "select", "signal"}


@dataclass(frozen=True)
class Import:
    module: str  # the module imported (an nftfwd module, or a top-level library)
    names: tuple[str, ...]  # what `from module import ...` names; () for `import module`
    line: int
    runtime_top: bool  # run when the importing module is (not in a function, not typing)


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted(folder.glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            found[name] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, top: bool) -> Iterator[tuple[ast.AST, bool]]:
    """Every node below `node`, with whether it runs when the module is imported."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _walk(child, False)
        elif isinstance(child, ast.If) and _is_type_checking(child):
            for part in child.body:  # for mypy only; its else branch runs
                yield part, False
                yield from _walk(part, False)
            for part in child.orelse:
                yield part, top
                yield from _walk(part, top)
        else:
            yield child, top
            yield from _walk(child, top)


def _resolve(name: str) -> str:
    """The nftfwd module `name` is, or its top-level library."""
    return name if name.startswith("nftfwd") else name.split(".")[0]


def imports_of(name: str) -> list[Import]:
    tree = ast.parse(MODULES[name].read_text(), str(MODULES[name]))
    found = []
    for node, top in _walk(tree, True):
        if isinstance(node, ast.Import):
            found += [Import(_resolve(a.name), (), node.lineno, top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{name}:{node.lineno}: relative import"
            base = node.module or ""
            for alias in node.names:
                # `from nftfwd.doctor import run` imports the module nftfwd.doctor.run
                sub = f"{base}.{alias.name}"
                target = sub if sub in MODULES else _resolve(base)
                found.append(Import(target, (alias.name,), node.lineno, top))
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def _runtime_closure(start: str) -> set[str]:
    """Every module that importing `start` runs: module-level imports, and the packages
    above each nftfwd module (Python runs a package's __init__ before its modules)."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name not in GRAPH:
            continue
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += [i.module for i in GRAPH[name] if i.runtime_top]
    return seen


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(set(MODULES) - set(LAYERS))
    gone = sorted(set(LAYERS) - set(MODULES))
    assert not unplaced, f"place these modules in a layer (LAYERS, {__file__}): {unplaced}"
    assert not gone, f"these modules are gone; remove them from LAYERS: {gone}"


def test_each_module_imports_its_own_layer_or_below() -> None:
    crossings = []
    for name, imports in GRAPH.items():
        for imp in imports:
            if imp.module not in LAYERS:
                continue
            if RANK[LAYERS[imp.module]] > RANK[LAYERS[name]]:
                crossings.append(
                    f"{MODULES[name].relative_to(REPO)}:{imp.line}: {name} ({LAYERS[name]}) "
                    f"imports {imp.module} ({LAYERS[imp.module]})"
                )
    assert not crossings, "\n".join(crossings)


def test_the_cli_calls_orchestration_not_host_adapters() -> None:
    """The CLI may name a host adapter's constant (a default its --help shows); every
    call that touches the host goes through orchestration."""
    crossings = []
    for name in (m for m, layer in LAYERS.items() if layer == CLI):
        for imp in GRAPH[name]:
            if LAYERS.get(imp.module) == HOST and not all(n.isupper() for n in imp.names):
                crossings.append(f"{name}:{imp.line}: {imp.module} {imp.names}")
    assert not crossings, "\n".join(crossings)


def test_pure_stages_import_no_host_library() -> None:
    crossings = [
        f"{name}:{imp.line}: {imp.module}"
        for name, imports in GRAPH.items()
        if LAYERS.get(name) == PURE
        for imp in imports
        if imp.module in HOST_LIBRARIES
    ]
    assert not crossings, "\n".join(crossings)


def test_no_import_cycles_at_module_level() -> None:
    edges = {
        name: sorted({i.module for i in imports if i.runtime_top and i.module in MODULES})
        for name, imports in GRAPH.items()
    }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for nxt in edges[name]:
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize(
    ("command", "modules", "never"),
    [
        # `build` never loads libnftables (nor the kernel package's adapters)
        ("build", ["nftfwd.cli", "nftfwd.compiler", "nftfwd.config"], "nftables"),
        ("build", ["nftfwd.cli", "nftfwd.compiler", "nftfwd.config"], "nftfwd.kernel.libnft"),
        # jsonschema only to explain a model the fast check refused (nftfwd.schema)
        ("build", ["nftfwd.cli", "nftfwd.compiler", "nftfwd.config"], "jsonschema"),
        # `load` and doctor never render nft text: jinja2 only on a refused load's report
        ("load", ["nftfwd.cli", "nftfwd.kernel.load", "nftfwd.kernel.examine"], "jinja2"),
        ("diff", ["nftfwd.cli", "nftfwd.kernel.live", "nftfwd.markdown"], "jinja2"),
    ],
)
def test_lazy_imports_stay_lazy(command: str, modules: list[str], never: str) -> None:
    """What a command runs at import time, from the modules it imports (nftfwd.cli imports
    the stages inside each command for this reason)."""
    loaded = set().union(*(_runtime_closure(m) for m in modules))
    assert never not in loaded, f"`{command}` would import {never}"


def test_every_module_says_its_job() -> None:
    """README sends a newcomer to a module by its first line: each has one."""
    silent = [
        str(path.relative_to(REPO))
        for path in MODULES.values()
        if not (ast.get_docstring(ast.parse(path.read_text())) or "").strip()
    ]
    assert not silent, f"no docstring saying what the module is for: {silent}"
