"""The plain tree builder: a shape-checked document to model.py's dataclasses, each value
through its parser in values.py, each refused value a located problem.

It checks no relation between values (rules.py does). A refused value is left out of the
tree (an entity that cannot exist without it, a forward without its `port`, is left out
with it), and its host is marked refused, so that only single-entity rules read it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, cast

from nftfwd.errors import MAX_REPORTED, ModelError, Problem, report_order
from nftfwd.model import (
    Bridge,
    Forward,
    Guest,
    Host,
    IPAddress,
    IPNetwork,
    Model,
    PortRange,
    Proto,
)
from nftfwd.semantic import values
from nftfwd.semantic.values import Refusal
from nftfwd.source import Document, KeyPath, format_path

DEFAULT_TABLE = "nftfwd"


class Problems:
    """The problems of one model: the first MAX_REPORTED in report order, and how many.

    Only the first ones are kept (a file of a million mistakes costs no more memory than
    its report), and they are the first whatever order the stages find them in."""

    def __init__(self) -> None:
        self.kept: list[Problem] = []
        self.count = 0

    def add(self, problem: Problem) -> None:
        self.count += 1
        self.kept.append(problem)
        if len(self.kept) > 4 * MAX_REPORTED:
            self.kept = sorted(self.kept, key=report_order)[:MAX_REPORTED]

    def error(self) -> ModelError:
        return ModelError(self.kept, self.count - len(self.kept))


@dataclass(frozen=True)
class Tree:
    """The model built from every value that parsed, and what the rules need beside it."""

    model: Model
    # The hosts with a refused value: the rules across entities skip them.
    refused_hosts: frozenset[str]
    # Each forward's key path, by the forward's id (Forward keeps only its text, which
    # cuts long names, so two forwards may share it).
    forward_keys: Mapping[int, KeyPath]


def build_tree(doc: Document, problems: Problems) -> Tree:
    return _Builder(doc, problems).tree()


class _Builder:
    def __init__(self, doc: Document, problems: Problems) -> None:
        self.doc = doc
        self.problems = problems
        self.refused_hosts: set[str] = set()
        self.forward_keys: dict[int, KeyPath] = {}
        # Each text parsed once: forwards repeat host addresses and sources.
        self.parsed: dict[tuple[object, ...], object] = {}
        # Equal values are one object: thousands of forwards may send tcp to port 80, and
        # every object of the model is one more for the garbage collector to walk.
        self.port_ranges: dict[tuple[type, int | float | str, str | None], PortRange | Refusal] = {}
        self.protos: dict[str | tuple[str, ...], tuple[Proto, ...]] = {}

    def refuse(self, path: KeyPath, refusal: Refusal) -> None:
        """Report `refusal` at `path`, and mark the host it is in refused."""
        self.problems.add(Problem(self.doc.location(path), format_path(path), refusal.message))
        if path[:1] == ("hosts",) and len(path) > 1:
            self.refused_hosts.add(str(path[1]))

    def address(
        self, path: KeyPath, parser: Callable[..., IPAddress | Refusal], *args: str | int
    ) -> IPAddress | None:
        """An address parsed by `parser(*args)` (a text of the document, an IP version)."""
        result = cast(IPAddress | Refusal, self.parsed_once(parser, args))
        if isinstance(result, Refusal):
            self.refuse(path, result)
            return None
        return result

    def prefix(
        self, path: KeyPath, parser: Callable[..., IPNetwork | Refusal], *args: str | int
    ) -> IPNetwork | None:
        """A prefix parsed by `parser(*args)` (a text of the document, an IP version)."""
        result = cast(IPNetwork | Refusal, self.parsed_once(parser, args))
        if isinstance(result, Refusal):
            self.refuse(path, result)
            return None
        return result

    def parsed_once(self, parser: Callable[..., object], args: tuple[str | int, ...]) -> object:
        """`parser(*args)`, parsed once per text of the document."""
        key = (parser, *args)
        result = self.parsed.get(key)
        if result is None:
            result = self.parsed[key] = parser(*args)
        return result

    def tree(self) -> Tree:
        data = self.doc.data
        for key, result in (
            ("version", values.version(data["version"], self.doc.written.get(("version",)))),
            ("table", values.table(table := data.get("table", DEFAULT_TABLE))),
        ):
            if isinstance(result, Refusal):
                self.refuse((key,), result)
        hosts = tuple(
            self.host(name, spec, ("hosts", name)) for name, spec in data["hosts"].items()
        )
        model = Model(version=data["version"], table=table, hosts=hosts, source=self.doc.path)
        return Tree(model, frozenset(self.refused_hosts), self.forward_keys)

    def host(self, name: str, spec: dict[str, Any], path: KeyPath) -> Host:
        addresses = tuple(
            a
            for i, text in enumerate(spec.get("addresses", []))
            if (a := self.address((*path, "addresses", i), values.host_address, text))
        )
        bridges = tuple(
            self.bridge(bname, bspec, (*path, "bridges", bname))
            for bname, bspec in spec.get("bridges", {}).items()
        )
        return Host(
            name=name,
            uplinks=tuple(spec["uplinks"]),
            addresses=addresses,
            hairpin=spec.get("hairpin", True),
            bridges=bridges,
        )

    def bridge(self, name: str, spec: dict[str, Any], path: KeyPath) -> Bridge:
        subnet = subnet6 = None
        if "subnet" in spec:
            subnet = self.prefix((*path, "subnet"), values.bridge_subnet, spec["subnet"], 4)
        if "subnet6" in spec:
            subnet6 = self.prefix((*path, "subnet6"), values.bridge_subnet, spec["subnet6"], 6)
        guests = tuple(
            self.guest(gname, gspec, (*path, "guests", gname))
            for gname, gspec in spec.get("guests", {}).items()
        )
        return Bridge(
            name=name,
            subnet=cast(IPv4Network | None, subnet),
            subnet6=cast(IPv6Network | None, subnet6),
            masquerade=spec.get("masquerade", True),
            guests=guests,
        )

    def guest(self, name: str, spec: dict[str, Any], path: KeyPath) -> Guest:
        address = address6 = None
        if "address" in spec:
            address = self.address((*path, "address"), values.address, spec["address"], 4)
        if "address6" in spec:
            address6 = self.address((*path, "address6"), values.address, spec["address6"], 6)
        forwards = tuple(
            f
            for i, fspec in enumerate(spec.get("forwards", []))
            if (f := self.forward(fspec, (*path, "forwards", i))) is not None
        )
        return Guest(
            name=name,
            address=cast(IPv4Address | None, address),
            address6=cast(IPv6Address | None, address6),
            forwards=forwards,
        )

    def ports(self, path: KeyPath, value: int | float | str) -> PortRange | None:
        written = self.doc.written.get(path)
        key = (type(value), value, written)  # the type: 80 and 80.0 are equal keys
        result = self.port_ranges.get(key)
        if result is None:
            result = self.port_ranges[key] = values.ports(value, written)
        if isinstance(result, Refusal):
            self.refuse(path, result)
            return None
        return result

    def forward(self, spec: dict[str, Any], path: KeyPath) -> Forward | None:
        port = self.ports((*path, "port"), spec["port"])
        to = self.ports((*path, "to"), spec["to"]) if "to" in spec else port
        proto = spec.get("proto", "tcp")
        proto_key = proto if isinstance(proto, str) else tuple(proto)
        protos = self.protos.get(proto_key)
        if protos is None:  # each list written once, each set of protocols one tuple
            protos = values.protos(proto)
            protos = self.protos[proto_key] = self.protos.setdefault(protos, protos)
        sources = tuple(
            s
            for i, text in enumerate(spec.get("sources", ()))
            if (s := self.prefix((*path, "sources", i), values.prefix, text)) is not None
        )
        if len(sources) > 1:
            sources = tuple(sorted(sources, key=lambda n: (n.version, n)))
        address = None
        if "address" in spec:
            address = self.address((*path, "address"), values.host_address, spec["address"])
        if port is None or to is None:
            return None
        forward = Forward(
            port=port,
            to=to,
            protos=protos,
            sources=sources,
            address=address,
            snat=spec.get("snat", False),
            path=format_path(path),
            location=self.doc.location(path),
        )
        self.forward_keys[id(forward)] = path
        return forward
