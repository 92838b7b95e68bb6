"""Errors a user can cause, each tied to where in their file it happened."""

from __future__ import annotations

from dataclasses import dataclass

# A model with a million mistakes is reported by its first ones: the report stays
# readable and its size bounded, whatever the file.
MAX_REPORTED = 50
# The longest piece of the user's text an error message repeats (a value, a key).
MAX_ECHO = 80


def printable(text: str) -> str:
    """`text` with its control characters escaped, so that it cannot rewrite the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def echo(text: str) -> str:
    """`text` as an error message may repeat it: cut to MAX_ECHO characters (then "..."),
    escaped (printable)."""
    cut = printable(text[:MAX_ECHO])
    return cut + "..." if len(text) > MAX_ECHO else cut


@dataclass(frozen=True, order=True, slots=True)
class Location:
    """A place in a model file: 1-based line and column. (Slots: a model has one per
    value, and a dict per Location doubled what they cost.)"""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a model: where, which key, what, and what to do."""

    location: Location | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        key = f"{self.path}: " if self.path else ""
        return f"{where}{key}{self.message}"


def report_order(problem: Problem) -> tuple[Location, str, str]:
    """The order of a report: by place in the file, then key path, then message."""
    return (problem.location or Location("", 0, 0), problem.path, problem.message)


class NftfwdError(Exception):
    """A failure to report to the user in plain words (exit 2), never as a traceback."""

    exit_code = 2


class ModelError(NftfwdError):
    """The model file is not valid; carries the first MAX_REPORTED problems found, first
    one first, and how many more there were (`more`: ones a stage stopped collecting)."""

    def __init__(self, problems: list[Problem], more: int = 0) -> None:
        ordered = sorted(problems, key=report_order)
        self.problems = ordered[:MAX_REPORTED]
        self.omitted = len(ordered) - len(self.problems) + more
        lines = [str(p) for p in self.problems]
        if self.omitted:
            lines.append(f"... and {self.omitted} more problem(s) not shown; fix these first")
        super().__init__("\n".join(lines))
