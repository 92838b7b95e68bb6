"""Stage 4a: the IR as an nft script, through templates/ruleset.nft.j2."""

from __future__ import annotations

from nftfwd.ir import REPLACE_TABLE, Table, load_order
from nftfwd.nft_text import element_text, rule_text
from nftfwd.templating import add_filters, render

TEMPLATE = "ruleset.nft.j2"


def render_nft(table: Table) -> str:
    return render(TEMPLATE, table=table, replace_table=REPLACE_TABLE, objects=load_order(table))


add_filters(rule=rule_text, element=element_text)
