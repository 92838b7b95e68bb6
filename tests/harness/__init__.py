"""Network-namespace test harness: the standard topology of testing.md for one host."""

from .topology import (
    CommandError,
    HarnessError,
    Plan,
    Reply,
    ServerHandle,
    Session,
    Topology,
    kernel_test_prerequisites,
    plan_topology,
)

__all__ = [
    "CommandError",
    "HarnessError",
    "Plan",
    "Reply",
    "ServerHandle",
    "Session",
    "Topology",
    "kernel_test_prerequisites",
    "plan_topology",
]
