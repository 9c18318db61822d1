"""Prepare stage: a validated cohort plus PGx phenotypes and the derived outcome.

The core is pure: a raw cohort frame in, a prepared frame out. Validation
(:mod:`precision_pain.data.contract`) and CPIC translation (:mod:`precision_pain.data.pgx`)
live in their own modules; this one wires them together for the pipeline and
for prediction alike.
"""

from __future__ import annotations

import pandas as pd

from precision_pain.data.contract import derive_response, validate_cohort
from precision_pain.data.pgx import annotate_pgx


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
