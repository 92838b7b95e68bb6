"""nftfwd doctor: what on the live host defeats the rules nftfwd loads, and how to fix it.

findings = diagnose(host, table, ruleset, ruleset_text=text)   # nftfwd.doctor.run
print(format_findings(findings), end="")
"""

from nftfwd.doctor.findings import Finding
from nftfwd.doctor.hostprobe import probe_host
from nftfwd.doctor.ruleset import analyse_ruleset
from nftfwd.doctor.run import diagnose, exit_code, format_findings, read_live_ruleset

__all__ = [
    "Finding",
    "analyse_ruleset",
    "diagnose",
    "exit_code",
    "format_findings",
    "probe_host",
    "read_live_ruleset",
]
