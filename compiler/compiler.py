"""The pure pipeline, `nftfwd build`: a model file to a Model, a host of it to its rules.

source, schema and semantic make the Model; lower makes one host's IR table; a renderer
makes nft text or libnftables JSON of it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from nftfwd.ir import Table
from nftfwd.lower import lower_host
from nftfwd.model import Host, Model
from nftfwd.render_json import render_json
from nftfwd.schema import validate_shape
from nftfwd.semantic import build_model
from nftfwd.source import load_file

OutputFormat = Literal["nft", "json"]


def load_model(path: Path) -> Model:
    """Read, shape-check and meaning-check a model file."""
    doc = load_file(path)
    validate_shape(doc)
    return build_model(doc)


def compile_host(model: Model, host: Host) -> Table:
    return lower_host(model.table, host)


def render(table: Table, output: OutputFormat) -> str:
    if output == "json":
        return render_json(table)
    from nftfwd.render_nft import render_nft  # jinja2 only where nft text is wanted

    return render_nft(table)
