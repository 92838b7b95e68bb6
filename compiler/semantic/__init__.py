"""Stage 2b, meaning: model.md's rules that a schema cannot express; builds the typed model.

values.py parses each value, tree.py builds the model from them, rules.py holds one
function per rule that relates values; every problem of all three is reported at once.
"""

from __future__ import annotations

from nftfwd.model import Model
from nftfwd.semantic.rules import RULES, HostView
from nftfwd.semantic.tree import Problems, build_tree
from nftfwd.source import Document

__all__ = ["RULES", "build_model"]


def build_model(doc: Document) -> Model:
    """Turn shape-checked data into the typed model, or raise every problem found."""
    problems = Problems()
    tree = build_tree(doc, problems)
    for host in tree.model.hosts:
        view = HostView(doc, host, ("hosts", host.name), tree.forward_keys)
        found = problems.count
        for rule in RULES:
            if not rule.across:
                for problem in rule.check(view):
                    problems.add(problem)
        if host.name in tree.refused_hosts or problems.count > found:
            continue  # the rules across entities read only a host whose values all passed
        for rule in RULES:
            if rule.across:
                for problem in rule.check(view):
                    problems.add(problem)
    if problems.count:
        raise problems.error()
    return tree.model
