"""Prepare stage: a validated cohort plus PGx phenotypes and the derived outcome.

The core is pure: a raw cohort frame in, a prepared frame out. Validation
(:mod:`precision_pain.data.contract`) and CPIC translation (:mod:`precision_pain.data.pgx`)
live in their own modules; this one wires them together for the pipeline and
for prediction alike.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import pandas as pd

from precision_pain.data.contract import ContractError, derive_response, validate_cohort
from precision_pain.data.contract.errors import Problem
from precision_pain.data.contract.schema import PLAN_COLUMN
from precision_pain.data.pgx import annotate_pgx

logger = logging.getLogger(__name__)


def prepare_cohort(raw: pd.DataFrame, source: str, response_threshold: float | None,
                   require_outcomes: bool = True) -> pd.DataFrame:
    """Validate ``raw`` against the contract, add PGx columns and, for training, ``response``."""
    valid = validate_cohort(raw, source=source, require_outcomes=require_outcomes)
    prepared = annotate_pgx(valid)
    if require_outcomes:
        if response_threshold is None:
            raise ValueError("response_threshold is required when outcomes are present")
        response = derive_response(prepared["pain_baseline"], prepared["pain_followup"],
                                   response_threshold)
        prepared = prepared.assign(response=response.astype(bool))
    return prepared


def single_treatment_episodes(valid: pd.DataFrame, source: str) -> pd.DataFrame:
    """The episodes of one treatment (one-component plans); plan episodes counted and logged.

    The prepared cohort keeps every episode; the single-treatment models and their
    evaluation read the episodes of one component (train and evaluate call this), and the
    plan learner (:mod:`precision_pain.models.plan_model`) reads them all. A file without a
    plan column is returned as is.
    """
    if PLAN_COLUMN not in valid.columns:
        return valid
    multi = valid[PLAN_COLUMN].astype(str).str.contains("+", regex=False)
    if multi.any():
        logger.warning("%s: %d of %d episodes are plans of two or more components; the "
                       "single-treatment models leave them out (the plan learner reads them)",
                       source, int(multi.sum()), len(valid))
    return valid.loc[~multi] if multi.any() else valid


def prepare_partitions(chunks: Iterable[pd.DataFrame], source: str, response_threshold: float,
                       engine: Any) -> pd.DataFrame:
    """:func:`prepare_cohort` mapped over a cohort's partitions on ``engine``
    (:mod:`precision_pain.engine`); the same prepared table as one call on the whole cohort.

    Every partition is checked: the problems of all of them are reported at once, with row
    numbers counted from the start of the file, as for the whole table.
    """
    from precision_pain.engine import numbered

    parts, problems = [], []
    for result in engine.imap(prepare_partition, numbered(chunks), source, response_threshold,
                              desc="prepare", unit="partition"):
        if isinstance(result, ContractError):
            problems += result.problems
        else:
            parts.append(result)
    if problems:
        raise ContractError(source, merge_problems(problems))
    return pd.concat(parts, ignore_index=True)


def prepare_partition(item: tuple[int, pd.DataFrame], source: str, response_threshold: float
                      ) -> pd.DataFrame | ContractError:
    """One partition prepared, or its contract problems (rows counted from the file start)."""
    offset, raw = item
    try:
        return prepare_cohort(raw, source, response_threshold)
    except ContractError as exc:
        return ContractError(source, [replace(p, rows=[r + offset for r in p.rows])
                                      for p in exc.problems])


def merge_problems(problems: Iterable[Problem]) -> list[Problem]:
    """One problem per (column, message) over every partition: rows, counts and values
    joined; file-level problems first, then by column in contract order (as for a whole
    table)."""
    from precision_pain.data.contract.errors import _KEEP_ROWS, _SHOW
    from precision_pain.data.contract.schema import SCHEMA

    merged: dict[tuple[Any, ...], Problem] = {}
    for p in problems:
        key = (p.column, p.message, p.fix, p.allowed)
        if key not in merged:
            merged[key] = p
            continue
        first = merged[key]
        merged[key] = replace(first, rows=(first.rows + p.rows)[:_KEEP_ROWS],
                              count=first.count + p.count,
                              values=list(dict.fromkeys(first.values + p.values))[:_SHOW])
    order = {spec.name: i for i, spec in enumerate(SCHEMA)}
    return sorted(merged.values(), key=lambda p: order.get(p.column or "", -1))


def align_truth(truth: pd.DataFrame, prepared: pd.DataFrame, source: str) -> pd.DataFrame:
    """Ground truth restricted to the cohort's patients; every patient must be covered."""
    required = {"patient_id", "treatment", "p_response", "p_adverse_event"}
    missing = required - set(truth.columns)
    if missing:
        raise ValueError(f"{source}: ground-truth file lacks columns {sorted(missing)}")
    patients = pd.Index(prepared["patient_id"].unique())
    uncovered = patients.difference(pd.Index(truth["patient_id"].unique()))
    if len(uncovered):
        raise ValueError(
            f"{source}: {len(uncovered)} cohort patients have no ground truth "
            "(the truth file belongs to another cohort); set data.ground_truth to null "
            "for a cohort without ground truth"
        )
    return truth[truth["patient_id"].isin(patients)].reset_index(drop=True)
