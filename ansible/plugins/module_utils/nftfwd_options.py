# Copyright: nftfwd contributors
# MIT License (see LICENSE in nftfwd's repository)
"""The options of nftfwd.fleet.nftfwd, for the module and its action plugin alike."""

from __future__ import annotations

ARGUMENT_SPEC = {
    "src": {"type": "path"},
    "host": {"type": "str"},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "confirm": {"type": "int"},
    "confirm_pending": {"type": "bool", "default": False},
    "enable_forwarding": {"type": "bool", "default": False},
    "executable": {"type": "str", "default": "nftfwd"},
    "fail_on_findings": {"type": "bool", "default": False},
}
