"""`nftfwd diff --from OLD`: two models compared without the kernel, for review in CI.

Compared as a load compares the host (nftfwd.kernel.live): the rules outside the sets
and maps as text, the elements of the sets and maps as data, and the forwards.
"""

from __future__ import annotations

from dataclasses import replace

from nftfwd.config import find_host, host_list
from nftfwd.diffview import HostDiff, guest_names
from nftfwd.errors import NftfwdError, echo
from nftfwd.lower import lower_host
from nftfwd.model import Host, Model
from nftfwd.nftjson import read_document
from nftfwd.plan import (
    ForwardKey,
    Target,
    compare,
    compare_elements,
    elements_of,
    forwards_of,
    rules_diff,
)
from nftfwd.render_json import batch
from nftfwd.render_nft import render_nft

Side = tuple[str, dict[ForwardKey, Target], dict[str, frozenset[str]]]


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
        return "", {}, {}
    table = lower_host(model.table, host)
    bare = replace(table, sets=tuple(replace(s, elements=()) for s in table.sets))
    listed = read_document(batch(table))
    return render_nft(bare), forwards_of(listed, model.table), elements_of(listed, model.table)


def models_diff(old: Model, new: Model, only_host: str | None) -> list[HostDiff]:
    names = sorted({h.name for h in old.hosts} | {h.name for h in new.hosts})
    if only_host is not None:
        names = _only(old, new, only_host)
    diffs = []
    for name in names:
        before, after = _find(old, name), _find(new, name)
        old_text, old_fwd, old_elements = _side(old, before)
        new_text, new_fwd, new_elements = _side(new, after)
        diffs.append(
            HostDiff(
                host=name,
                table=new.table if after else old.table,
                forwards=compare(old_fwd, new_fwd),
                rules=rules_diff(
                    old_text, new_text, f"{old.source} ({name})", f"{new.source} ({name})"
                ),
                guest_names=guest_names(before, after),
                elements=compare_elements(old_elements, new_elements),
            )
        )
    return diffs
