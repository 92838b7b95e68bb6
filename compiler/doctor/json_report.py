"""doctor's findings as one JSON document, for monitoring and CI (schemas/doctor.schema.json)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from nftfwd.doctor.findings import Finding, sorted_findings
from nftfwd.doctor.run import counts, exit_code

FORMAT = 1  # the document's version: a change that breaks readers makes a new one


def findings_document(
    host: str, table: str, findings: Iterable[Finding], *, strict: bool = False
) -> dict[str, Any]:
    """The document as data: the same findings, order and exit code as the text."""
    items = sorted_findings(findings)
    return {
        "format": FORMAT,
        "host": host,
        "table": table,
        "strict": strict,
        "exit_code": exit_code(items, strict=strict),
        "counts": counts(items),
        "findings": [
            {
                "id": f.id,
                "severity": f.severity,
                "subject": f.subject,
                "message": f.message,
                "fix": f.fix,
            }
            for f in items
        ],
    }


def format_json(host: str, table: str, findings: Iterable[Finding], *, strict: bool = False) -> str:
    return json.dumps(findings_document(host, table, findings, strict=strict), indent=2) + "\n"
