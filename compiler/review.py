"""`nftfwd diff --from OLD`: two models compared without the kernel, for review in CI."""

from __future__ import annotations

from nftfwd.diffview import HostDiff, guest_names
from nftfwd.lower import lower_host
from nftfwd.model import Host, Model
from nftfwd.plan import compare, forwards_of, rules_diff
from nftfwd.render_json import batch
from nftfwd.render_nft import render_nft


def _find(model: Model, name: str) -> Host | None:
    return next((h for h in model.hosts if h.name == name), None)


def models_diff(old: Model, new: Model, only_host: str | None) -> list[HostDiff]:
    names = sorted({h.name for h in old.hosts} | {h.name for h in new.hosts})
    if only_host is not None:
        names = [only_host]
    diffs = []
    for name in names:
        before, after = _find(old, name), _find(new, name)
        old_text = render_nft(lower_host(old.table, before)) if before else ""
        new_text = render_nft(lower_host(new.table, after)) if after else ""
        old_fwd = (
            forwards_of(batch(lower_host(old.table, before))["nftables"], old.table)
            if before
            else {}
        )
        new_fwd = (
            forwards_of(batch(lower_host(new.table, after))["nftables"], new.table) if after else {}
        )
        diffs.append(
            HostDiff(
                host=name,
                table=new.table if after else old.table,
                forwards=compare(old_fwd, new_fwd),
                rules=rules_diff(
                    old_text, new_text, f"{old.source} ({name})", f"{new.source} ({name})"
                ),
                guest_names=guest_names(before, after),
            )
        )
    return diffs
