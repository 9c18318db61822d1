"""The independent second generator (benchmarks/alt_cohort.py) keeps producing valid data.

The learning-curve and DR-coverage benchmarks score every model type on it; a registry change
that breaks it (as adding an opt-in treatment once did) must fail here, not in a benchmark run.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmark_modules import assert_truth_covers_eligible, load_benchmark
from precision_pain.data.prepare import align_truth, prepare_cohort


def _alt_cohort():
    return load_benchmark("alt_cohort")


def test_alt_cohort_passes_the_contract_and_its_truth_covers_every_eligible_pair():
    alt = _alt_cohort()
    raw, truth = alt.generate(600, seed=3)
    prepared = prepare_cohort(raw, "alt_cohort", 0.30)
    aligned = align_truth(truth, prepared, "alt_cohort")
    assert len(prepared) == 600
    assert set(prepared["treatment"]) <= set(alt.SIMULATED)
    assert_truth_covers_eligible(prepared, aligned, alt.SIMULATED)


def test_alt_cohort_is_deterministic():
    alt = _alt_cohort()
    a, _ = alt.generate(200, seed=5)
    b, _ = alt.generate(200, seed=5)
    assert a.equals(b)


def test_alt_truth_expected_nrs_change_is_the_mean_of_the_drawn_change():
    """The truth's expected change in pain (for prepare.outcome: nrs_change) is the mean of
    the follow-up the generator draws, cap at 10 included: checked on 60,000 episodes."""
    alt = _alt_cohort()
    raw, truth = alt.generate(60000, seed=11)
    got = truth.merge(raw[["patient_id", "treatment", "pain_baseline", "pain_followup"]],
                      on=["patient_id", "treatment"])
    drawn = (got["pain_followup"] - got["pain_baseline"]).to_numpy()
    diff = drawn - got["expected_nrs_change"].to_numpy()
    assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(len(diff))
    high = got["pain_baseline"].to_numpy() >= 9  # where the cap at 10 bites
    capped = diff[high]
    assert abs(capped.mean()) < 4 * capped.std() / np.sqrt(len(capped))
    assert (truth.loc[truth["eligible"], "expected_nrs_change"] < 0).mean() > 0.9  # relief


@pytest.mark.slow
def test_learning_curve_trains_and_scores_the_default_learner_on_it(params):
    """The benchmark's own loop (the pipeline's functions) on a small alt cohort, with the
    pooled learner's search cut down; the registry's opt-in treatments are left out as the
    CLI leaves them out (modeled_treatments)."""
    curve = load_benchmark("learning_curve")
    prepared, truth = curve.cohort("alt", 1500, 7, params)
    pooled = params.model.hyperparameters["pooled_xgboost"]
    small = {**pooled, "response": {**pooled["response"], "max_depth": [3],
                                    "n_estimators": [50, 100],
                                    "default": {"max_depth": 3, "n_estimators": 100}},
             "adverse_event": {**pooled["adverse_event"], "n_estimators": [20, 50]}}
    fast = params.model_copy(update={"model": params.model.model_copy(update={
        "hyperparameters": {**params.model.hyperparameters, "pooled_xgboost": small}})})
    row = curve.run_one(prepared, truth, "pooled_xgboost", 0.5, fast, n_bootstrap=5)
    assert np.isfinite(row["share"]) and row["share_low"] <= row["share"] <= row["share_high"]
    assert abs(row["dr_error"]) < 0.2 and row["train_seconds"] > 0


def test_alt_plan_cohort_passes_contract_v2_and_its_truth_covers_every_valid_plan():
    """benchmarks/alt_plans.py: the independent generator's plan episodes (the plan
    learner's check on a second data-generating process, docs/evaluation.md)."""
    from precision_pain.models.plan_model import episode_plans
    from precision_pain.plans import parse_plan, plan_eligibility

    plans_module = load_benchmark("alt_plans")
    raw, truth = plans_module.generate(800, seed=4)
    prepared = prepare_cohort(raw, "alt_plans", 0.30)
    received = episode_plans(prepared)
    multi = np.array(["+" in p for p in received])
    assert 0.1 < multi.mean() < 0.6  # usual care gives plans to a share of patients
    names = truth["plan"].unique()
    eligible = plan_eligibility(prepared["condition"], [parse_plan(p) for p in names])
    wide = truth.pivot(index="patient_id", columns="plan", values="p_response")
    wide = wide.loc[prepared["patient_id"], names].to_numpy()
    assert np.isfinite(wide[eligible]).all() and np.isnan(wide[~eligible]).all()
    assert ((wide[eligible] > 0) & (wide[eligible] < 1)).all()
    # every received plan is valid for the patient's condition
    column = {p: j for j, p in enumerate(names)}
    assert eligible[np.arange(len(prepared)), [column[p] for p in received]].all()
    again, _ = plans_module.generate(800, seed=4)
    assert again.equals(raw)
