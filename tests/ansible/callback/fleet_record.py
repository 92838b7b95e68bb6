"""A callback plugin for the tests: every task result and the recap, one JSON line each,
in the file $FLEET_RECORD, so that the tests read what Ansible reported as data."""

from __future__ import annotations

import json
import os
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: fleet_record
type: aggregate
short_description: record task results as JSON lines for nftfwd's tests
description: Writes every task result and the recap to the file $FLEET_RECORD.
"""


class CallbackModule(CallbackBase):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "fleet_record"
    CALLBACK_NEEDS_ENABLED = True

    def _write(self, entry: dict[str, Any]) -> None:
        with open(os.environ["FLEET_RECORD"], "a", encoding="utf-8") as out:
            out.write(json.dumps(entry, default=str) + "\n")

    def _result(self, outcome: str, result: Any) -> None:
        host = getattr(result, "host", None) or result._host
        task = getattr(result, "task", None) or result._task
        raw = getattr(result, "result", None)
        self._write(
            {
                "outcome": outcome,
                "host": host.get_name(),
                "task": task.get_name(),
                "result": dict(raw if raw is not None else result._result),
            }
        )

    def v2_runner_on_ok(self, result: Any) -> None:
        self._result("ok", result)

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._result("failed", result)

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._result("skipped", result)

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._result("unreachable", result)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        recap = {host: stats.summarize(host) for host in sorted(stats.processed)}
        self._write({"outcome": "recap", "recap": recap})
