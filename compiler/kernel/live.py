"""The live table on this host against the compiled one, both as the kernel lists them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nftfwd.diffview import HostDiff, guest_names
from nftfwd.ir import Table
from nftfwd.kernel.libnft import Nft
from nftfwd.kernel.sandbox import kernel_text
from nftfwd.model import Host
from nftfwd.plan import compare, forwards_of, rules_diff
from nftfwd.render_json import batch, render_json


@dataclass(frozen=True)
class LiveTable:
    objects: list[Any]
    text: str | None  # None: the table does not exist


def read_live(nft: Nft, table: Table) -> LiveTable:
    text = nft.list_table_text(table.family, table.name)
    if text is None:
        return LiveTable([], None)
    return LiveTable(nft.list_table_json(table.family, table.name), text)


def canonical(table: Table) -> str:
    """The compiled table as the kernel would list it, from a throwaway namespace."""
    return kernel_text(render_json(table), "json", table.family, table.name)


def live_diff(host: Host, table: Table, live: LiveTable, compiled_text: str) -> HostDiff:
    """Forwards from the live maps against the compiled batch (the same element encoding
    as the kernel's listing), and the rules as the kernel lists each side."""
    return HostDiff(
        host=host.name,
        table=table.name,
        forwards=compare(
            forwards_of(live.objects, table.name),
            forwards_of(batch(table)["nftables"], table.name),
        ),
        rules=rules_diff(live.text or "", compiled_text, "live", "compiled"),
        guest_names=guest_names(host),
    )
