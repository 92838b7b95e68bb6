"""Three-valued logic: a match holds for all of a flow's packets (YES), none (NO), or MAYBE.

MAYBE: for some of them, or the match cannot be judged."""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum


class Tri(Enum):
    NO = 0
    MAYBE = 1
    YES = 2


def t_and(*values: Tri) -> Tri:
    return min(values, key=lambda t: t.value, default=Tri.YES)


def t_not(value: Tri) -> Tri:
    return {Tri.NO: Tri.YES, Tri.YES: Tri.NO, Tri.MAYBE: Tri.MAYBE}[value]


def t_any(values: Iterable[Tri]) -> Tri:
    """Matches if some element does (elements of a set are alternatives)."""
    return max(values, key=lambda t: t.value, default=Tri.NO)


def t_every(values: Iterable[Tri]) -> Tri:
    """The flow's possible values (atoms) all match, none match, or some."""
    seen = set(values)
    return seen.pop() if len(seen) == 1 else Tri.MAYBE if seen else Tri.NO


def t_merge(a: Tri, b: Tri) -> Tri:
    return a if a is b else Tri.MAYBE
