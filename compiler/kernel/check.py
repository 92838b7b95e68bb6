"""`nftfwd check`: the kernel's verdict on a ruleset without changing the live one."""

from __future__ import annotations

import json
import os

from nftfwd.kernel.libnft import Nft
from nftfwd.kernel.sandbox import ScriptFormat, kernel_check


def check_script(script: str, fmt: ScriptFormat) -> None:
    """As root, a dry run against the live kernel; otherwise a throwaway namespace."""
    if os.geteuid() == 0:
        nft = Nft(dry_run=True)
        if fmt == "json":
            nft.apply_json(json.loads(script))
        else:
            nft.apply_text(script)
        return
    kernel_check(script, fmt)
