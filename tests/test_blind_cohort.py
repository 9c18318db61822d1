"""The blind generator (benchmarks/blind_cohort.py) writes valid data whose truth is exact.

It was written without reading the project's simulator or models; the models are scored on
it, so its cohort must pass the contract and its truth must be the true distribution of the
outcomes it draws.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark_modules import assert_truth_covers_eligible, load_benchmark
from precision_pain.data.prepare import align_truth, prepare_cohort
from precision_pain.registry import TREATMENTS


@pytest.fixture(scope="module")
def blind():
    return load_benchmark("blind_cohort")


@pytest.fixture(scope="module")
def large(blind):
    """60,000 episodes with the truth of the received treatment merged in."""
    raw, truth = blind.generate(60000, seed=11)
    got = truth.merge(raw[["patient_id", "treatment", "pain_baseline", "pain_followup",
                           "adverse_event", "age", "egfr"]], on=["patient_id", "treatment"])
    return raw, truth, got


def test_blind_cohort_passes_the_contract_and_its_truth_covers_every_eligible_pair(blind):
    raw, truth = blind.generate(600, seed=3)
    prepared = prepare_cohort(raw, "blind_cohort", 0.30)
    aligned = align_truth(truth, prepared, "blind_cohort")
    assert len(prepared) == 600 and prepared["patient_id"].is_unique
    assert set(blind.SIMULATED) == set(TREATMENTS) - {"neurofeedback"}
    assert set(prepared["treatment"]) <= set(blind.SIMULATED)
    assert (raw["pain_baseline"] > 0).all()
    assert raw["pain_followup"].between(0, 10).all()
    assert_truth_covers_eligible(prepared, aligned, blind.SIMULATED)
    assert np.isfinite(aligned.loc[aligned["eligible"], "expected_nrs_change"]).all()
    # every received treatment is eligible for the patient's condition
    received = truth.merge(raw[["patient_id", "treatment"]], on=["patient_id", "treatment"])
    assert received["eligible"].all() and len(received) == 600


def test_blind_cohort_round_trips_through_csv(blind, tmp_path):
    raw, _ = blind.generate(300, seed=8)
    path = tmp_path / "blind.csv"
    raw.to_csv(path, index=False)
    prepared = prepare_cohort(pd.read_csv(path), "blind_csv", 0.30)
    assert len(prepared) == 300


def test_blind_cohort_is_deterministic(blind):
    a, ta = blind.generate(300, seed=5)
    b, tb = blind.generate(300, seed=5)
    assert a.equals(b) and ta.equals(tb)
    c, _ = blind.generate(300, seed=6)
    assert not a.equals(c)


def _within(observed: np.ndarray, expected: np.ndarray, variance: np.ndarray) -> bool:
    return abs(observed.sum() - expected.sum()) < 4 * np.sqrt(variance.sum())


def test_blind_truth_is_the_distribution_of_the_drawn_outcomes(large):
    """Response rate, adverse-event rate and mean change in pain of the received treatment
    match the truth within 4 standard errors, overall and for every treatment."""
    _, _, got = large
    response = ((got["pain_baseline"] - got["pain_followup"]) / got["pain_baseline"] >= 0.30)
    got = got.assign(response=response.to_numpy(),
                     drawn=(got["pain_followup"] - got["pain_baseline"]).to_numpy())
    for name, rows in [("all", got), *got.groupby("treatment")]:
        p = rows["p_response"].to_numpy()
        assert _within(rows["response"].to_numpy(), p, p * (1 - p)), name
        q = rows["p_adverse_event"].to_numpy()
        assert _within(rows["adverse_event"].to_numpy(), q, q * (1 - q)), name
        diff = rows["drawn"].to_numpy() - rows["expected_nrs_change"].to_numpy()
        assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(len(diff)), name
    high = got[got["pain_baseline"] >= 9]  # where the cap at 10 bites
    assert (high["pain_followup"] == 10).any()
    diff = (high["drawn"] - high["expected_nrs_change"]).to_numpy()
    assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(len(diff))


def test_blind_usual_care_and_missingness(large):
    """p_usual_care is a distribution over the eligible treatments with positivity; eGFR is
    missing more often for younger patients; genotypes and scores have gaps."""
    raw, truth, _ = large
    eligible = truth[truth["eligible"]]
    sums = eligible.groupby("patient_id")["p_usual_care"].sum()
    assert np.allclose(sums, 1.0)
    assert eligible["p_usual_care"].min() >= 0.02 - 1e-12
    assert (truth.loc[~truth["eligible"], "p_usual_care"].fillna(0) == 0).all()
    shares = raw["treatment"].value_counts(normalize=True)
    assert shares.min() < 0.05 and shares.max() > 0.15  # unbalanced usual care
    missing = raw["egfr"].isna()
    young, old = missing[raw["age"] < 50].mean(), missing[raw["age"] > 65].mean()
    assert young > 0.35 and old < 0.15
    for column in ("pcs", "ort_score", "phq9", "gad7", "bmi"):
        assert 0.01 < raw[column].isna().mean() < 0.5, column
    assert 0.02 < (raw["CYP2D6"] == "unknown").mean() < 0.1
    assert 0.02 < raw["OPRM1_rs1799971"].isna().mean() < 0.1
