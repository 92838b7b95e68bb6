"""Which model file and which host of it a command works on (model.md, "Commands")."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from nftfwd.errors import NftfwdError
from nftfwd.model import Host, Model
from nftfwd.schema import validate_shape
from nftfwd.semantic import build_model
from nftfwd.source import load_file

SYSTEM_MODEL = Path("/etc/nftfwd/nftfwd.yaml")


def model_path(given: Path | None) -> Path:
    """The MODEL argument, else $NFTFWD_CONFIG, else ./nftfwd.yaml, else the system one."""
    if given is not None:
        return given
    if env := os.environ.get("NFTFWD_CONFIG"):
        return Path(env)
    for candidate in (Path("nftfwd.yaml"), SYSTEM_MODEL):
        if candidate.exists():
            return candidate
    raise NftfwdError(
        "no model file given: pass MODEL, set NFTFWD_CONFIG, or create ./nftfwd.yaml "
        f"or {SYSTEM_MODEL}."
    )


def load_model(path: Path) -> Model:
    """Read, shape-check and meaning-check a model file."""
    doc = load_file(path)
    validate_shape(doc)
    return build_model(doc)


def select_host(model: Model, name: str | None, hostname: str | None = None) -> Host:
    """--host NAME, else the only host, else the one named like this machine."""
    names = ", ".join(h.name for h in model.hosts)
    if name is not None:
        for host in model.hosts:
            if host.name == name:
                return host
        raise NftfwdError(f"{model.source}: no host '{name}' in the model; its hosts are {names}.")
    if len(model.hosts) == 1:
        return model.hosts[0]
    full = (hostname if hostname is not None else socket.gethostname()).lower()
    short = full.split(".")[0]
    for host in model.hosts:
        wanted = host.name.lower()
        if wanted in (full, short):
            return host
    raise NftfwdError(
        f"{model.source} describes several hosts ({names}) and none is named like this "
        f"machine ('{full}'); choose one with --host."
    )
