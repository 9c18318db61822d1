"""Validation: check a whole table against the contract, all problems at once."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from precision_pain.data.contract.cells import _CHECKERS, _category_key, _problem
from precision_pain.data.contract.deid import _identifier_problems, shown_name
from precision_pain.data.contract.errors import ContractError, Problem
from precision_pain.data.contract.schema import (
    _BY_NAME,
    _DOC,
    CONTRACT_VERSION,
    OPTIONAL_SCHEMA,
    SCHEMA,
    ColumnSpec,
    column,
)

logger = logging.getLogger(__name__)


def validate_cohort(df: pd.DataFrame, source: str, require_outcomes: bool) -> pd.DataFrame:
    """Check ``df`` against the contract; return a new canonically typed frame or raise."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{source}: expected a pandas DataFrame, got {type(df).__name__}")
    columns = [str(c) for c in df.columns]
    specs = [s for s in SCHEMA if require_outcomes or s.role != "outcome"]
    problems = _identifier_problems(columns, df) + _table_problems(df, columns, specs)
    position = {name: i for i, name in reversed(list(enumerate(columns)))}
    specs = [*specs, *(s for s in OPTIONAL_SCHEMA if s.name in position)]
    converted: dict[str, np.ndarray] = {}
    for spec in (s for s in specs if s.name in position):
        values, found = _CHECKERS[spec.kind](spec, df.iloc[:, position[spec.name]])
        converted[spec.name] = values
        problems += found
    if require_outcomes and "pain_baseline" in converted:
        raw_baseline = df.iloc[:, position["pain_baseline"]]
        problems += _zero_baseline(converted["pain_baseline"], raw_baseline)
    if problems:
        raise ContractError(source, problems)
    _top_code(converted, source)
    _log_dropped(columns, specs, source)
    logger.info("validated %s: %d rows, contract v%d", source, len(df), CONTRACT_VERSION)
    return pd.DataFrame(converted, index=df.index.copy())


def _table_problems(df: pd.DataFrame, columns: list[str], specs: Sequence[ColumnSpec]
                    ) -> list[Problem]:
    problems = [Problem(shown_name(name), f"appears {columns.count(name)} times in the columns",
                        "keep one column of that name; rename or delete the others")
                for name in dict.fromkeys(c for c in columns if columns.count(c) > 1)]
    if len(df) == 0:
        problems.append(Problem(None, "the table has no data rows", "add the cohort rows"))
    missing = [s.name for s in specs if s.name not in columns]
    if missing:
        problems.append(Problem(None, f"missing required columns: {', '.join(missing)}",
                                _missing_columns_fix(missing, columns), count=len(missing)))
    return problems


def _missing_columns_fix(missing: list[str], columns: list[str]) -> str:
    by_key = {_category_key(c).replace("_", ""): c for c in columns}
    renames = [f"rename {by_key[k]!r} to {m!r}" for m in missing
               if (k := m.lower().replace("_", "")) in by_key]
    hint = f" ({'; '.join(renames)})" if renames else ""
    if any(shown_name(c) != c for c in columns):
        hint += " (some column names look like data: is the header row missing?)"
    return (f"add these columns{hint}; genotype cells may be left empty, every other cell "
            f"needs a value ({_DOC})")


def _zero_baseline(baseline: np.ndarray, raw: pd.Series) -> list[Problem]:
    zero = baseline == 0
    if not zero.any():
        return []
    return [_problem(column("pain_baseline"), zero, raw,
                     "with pain_baseline = 0, so response = (baseline - followup) / baseline "
                     "cannot be defined",
                     "remove these episodes from the training file (they can still be scored "
                     "for prediction)")]


def _top_code(converted: dict[str, np.ndarray], source: str) -> None:
    for spec in SCHEMA:
        if spec.ceiling is None or spec.name not in converted:
            continue
        values = converted[spec.name]
        above = values > spec.max
        if above.any():
            converted[spec.name] = np.where(above, spec.max, values).astype(values.dtype)
            logger.info("%s: top-coded %d %s value(s) above %g to %g (HIPAA Safe Harbor)",
                        source, int(above.sum()), spec.name, spec.max - 1, spec.max)


def _log_dropped(columns: list[str], specs: Sequence[ColumnSpec], source: str) -> None:
    wanted = {s.name for s in specs}
    ignored = [c for c in columns if c in _BY_NAME and c not in wanted]
    extra = [shown_name(c) for c in columns if c not in _BY_NAME]
    if ignored:
        logger.info("%s: outcome columns ignored (outcomes not required): %s",
                    source, ", ".join(ignored))
    if extra:
        logger.warning("%s: dropped %d column(s) not in the data contract: %s",
                       source, len(extra), ", ".join(extra))
