"""Validation: check a whole table against the contract, all problems at once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from precision_pain.data.contract.cells import _CHECKERS, _MISSING, _category_key, _problem
from precision_pain.data.contract.deid import _identifier_problems, shown_name
from precision_pain.data.contract.errors import ContractError, Problem
from precision_pain.data.contract.schema import (
    _BY_NAME,
    _DOC,
    CONTRACT_VERSION,
    CONTRACT_VERSIONS,
    OPTIONAL_SCHEMA,
    PLAN_COLUMN,
    SCHEMA,
    VERSION_COLUMN,
    ColumnSpec,
    column,
)

logger = logging.getLogger(__name__)


def validate_cohort(df: pd.DataFrame, source: str, require_outcomes: bool) -> pd.DataFrame:
    """Check ``df`` against the contract; return a new canonically typed frame or raise."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{source}: expected a pandas DataFrame, got {type(df).__name__}")
    columns = [str(c) for c in df.columns]
    with_plans = require_outcomes and PLAN_COLUMN in columns
    specs = [_plan_aware(s, with_plans) for s in SCHEMA
             if require_outcomes or s.role != "outcome"]
    problems = _identifier_problems(columns, df) + _table_problems(df, columns, specs)
    position = {name: i for i, name in reversed(list(enumerate(columns)))}
    specs = [*specs, *(s for s in OPTIONAL_SCHEMA if s.name in position
                       and (require_outcomes or s.role != "outcome"))]
    converted: dict[str, np.ndarray] = {}
    for spec in (s for s in specs if s.name in position):
        values, found = _CHECKERS[spec.kind](spec, df.iloc[:, position[spec.name]])
        converted[spec.name] = values
        problems += found
    if require_outcomes and "pain_baseline" in converted:
        raw_baseline = df.iloc[:, position["pain_baseline"]]
        problems += _zero_baseline(converted["pain_baseline"], raw_baseline)
    problems += _version_problems(converted, columns, df, position)
    if with_plans:
        problems += _plan_problems(converted, df, position)
    if problems:
        raise ContractError(source, problems)
    _top_code(converted, source)
    _log_dropped(columns, specs, source)
    logger.info("validated %s: %d rows, contract v%d", source, len(df),
                file_contract_version(columns, converted))
    return pd.DataFrame(converted, index=df.index.copy())


# --------------------------------------------------------------------------- versions, plans

def file_contract_version(columns: Sequence[str], converted: dict[str, np.ndarray]) -> int:
    """The version a file follows: its contract_version column, else 2 with a plan column."""
    if VERSION_COLUMN in converted and len(converted[VERSION_COLUMN]):
        return int(converted[VERSION_COLUMN][0])
    return 2 if PLAN_COLUMN in columns else 1


def _version_problems(converted: dict[str, np.ndarray], columns: list[str], df: pd.DataFrame,
                      position: dict[str, int]) -> list[Problem]:
    if VERSION_COLUMN not in converted:
        return []
    spec, values = column(VERSION_COLUMN), converted[VERSION_COLUMN]
    raw = df.iloc[:, position[VERSION_COLUMN]]
    newer = values > CONTRACT_VERSION
    if newer.any():
        return [_problem(spec, newer, raw, "name a newer contract version than this pipeline "
                         f"reads (versions {', '.join(map(str, CONTRACT_VERSIONS))})",
                         "upgrade precision-pain, or write the file to contract version "
                         f"{CONTRACT_VERSION} ({_DOC})")]
    if len(np.unique(values)) > 1:
        first = values != values[0]
        return [_problem(spec, first, raw, f"differ from the first row's version {values[0]}",
                         "write one contract version for the whole file")]
    if len(values) and values[0] == 1 and PLAN_COLUMN in columns:
        return [_problem(spec, values == 1, raw, "say version 1, but the file has a plan "
                         "column (contract v2)", "set contract_version to 2, or remove the "
                         "plan column")]
    return []


def _blank(raw: pd.Series) -> np.ndarray:
    """Cells left empty (or written as a missing-value word)."""
    return (raw.isna() | raw.astype(str).str.strip().str.lower().isin(_MISSING)).to_numpy()


def _plan_aware(spec: ColumnSpec, with_plans: bool) -> ColumnSpec:
    """With a plan column (contract v2), treatment may be left empty (the plan names it)."""
    return replace(spec, nullable=True) if with_plans and spec.name == "treatment" else spec


def _plan_problems(converted: dict[str, np.ndarray], df: pd.DataFrame,
                   position: dict[str, int]) -> list[Problem]:
    """Fill treatment from one-component plans and plan from treatment; report conflicts."""
    plan = converted[PLAN_COLUMN].astype(object)
    treatment = converted.get("treatment", np.full(len(plan), "", dtype=object)).astype(object)
    raw = df.iloc[:, position[PLAN_COLUMN]]
    raw_treatment = (df.iloc[:, position["treatment"]] if "treatment" in position
                     else pd.Series([""] * len(df), index=df.index))
    neither = _blank(raw) & _blank(raw_treatment)
    differ = (plan != "") & (treatment != "") & (plan != treatment)
    problems = []
    if neither.any():
        problems.append(_problem(column(PLAN_COLUMN), neither, raw, "with neither a plan nor "
                                 "a treatment", "give the episode's plan (or its treatment)",
                                 show_values=False))
    if differ.any():
        problems.append(_problem(column(PLAN_COLUMN), differ, raw, "disagreeing with the "
                                 "row's treatment", "leave treatment empty where plan is given "
                                 "(a one-component plan may repeat it)"))
    single = np.array(["+" not in p for p in plan], dtype=bool)
    converted[PLAN_COLUMN] = np.where(plan == "", treatment, plan).astype(object)
    converted["treatment"] = np.where(single, converted[PLAN_COLUMN], "").astype(object)
    return problems


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
