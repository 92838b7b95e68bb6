"""The live table on this host against the compiled one, both as the kernel lists them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nftfwd.diffview import HostDiff
from nftfwd.ir import Table
from nftfwd.kernel.libnft import Nft
from nftfwd.kernel.sandbox import Listing, kernel_listing
from nftfwd.model import Host
from nftfwd.plan import compare, forwards_of, rules_diff
from nftfwd.render_json import render_json
from nftfwd.review import guest_names


@dataclass(frozen=True)
class LiveTable:
    objects: list[Any]
    text: str | None  # None: the table does not exist


def read_live(nft: Nft, table: Table) -> LiveTable:
    text = nft.list_table_text(table.family, table.name)
    if text is None:
        return LiveTable([], None)
    return LiveTable(nft.list_table_json(table.family, table.name), text)


def _table_of(obj: dict[str, Any]) -> tuple[str, str] | None:
    for body in obj.values():
        if isinstance(body, dict) and "family" in body:
            return str(body["family"]), str(body.get("table", body.get("name")))
    return None


def canonical(table: Table) -> Listing:
    """The compiled table as the kernel would list it, from a throwaway namespace."""
    return kernel_listing(render_json(table), "json", table.family, table.name)


def live_diff(host: Host, table: Table, live: LiveTable, compiled: Listing) -> HostDiff:
    compiled_objects = [
        o
        for o in compiled.json["nftables"]  # type: ignore[attr-defined]
        if _table_of(o) == (table.family, table.name)
    ]
    return HostDiff(
        host=host.name,
        table=table.name,
        forwards=compare(
            forwards_of(live.objects, table.name), forwards_of(compiled_objects, table.name)
        ),
        rules=rules_diff(live.text or "", compiled.text, "live", "compiled"),
        guest_names=guest_names(host),
    )
