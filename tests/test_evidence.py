"""The evaluation's evidence that predict carries beside its rankings (predict/evidence.py)."""

from __future__ import annotations

import pytest

from precision_pain.predict.evidence import (EVALUATED_KEY, SCORED_KEY, bundle_hashes,
                                             evaluation_evidence, evidence_sentence)

GAIN = "model_dr_gain_over_one_size_fits_all"


def _summary(low: float, truth: bool = True) -> dict:
    return {SCORED_KEY: "abc", "n_test_patients": 5000, "has_ground_truth": truth,
            "harm_weight": 0.5,
            "policy": {"share_of_oracle_gain_captured": 0.744},
            "off_policy": {GAIN: 0.035, f"{GAIN}_ci_low": low, f"{GAIN}_ci_high": 0.09,
                           "one_size_fits_all_treatment": "duloxetine",
                           "model_dr_gain_over_usual_care": 0.078,
                           "model_dr_gain_over_usual_care_ci_low": 0.039,
                           "model_dr_gain_over_usual_care_ci_high": 0.122}}


def test_an_evaluation_counts_only_for_the_models_it_scored():
    assert bundle_hashes({EVALUATED_KEY: "abc"}, "def") == {"abc", "def"}
    assert bundle_hashes({}, None) == set()
    assert evaluation_evidence(_summary(0.01), {"abc"}, "m.json")["status"] == "evaluated"
    assert evaluation_evidence(_summary(0.01), {"zzz"}, "m.json") == {
        "status": "other_models", "source": "m.json"}
    assert evaluation_evidence(None, {"abc"}, "m.json") == {"status": "not_found",
                                                            "source": "m.json"}
    # an evaluation that predates the hash is not taken as evidence about these models
    unmarked = {k: v for k, v in _summary(0.01).items() if k != SCORED_KEY}
    assert evaluation_evidence(unmarked, {"abc"}, "m.json")["status"] == "other_models"


def test_evidence_carries_the_gain_its_interval_and_the_share_with_a_truth():
    shown = evaluation_evidence(_summary(0.01), {"abc"}, "m.json")
    assert shown["dr_gain_over_one_size_fits_all"] == pytest.approx(0.035)
    assert (shown["dr_gain_ci_low"], shown["dr_gain_ci_high"]) == (0.01, 0.09)
    assert shown["gain_shown"] is True and shown["one_size_fits_all_treatment"] == "duloxetine"
    assert shown["share_of_oracle_gain_captured"] == pytest.approx(0.744)
    assert evaluation_evidence(_summary(-0.015), {"abc"}, "m.json")["gain_shown"] is False
    real_extract = evaluation_evidence(_summary(0.01, truth=False), {"abc"}, "m.json")
    assert "share_of_oracle_gain_captured" not in real_extract


def test_the_report_sentence_warns_when_no_gain_is_shown_or_no_evaluation_fits():
    text, warning = evidence_sentence(evaluation_evidence(_summary(0.01), {"abc"}, "m.json"))
    assert not warning
    assert "+0.035 (95 % interval +0.010 to +0.090)" in text and "duloxetine" in text
    assert "74.4 %" in text and "5,000 held-out test patients" in text
    assert "usual care gave: +0.078 (95 % interval +0.039 to +0.122)" in text
    text, warning = evidence_sentence(evaluation_evidence(_summary(-0.015), {"abc"}, "m.json"))
    assert warning and "could not show" in text and "-0.015" in text
    for status in ("not_found", "other_models"):
        text, warning = evidence_sentence({"status": status, "source": "m.json"})
        assert warning and "m.json" in text
    no_single = evaluation_evidence({**_summary(0.01), "off_policy": {}}, {"abc"}, "m.json")
    text, warning = evidence_sentence(no_single)
    assert warning and "no treatment was open to every test patient" in text


def test_rankings_at_another_harm_weight_are_told_the_evaluation_did_not_measure_it():
    same = evaluation_evidence(_summary(0.01), {"abc"}, "m.json", harm_weight=0.5)
    assert "rankings_harm_weight" not in same
    assert "(harm weight 0.5)" in evidence_sentence(same)[0]
    other = evaluation_evidence(_summary(0.01), {"abc"}, "m.json", harm_weight=1.0)
    assert other["rankings_harm_weight"] == 1.0
    assert "These rankings use harm weight 1, which the evaluation did not measure" in \
        evidence_sentence(other)[0]


def test_missing_figures_read_as_not_available_instead_of_failing():
    """A bootstrap interval can be null in the JSON file (a replicate without the patients it
    needs); the sentence must still be written."""
    summary = _summary(0.01)
    summary["off_policy"] = {**summary["off_policy"], f"{GAIN}_ci_high": None,
                             f"{GAIN}_ci_low": None,
                             "model_dr_gain_over_usual_care_ci_low": float("nan")}
    summary["policy"] = {"share_of_oracle_gain_captured": None}
    evidence = evaluation_evidence(summary, {"abc"}, "m.json")
    assert evidence["gain_shown"] is False  # no interval: nothing shown
    text, warning = evidence_sentence(evidence)
    assert warning and "(95 % interval n/a to n/a)" in text
    assert "(95 % interval n/a to +0.122)" in text
    assert "captured" not in text


def test_a_cross_fitted_gain_is_the_evidence_when_evaluate_computed_one():
    """With ``evaluate.cross_fitted_folds`` the gain over every patient answers the question:
    predict shows it, says it is the learner's over the whole extract, and warns by it."""
    crossed = {GAIN: 0.032, f"{GAIN}_ci_low": 0.008, f"{GAIN}_ci_high": 0.054,
               "one_size_fits_all_treatment": "duloxetine", "folds": 5, "n_patients": 20000}
    summary = {**_summary(-0.015), "off_policy_cross_fitted": crossed}
    evidence = evaluation_evidence(summary, {"abc"}, "m.json")
    assert evidence["gain_from"] == "cross_fitted" and evidence["gain_shown"] is True
    assert evidence["dr_gain_over_one_size_fits_all"] == pytest.approx(0.032)
    assert "dr_gain_over_usual_care" not in evidence  # not in this cross-fitted block
    text, warning = evidence_sentence(evidence)
    assert not warning
    assert "cross-fitted over all 20,000 patients of its extract (5 folds" in text
    assert "+0.032 (95 % interval +0.008 to +0.054)" in text
    # without it, the test split's (here not shown) is the evidence, as before
    plain = evaluation_evidence(_summary(-0.015), {"abc"}, "m.json")
    assert plain["gain_from"] == "test_split" and plain["gain_shown"] is False
    assert "5,000 held-out test patients" in evidence_sentence(plain)[0]
