"""Errors a user can cause, each tied to where in their file it happened."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Location:
    """A place in a model file: 1-based line and column."""

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


class NftfwdError(Exception):
    """A failure to report to the user in plain words (exit 2), never as a traceback."""

    exit_code = 2


class ModelError(NftfwdError):
    """The model file is not valid; carries every problem found, first one first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(
            problems, key=lambda p: (p.location or Location("", 0, 0), p.path, p.message)
        )
        super().__init__("\n".join(str(p) for p in self.problems))
