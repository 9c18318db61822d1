"""Evaluation: model metrics and policy values against the ground truth."""

from __future__ import annotations

import pandas as pd
import pytest

from precision_pain.evaluate import evaluate, policy_values


def _truth():
    # two patients, three treatments; 'c' is not eligible for patient 2
    return pd.DataFrame({
        "patient_id": ["1", "1", "1", "2", "2", "2"],
        "treatment": ["a", "b", "c"] * 2,
        "eligible": [True, True, True, True, True, False],
        "p_response": [0.5, 0.3, 0.9, 0.5, 0.8, 0.99],
        "p_adverse_event": [0.0] * 6,
    })


def _scores(choice_1: str, choice_2: str):
    rows = []
    for pid, choice in (("1", choice_1), ("2", choice_2)):
        for t in "abc":
            rows.append({"patient_id": pid, "treatment": t, "eligible": not (pid == "2" and t == "c"),
                         "p_response": 0.9 if t == choice else 0.1, "p_adverse_event": 0.0,
                         "net_benefit": 0.9 if t == choice else 0.1, "explanation": ""})
    return pd.DataFrame(rows)


def test_policy_values_by_hand():
    values = policy_values(_scores("c", "b"), _truth(), harm_weight=0.5)
    assert values["oracle"]["mean_true_response"] == pytest.approx((0.9 + 0.8) / 2)
    assert values["model"]["mean_true_response"] == pytest.approx((0.9 + 0.8) / 2)
    # one-size-fits-all: best treatment eligible for everyone ('a': 0.5, 'b': 0.55)
    assert values["one_size_fits_all"]["treatment"] == "b"
    assert values["share_of_oracle_gain_captured"] == pytest.approx(1.0)
    worse = policy_values(_scores("a", "a"), _truth(), harm_weight=0.5)
    assert worse["share_of_oracle_gain_captured"] < 0
    assert worse["first_choice_matches_oracle"] == 0.0


def test_evaluate_on_small_cohort(small_splits, small_bundle, small_synthetic):
    result = evaluate(small_splits["test"], small_bundle, small_synthetic.truth, harm_weight=0.5)
    assert set(result.per_treatment) == set(small_bundle.treatments)
    for metrics in result.per_treatment.values():
        assert 0.5 < metrics["response_auc"] <= 1.0
        assert 0 <= metrics["response_brier"] < 0.25
    policy = result.summary["policy"]
    assert policy["oracle"]["mean_true_net_benefit"] >= policy["model"]["mean_true_net_benefit"]


def test_evaluate_without_truth_reports_model_metrics_only(small_splits, small_bundle):
    result = evaluate(small_splits["test"], small_bundle, None, harm_weight=0.5)
    assert result.summary["has_ground_truth"] is False and "policy" not in result.summary
