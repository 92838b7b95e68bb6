"""`nftfwd diff --from OLD`: two models compared without the kernel, for review in CI.

Compared as a load compares the host (nftfwd.kernel.live): the rules outside the sets
and maps as text, the elements of the sets and maps as data, and the forwards.
"""

from __future__ import annotations

from dataclasses import replace

from nftfwd.config import find_host, host_list
from nftfwd.errors import NftfwdError, echo
from nftfwd.lower import lower_host
from nftfwd.model import Host, Model
from nftfwd.nftjson import read_document
from nftfwd.plan import NO_SIDE, HostDiff, Side, host_diff, side_of
from nftfwd.render_json import batch
from nftfwd.render_nft import render_nft


def _find(model: Model, name: str) -> Host | None:
    return next((h for h in model.hosts if h.name == name), None)


def _only(old: Model, new: Model, wanted: str) -> list[str]:
    """The name --host means in either model (as config.find_host matches it); an
    error if it is in neither, rather than a diff of two absent hosts ("no changes")."""
    found = find_host(new, wanted) or find_host(old, wanted)
    if found is None:
        names = host_list(sorted({h.name for h in old.hosts} | {h.name for h in new.hosts}))
        raise NftfwdError(
            f"no host '{echo(wanted)}' in {old.source} or {new.source}; their hosts are {names}."
        )
    return [found.name]


def _side(model: Model, host: Host | None) -> Side:
    """One side of the comparison: its rules (without elements) as nft text, its
    forwards, and the elements of its sets and maps."""
    if host is None:
        return NO_SIDE
    table = lower_host(model.table, host)
    bare = replace(table, sets=tuple(replace(s, elements=()) for s in table.sets))
    return side_of(render_nft(bare), read_document(batch(table)), model.table)


def models_diff(old: Model, new: Model, only_host: str | None) -> list[HostDiff]:
    names = sorted({h.name for h in old.hosts} | {h.name for h in new.hosts})
    if only_host is not None:
        names = _only(old, new, only_host)
    diffs = []
    for name in names:
        before, after = _find(old, name), _find(new, name)
        sides = (_side(old, before), _side(new, after))
        labels = (f"{old.source} ({name})", f"{new.source} ({name})")
        table = new.table if after else old.table
        diffs.append(host_diff(name, table, sides, labels, before, after))
    return diffs
