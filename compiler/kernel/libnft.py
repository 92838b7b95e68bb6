"""libnftables through its Python binding: the only door to the kernel's ruleset."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from nftfwd.errors import NftfwdError
from nftfwd.nftjson import Chain, name_protocols, read_objects

# Debian's python3-nftables installs the binding here, for the system Python only;
# a virtual environment made without --system-site-packages can still use it.
DEBIAN_BINDING = Path("/usr/lib/python3/dist-packages/nftables/__init__.py")


class KernelRefused(NftfwdError):
    """libnftables or the kernel refused a transaction; nothing of it was applied."""

    def __init__(self, message: str, refused: str) -> None:
        self.refused = refused
        super().__init__(message)


# What to install when the binding is missing or does not fit the library.
BINDING_PACKAGES = (
    "python3-nftables and nftables of one version (apt-get install python3-nftables nftables)"
)
# The methods of libnftables' binding that nftfwd calls (nftables 0.9.x lacks some).
BINDING_METHODS = (
    "cmd",
    "json_cmd",
    "cmd_from_file",
    "set_json_output",
    "set_handle_output",
    "set_stateless_output",
    "set_terse_output",
    "set_numeric_proto_output",
    "set_dry_run",
)


@cache
def binding() -> ModuleType:
    try:
        try:
            import nftables  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            return _debian_binding()
        return cast(ModuleType, nftables)
    except NftfwdError:
        raise
    except Exception as err:  # foreign code: whatever it raises, say what to install
        raise NftfwdError(
            f"the nftables Python binding cannot be loaded ({type(err).__name__}: {err}); "
            f"install {BINDING_PACKAGES}."
        ) from None


def _debian_binding() -> ModuleType:
    if not DEBIAN_BINDING.exists():
        raise NftfwdError(f"the nftables Python binding is missing; install {BINDING_PACKAGES}.")
    spec = importlib.util.spec_from_file_location(
        "nftables", DEBIAN_BINDING, submodule_search_locations=[str(DEBIAN_BINDING.parent)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["nftables"] = module
    spec.loader.exec_module(module)
    return module


class Nft:
    """One libnftables context; every call is one transaction."""

    def __init__(self, *, dry_run: bool = False) -> None:
        try:
            self._ctx = binding().Nftables()
            missing = [m for m in BINDING_METHODS if not callable(getattr(self._ctx, m, None))]
            if not missing:
                self._ctx.set_handle_output(False)
                self._ctx.set_stateless_output(True)  # counters are state, not configuration
                self._ctx.set_dry_run(dry_run)
        except NftfwdError:
            raise
        except Exception as err:  # a binding that does not match its libnftables
            raise NftfwdError(
                f"libnftables cannot be used through its Python binding "
                f"({type(err).__name__}: {err}); install {BINDING_PACKAGES}."
            ) from None
        if missing:
            raise NftfwdError(
                f"the nftables Python binding lacks {', '.join(missing)} (too old, or not "
                f"the one of this libnftables); install {BINDING_PACKAGES}."
            )

    def _raise(self, what: str, error: str, refused: str) -> None:
        # JSON input has no source positions: drop libnftables' empty "internal:0:0-0: ".
        lines = [line.replace("internal:0:0-0: ", "").strip() for line in error.splitlines()]
        detail = " ".join(dict.fromkeys(line for line in lines if line))
        if "Operation not permitted" in error and os.geteuid() != 0:
            raise NftfwdError(f"{what} needs root (CAP_NET_ADMIN): {detail}")
        if "Operation not permitted" in error:
            raise NftfwdError(f"the kernel did not permit {what}: {detail}")
        raise KernelRefused(f"the kernel refused {what}: {detail}", refused)

    def _run(self, command: str, *, json_output: bool, what: str) -> str:
        self._ctx.set_json_output(json_output)
        rc, output, error = self._ctx.cmd(command)
        if rc != 0:
            self._raise(what, error, command)
        return str(output)

    def apply_json(self, commands: dict[str, Any], what: str = "the transaction") -> None:
        rc, _, error = self._ctx.json_cmd(commands)
        if rc != 0:
            self._raise(what, error, json.dumps(commands, indent=2))

    def apply_file(self, path: str, what: str = "the transaction") -> None:
        """Like apply_text; errors then carry `path:line:column` and quote the right line
        (from a buffer, libnftables 1.0.6 quotes the first line instead)."""
        self._ctx.set_json_output(False)
        rc, _, error = self._ctx.cmd_from_file(path)
        if rc != 0:
            self._raise(what, error, path)

    def apply_text(self, script: str, what: str = "the transaction") -> None:
        self._run(script, json_output=False, what=what)

    def list_ruleset(self) -> dict[str, Any]:
        output = self._run("list ruleset", json_output=True, what="listing the ruleset")
        return json.loads(output) if output.strip() else {"nftables": []}

    def list_ruleset_parts(self, outline_only: tuple[str, str] | None = None) -> dict[str, Any]:
        """Every table, chain, rule, set and map, as `nft -j list ruleset` lists them, but
        read so that no table object is ever printed as JSON: nft 1.0.6 prints a table's
        `flags owner` (firewalld 2.x) as garbage or cuts the listing there. Tables come
        from the outline, each chain with its rules from its own listing (asked in JSON:
        names that are keywords need no quoting), each set and map from its own.
        Of the table `outline_only` (family, name) only the chains are read, without their
        rules, and no set: listing anything inside a table makes nft 1.0.6 fetch every
        element of that table's sets, and nftfwd's own maps are large."""
        items: list[Any] = [{"table": {"family": f, "name": n}} for f, n in self.tables()]
        for raw in self._json_items("list chains"):
            for chain in read_objects([raw]).chains:
                key = {"family": chain.family, "table": chain.table, "name": chain.name}
                if (chain.family, chain.table) == outline_only:
                    items.append(raw)
                else:
                    items += self._listed({"chain": key}, ("chain", "rule"))
        self._ctx.set_terse_output(True)
        try:
            declared = self._json_items("list sets") + self._json_items("list maps")
        finally:
            self._ctx.set_terse_output(False)
        for named in read_objects(declared).sets:
            if (named.family, named.table) != outline_only:
                key = {"family": named.family, "table": named.table, "name": named.name}
                items += self._listed({named.kind: key}, (named.kind,))
        return {"nftables": items}

    def _listed(self, what: dict[str, Any], kinds: tuple[str, ...]) -> list[Any]:
        """The objects of the given kinds that `list` of one chain, set or map prints."""
        rc, output, error = self._ctx.json_cmd({"nftables": [{"list": what}]})
        if rc != 0 or not isinstance(output, dict):
            self._raise("listing the ruleset", str(error), json.dumps(what))
        return [i for i in output.get("nftables", []) if any(k in i for k in kinds)]

    def outline(self) -> str:
        """`nft -t list ruleset`: every table, chain and rule, and each set's declaration
        without its elements. It costs the same at any size: nft 1.0.6 fetches every
        set's elements for most other listings (`list tables` and `list chain` too), but
        not for this one."""
        terse = self._ctx.set_terse_output(True)
        handles = self._ctx.set_handle_output(False)  # the same outline in every context
        try:
            return self._run("list ruleset", json_output=False, what="listing the ruleset")
        finally:
            self._ctx.set_terse_output(terse)
            self._ctx.set_handle_output(handles)

    def chains(self) -> list[Chain]:
        """Every chain of every table, with its hook, priority and policy (`list chains`,
        which nft 1.0.6 answers without fetching any set's elements)."""
        return read_objects(self._json_items("list chains")).chains

    def tables(self) -> list[tuple[str, str]]:
        """(family, name) of every table, from the outline (see list_ruleset_parts)."""
        return list(table_outlines(self.outline()))

    def table_outline(self, family: str, name: str) -> str | None:
        """One table's part of the outline, or None when the table does not exist."""
        return table_outlines(self.outline()).get((family, name))

    def _json_items(self, command: str) -> list[dict[str, Any]]:
        """The objects a listing without table objects prints (list chains, sets, maps)."""
        output = self._run(command, json_output=True, what="listing the ruleset")
        try:
            items = json.loads(output)["nftables"] if output.strip() else []
        except (ValueError, KeyError, TypeError) as err:
            raise NftfwdError(
                f"libnftables printed invalid JSON for `{command}` ({err})."
            ) from None
        return [i for i in items if isinstance(i, dict) and "metainfo" not in i]

    def list_ruleset_text(self, skip: tuple[str, str] | None = None) -> str:
        """The ruleset as `nft -a list ruleset` prints it (text, with each rule's handle),
        less the table `skip`."""
        tables = [table for table in self.tables() if table != skip]
        self._ctx.set_handle_output(True)
        try:
            return "".join(
                self._run(f"list table {family} {name}", json_output=False, what="listing")
                for family, name in tables
            )
        finally:
            self._ctx.set_handle_output(False)

    def list_table_text(self, family: str, name: str) -> str | None:
        """The kernel's own text of one table, or None when it does not exist."""
        if not self.has_table(family, name):
            return None
        return self._run(f"list table {family} {name}", json_output=False, what="listing")

    def list_table_json(self, family: str, name: str) -> list[dict[str, Any]]:
        """The objects of one table. Never the whole ruleset: nft 1.0.6 prints another
        table's `flags owner` (firewalld 2.x sets it) as garbage or not at all.

        Protocols are listed as numbers: by name, nft looks each one up in /etc/protocols,
        a third of the time it takes to list 10,000 forwards. In set and map elements
        tcp and udp get their names back, as nftfwd writes them; rules keep numbers."""
        self._ctx.set_numeric_proto_output(True)
        try:
            output = self._run(f"list table {family} {name}", json_output=True, what="listing")
        finally:
            self._ctx.set_numeric_proto_output(False)
        try:
            objects = list(json.loads(output)["nftables"])
        except (ValueError, KeyError) as err:
            raise NftfwdError(
                f"libnftables listed table {family} {name} as invalid JSON ({err})."
            ) from None
        for obj in objects:
            name_protocols(obj)
        return objects

    def has_table(self, family: str, name: str) -> bool:
        return (family, name) in self.tables()


def table_outlines(listing: str) -> dict[tuple[str, str], str]:
    """Each table's block of a ruleset listing, by (family, name). nft prints a table as
    `table FAMILY NAME {` at the start of a line and ends it with `}` alone on a line."""
    blocks: dict[tuple[str, str], str] = {}
    current: list[str] = []
    for line in listing.splitlines(keepends=True):
        if current:
            current.append(line)
            if line.rstrip("\n") == "}":
                words = current[0].split()
                blocks[(words[1], words[2].strip('"'))] = "".join(current)
                current = []
        elif line.startswith("table ") and line.split()[3:4] == ["{"]:
            current = [line]  # the header may end in a comment: `{ # progname firewalld`
    return blocks
