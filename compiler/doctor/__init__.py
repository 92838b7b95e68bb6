"""nftfwd doctor: what on the live host defeats the rules nftfwd loads, and how to fix it.

Pure analysis of what nftfwd.kernel.hoststate reads from the host:

findings = examine(host, table)   # nftfwd.kernel.examine: read the host, then diagnose
print(format_findings(findings), end="")

listing.py   the ruleset listing (JSON and text) indexed
flows.py     the traffic nftfwd's rules let through, as flows
judge.py     one table's matches judged against one flow (three-valued, tri.py)
shape.py     flows as one table can tell them apart (alike flows are walked once)
walk.py      a flow through a base chain and its jumps
ruleset.py   what the walks reach, as findings (analyse_ruleset)
hostchecks.py  sysctls, links, neighbours, listeners (check_host)
boot.py      `flush ruleset` in nftables.conf, weighed by what brings nftfwd's table back
run.py       both together (diagnose), exit code and printing
json_report.py the findings as one JSON document (schemas/doctor.schema.json)
findings.py  the Finding type, its severities, and how fixes are written
"""

from nftfwd.doctor.findings import Finding
from nftfwd.doctor.hostchecks import HostState, check_host
from nftfwd.doctor.ruleset import analyse_ruleset
from nftfwd.doctor.run import diagnose, exit_code, format_findings

__all__ = [
    "Finding",
    "HostState",
    "analyse_ruleset",
    "check_host",
    "diagnose",
    "exit_code",
    "format_findings",
]
