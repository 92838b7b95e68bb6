"""The pure pipeline: a host of a checked model to nft text or libnftables JSON."""

from __future__ import annotations

from typing import Literal

from nftfwd.ir import Table
from nftfwd.lower import lower_host
from nftfwd.model import Host, Model
from nftfwd.render_json import render_json

OutputFormat = Literal["nft", "json"]


def compile_host(model: Model, host: Host) -> Table:
    return lower_host(model.table, host)


def render(table: Table, output: OutputFormat) -> str:
    if output == "json":
        return render_json(table)
    from nftfwd.render_nft import render_nft  # jinja2 only where nft text is wanted

    return render_nft(table)
