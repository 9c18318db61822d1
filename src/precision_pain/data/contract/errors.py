"""Contract errors: one ``Problem`` per violation, and the ``ContractError`` that lists them all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from precision_pain.data.contract.schema import _DOC, _ROW_NOTE, CONTRACT_VERSION

_SHOW = 5  # row numbers and values shown per problem
_KEEP_ROWS = 1000  # row numbers kept per problem; ``count`` is the total


@dataclass(frozen=True)
class Problem:
    """One contract violation.

    ``rows`` are 1-based data row numbers (header excluded), at most the first
    1000; ``count`` is the total number of offending rows (or columns, for
    file-level problems). ``values`` are distinct offending cells of ``column``.
    """

    column: str | None
    message: str
    fix: str
    rows: list[int] = field(default_factory=list)
    count: int = 0
    values: list[str] = field(default_factory=list)
    allowed: str = ""

    def describe(self) -> str:
        """One readable line: column, count, rows, values, allowed values, fix."""
        where = self.column if self.column is not None else "(file)"
        text = f"{where}: {self.message}"
        if self.rows:
            noun = "row" if self.count == 1 else "rows"
            text = f"{where}: {self.count} {noun} {self.message} ({_rows_text(self)})"
        if self.values:
            text += f"; values: {', '.join(self.values)}"
        if self.allowed:
            text += f"; allowed: {self.allowed}"
        return f"{text}. Fix: {self.fix}"


def _rows_text(problem: Problem) -> str:
    shown = ", ".join(str(r) for r in problem.rows[:_SHOW])
    more = problem.count - min(len(problem.rows), _SHOW)
    label = "row" if problem.count == 1 else "rows"
    return f"{label} {shown}" + (f" and {more} more" if more > 0 else "")


class ContractError(ValueError):
    """Input that breaks the data contract; ``problems`` lists every violation."""

    def __init__(self, source: str | Path, problems: Sequence[Problem]) -> None:
        self.source = str(source)
        self.problems = list(problems)
        super().__init__(self.report())

    def __reduce__(self) -> tuple[type, tuple[str, list[Problem]]]:
        return type(self), (self.source, self.problems)

    def report(self) -> str:
        """Multi-line report: the file first, then one line per problem."""
        n = len(self.problems)
        head = (f"{self.source}: {n} problem{'s' if n != 1 else ''} with the cohort data "
                f"(contract v{CONTRACT_VERSION}, see {_DOC}; {_ROW_NOTE}):")
        return "\n".join([head, *(f"  - {p.describe()}" for p in self.problems)])
