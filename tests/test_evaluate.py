"""Evaluation: metrics, policy values, trials, off-policy estimators, the whole stage.

Every estimator has a small example computed by hand, and properties where they
come naturally; the last tests run the stage on the shared small cohort.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import expit, logit

from precision_pain import RESEARCH_NOTICE
from precision_pain.evaluate import policy as pol
from precision_pain.evaluate.core import (EpisodeScores, calibration_against_truth,
                                         choose_one_size_fits_all, evaluate, model_ranks,
                                         score_test, truth_columns, true_matrices)
from precision_pain.evaluate.report_md import evaluation_report
from precision_pain.evaluate.metrics import (MIN_CLASS, binary_metrics, binary_metrics_ci,
                                    bootstrap_weights, calibration_intercept, calibration_slope,
                                    percentile_ci, weighted_auc, weighted_brier)

ONE = np.ones((1, 4))


# ----------------------------------------------------------------------------- metrics
def test_auc_and_brier_by_hand():
    y, p = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    # positive pairs: (0.35 > 0.1), (0.35 < 0.4), (0.8 > both) -> 3 of 4
    assert weighted_auc(y, p, ONE)[0] == pytest.approx(0.75)
    assert weighted_brier(y, p, ONE)[0] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    ties = np.array([0.5, 0.5, 0.5, 0.9])
    assert weighted_auc(y, ties, ONE)[0] == pytest.approx((0.5 + 0.5 + 1 + 1) / 4)


@settings(max_examples=50, deadline=None)
@given(st.integers(5, 60).flatmap(lambda n: st.tuples(
    arrays(np.int8, n, elements=st.integers(0, 1)),
    arrays(np.float64, n, elements=st.sampled_from([0.1, 0.2, 0.3, 0.5, 0.7, 0.9])),
    arrays(np.int64, n, elements=st.integers(0, 3)))))
def test_weighted_auc_equals_auc_of_repeated_rows(case):
    from sklearn.metrics import roc_auc_score

    y, p, counts = case
    repeated_y, repeated_p = np.repeat(y, counts), np.repeat(p, counts)
    got = weighted_auc(y, p, counts[None, :].astype(float))[0]
    if 0 < repeated_y.sum() < len(repeated_y):
        assert got == pytest.approx(roc_auc_score(repeated_y, repeated_p))
    else:
        assert np.isnan(got)


def test_calibration_of_perfectly_calibrated_predictions():
    rng = np.random.default_rng(0)
    p = expit(rng.normal(-0.5, 1.0, 40_000))
    y = (rng.random(p.size) < p).astype(float)
    w = np.ones((1, p.size))
    assert calibration_slope(y, p, w)[0] == pytest.approx(1.0, abs=0.05)
    assert calibration_intercept(y, p, w)[0] == pytest.approx(0.0, abs=0.03)
    # too extreme predictions (logit doubled): slope about 1/2
    extreme = expit(2 * logit(p))
    assert calibration_slope(y, extreme, w)[0] == pytest.approx(0.5, abs=0.03)
    # predictions shifted up by 0.5 on the logit scale: intercept about -0.5
    shifted = expit(logit(p) + 0.5)
    assert calibration_intercept(y, shifted, w)[0] == pytest.approx(-0.5, abs=0.05)


def test_calibration_by_hand_with_two_prediction_levels():
    # two groups: predictions 0.2 and 0.5, observed rates 0.25 and 0.6; the fit is saturated,
    # so slope = difference of observed logits / difference of predicted logits
    y = np.array([1] + [0] * 3 + [1] * 6 + [0] * 4, dtype=float)
    p = np.array([0.2] * 4 + [0.5] * 10)
    w = np.ones((1, y.size))
    slope = (logit(0.6) - logit(0.25)) / (logit(0.5) - logit(0.2))
    assert calibration_slope(y, p, w)[0] == pytest.approx(slope, rel=1e-6)
    # intercept: solves sum(y) = sum(expit(a + logit(p)))
    a = calibration_intercept(y, p, w)[0]
    assert np.sum(expit(a + logit(p))) == pytest.approx(y.sum(), rel=1e-6)


def test_calibration_is_nan_when_undefined():
    y = np.array([1.0] * (MIN_CLASS - 1) + [0.0] * 50)
    p = np.linspace(0.05, 0.5, y.size)
    w = np.ones((1, y.size))
    assert np.isnan(calibration_slope(y, p, w)[0])
    constant = np.full(60, 0.3)
    y_mixed = np.r_[np.ones(20), np.zeros(40)]
    assert np.isnan(calibration_slope(y_mixed, constant, np.ones((1, 60)))[0])
    assert calibration_intercept(y_mixed, constant, np.ones((1, 60)))[0] == pytest.approx(
        logit(1 / 3) - logit(0.3), rel=1e-6)


def test_calibration_against_truth_removes_the_outcome_noise():
    rng = np.random.default_rng(3)
    p_true = expit(rng.normal(-0.5, 0.5, 300))  # a small arm with weak discrimination
    w = bootstrap_weights(p_true.size, 40, rng)
    exact = calibration_against_truth(p_true, p_true, w)
    assert exact["calibration_slope"]["estimate"] == pytest.approx(1.0, abs=1e-6)
    assert exact["calibration_intercept"]["estimate"] == pytest.approx(0.0, abs=1e-6)
    assert exact["calibration_slope"]["ci_high"] - exact["calibration_slope"]["ci_low"] < 1e-6
    # too extreme (logit doubled) and too timid (halved): 1/2 and 2, whatever the outcomes
    doubled = calibration_against_truth(p_true, expit(2 * logit(p_true)), w)
    halved = calibration_against_truth(p_true, expit(0.5 * logit(p_true)), w)
    assert doubled["calibration_slope"]["estimate"] == pytest.approx(0.5, abs=1e-6)
    assert halved["calibration_slope"]["estimate"] == pytest.approx(2.0, abs=1e-6)
    # the same truth on observed outcomes: one draw of 300 coin flips moves the slope a lot
    slopes = [calibration_slope((rng.random(p_true.size) < p_true).astype(float), p_true,
                                np.ones((1, p_true.size)))[0] for _ in range(30)]
    assert np.std(slopes) > 0.1


def test_bootstrap_weights_and_ci():
    w = bootstrap_weights(50, 200, np.random.default_rng(1))
    assert w.shape == (200, 50) and np.all(w.sum(axis=1) == 50)
    assert percentile_ci(np.arange(101.0)) == pytest.approx((2.5, 97.5))
    assert all(np.isnan(percentile_ci(np.r_[np.ones(90), np.full(10, np.nan)])))
    rng = np.random.default_rng(2)
    p = rng.uniform(0.1, 0.9, 300)
    y = (rng.random(300) < p).astype(float)
    out = binary_metrics_ci(y, p, bootstrap_weights(300, 100, rng))
    for name in ("auc", "brier", "calibration_slope", "calibration_intercept"):
        assert out[name]["ci_low"] <= out[name]["estimate"] <= out[name]["ci_high"]
    assert binary_metrics(y, p)["auc"] == pytest.approx(out["auc"]["estimate"])


# --------------------------------------------------------------------- policies, truth
def test_policy_matrices_by_hand():
    value = np.array([[0.2, 0.9, 0.5], [0.7, 0.1, 0.99]])
    eligible = np.array([[True, True, True], [True, True, False]])
    assert pol.best_choice(value, eligible).tolist() == [1, 0]
    assert pol.best_choice(value, np.zeros_like(eligible)).tolist() == [-1, -1]
    uniform = pol.uniform_eligible(eligible)
    assert uniform[0].tolist() == pytest.approx([1 / 3] * 3)
    assert uniform[1].tolist() == pytest.approx([0.5, 0.5, 0.0])
    assert pol.policy_value(uniform, value).tolist() == pytest.approx([1.6 / 3, 0.4])
    assert pol.one_hot(np.array([2, -1]), 3).tolist() == [[0, 0, 1], [0, 0, 0]]


def test_best_single_treatment_is_universal_and_best_on_average():
    value = np.array([[0.2, 0.9, 0.5], [0.7, 0.1, 0.99]])
    eligible = np.array([[True, True, True], [True, True, False]])
    assert pol.best_single_treatment(value, eligible) == 1  # means 0.45, 0.50; col 2 not universal
    assert pol.best_single_treatment(value, np.zeros_like(eligible)) == -1


def test_regret_summary_by_hand():
    out = pol.regret_summary(np.array([0.0, 0.0, 0.1, 0.3]))
    assert out == pytest.approx({"mean": 0.1, "median": 0.05, "p90": 0.24, "share_zero": 0.5})


def _toy_scores():
    """Two patients, three treatments; 'c' is not eligible for patient 2."""
    return EpisodeScores(np.array(["1", "2"]), ("a", "b", "c"),
                  np.array([[True, True, True], [True, True, False]]),
                  p_response=np.array([[0.1, 0.1, 0.9], [0.1, 0.9, 0.1]]),
                  p_adverse_event=np.zeros((2, 3)), treated=np.array([0, 1]))


def _toy_truth():
    return pd.DataFrame({
        "patient_id": ["1"] * 3 + ["2"] * 3, "treatment": ["a", "b", "c"] * 2,
        "eligible": [True, True, True, True, True, False],
        "p_response": [0.5, 0.3, 0.9, 0.5, 0.8, 0.99], "p_adverse_event": [0.0] * 6,
        "p_usual_care": [0.5, 0.25, 0.25, 0.5, 0.5, 0.0]})


def test_truth_columns_by_hand():
    scores, truth = _toy_scores(), _toy_truth()
    true = true_matrices(scores, truth, harm_weight=0.5)
    ranks = np.array([[2.0, 3.0, 1.0], [2.0, 1.0, 3.0]])  # c for 1, b for 2: the oracle's
    columns, choices = truth_columns(scores, truth, true, ranks, ["a", "b", "c"])
    assert columns["true.response.model"] == pytest.approx([0.9, 0.8])
    assert columns["true.response.oracle"] == pytest.approx([0.9, 0.8])
    assert choices["one_size_fits_all"] == "b"  # universal: a (0.5), b (0.55)
    assert columns["true.response.one_size_fits_all"] == pytest.approx([0.3, 0.8])
    assert columns["true.response.usual_care"] == pytest.approx([0.25 + 0.075 + 0.225, 0.65])
    assert columns["true.response.random"] == pytest.approx([1.7 / 3, 0.65])
    assert columns["regret.one_size_fits_all"] == pytest.approx([0.6, 0.0])
    assert columns["match_oracle"] == pytest.approx([1, 1])
    # stepped care a, b, c: patient 1 = 1 + 0.5 + 0.5 * 0.7; patient 2 = 1 + 0.5 (c skipped)
    assert columns["trials.expected.stepped_care"] == pytest.approx([1.85, 1.5])
    assert columns["trials.expected.model"] == pytest.approx([1 + 0.1 + 0.1 * 0.5, 1.2])


def test_truth_must_cover_every_eligible_pair():
    scores, truth = _toy_scores(), _toy_truth()
    with pytest.raises(ValueError, match="ground truth lacks rows"):
        true_matrices(scores, truth.iloc[1:], harm_weight=0.5)


# ------------------------------------------------------------------------ trials
def test_expected_trials_by_hand():
    p = np.array([[0.5, 0.2, 0.1]])
    ranks = np.array([[1.0, 2.0, 3.0]])
    eligible = np.ones((1, 3), dtype=bool)
    assert pol.expected_trials(p, ranks, eligible)[0] == pytest.approx(1 + 0.5 + 0.4)
    within = [pol.response_within(p, ranks, eligible, m)[0] for m in (1, 2, 3, 4)]
    assert within == pytest.approx([0.5, 0.6, 0.64, 0.64])
    # ineligible options are skipped; unlisted (inf rank) ones are never tried
    assert pol.expected_trials(p, ranks, np.array([[False, True, True]]))[0] == pytest.approx(1.8)
    assert pol.expected_trials(p, np.array([[1.0, np.inf, 2.0]]), eligible)[0] == pytest.approx(1.5)
    # capped at the number of options when nothing works
    assert pol.expected_trials(np.zeros((1, 3)), ranks, eligible)[0] == pytest.approx(3.0)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, 4, elements=st.floats(0, 1)),
       arrays(np.bool_, 4, elements=st.booleans()))
def test_highest_probability_first_minimizes_expected_trials(p, eligible):
    p, eligible = p[None, :], eligible[None, :]
    best = pol.expected_trials(p, -p, eligible)[0]
    k = int(eligible.sum())
    assert (k == 0 and best == 0) or 1 - 1e-12 <= best <= k + 1e-12
    for order in itertools.permutations(range(4)):
        ranks = np.argsort(order)[None, :].astype(float)
        assert best <= pol.expected_trials(p, ranks, eligible)[0] + 1e-12


# --------------------------------------------------------------- off-policy estimators
def test_aipw_by_hand():
    # 3 patients, 2 treatments; the policy recommends treatment 1 to everyone
    logged = pol.Logged(treated=np.array([1, 0, 1]), outcome=np.array([1.0, 0.0, 0.0]),
                        mu=np.array([[0.2, 0.6], [0.3, 0.5], [0.1, 0.4]]),
                        propensity=np.array([[0.5, 0.5], [0.8, 0.2], [0.75, 0.25]]))
    policy = pol.one_hot(np.array([1, 1, 1]), 2)
    terms = pol.ope_terms(policy, logged, clip=0.01)
    assert terms["w"] == pytest.approx([2.0, 0.0, 4.0])
    assert terms["dm"] == pytest.approx([0.6, 0.5, 0.4])
    assert terms["dr"] == pytest.approx([0.6 + 2 * 0.4, 0.5, 0.4 + 4 * -0.4])
    est = pol.ope_estimates(terms, np.ones((1, 3)))
    assert est["dr"][0] == pytest.approx((1.4 + 0.5 - 1.2) / 3)
    assert est["ipw"][0] == pytest.approx(2 / 3)
    assert est["snipw"][0] == pytest.approx(2 / 6)
    clipped = pol.ope_terms(policy, logged, clip=0.5)  # propensities raised to 0.5
    assert clipped["w"] == pytest.approx([2.0, 0.0, 2.0])
    assert pol.effective_sample_size(np.array([1.0, 1.0, 0.0, 2.0])) == pytest.approx(16 / 6)


def test_aipw_equals_truth_when_outcome_models_are_exact():
    # outcomes equal their expectation: DM and DR both recover the policy's value exactly
    rng = np.random.default_rng(3)
    mu = rng.uniform(size=(50, 3))
    treated = rng.integers(0, 3, 50)
    logged = pol.Logged(treated, mu[np.arange(50), treated], mu, np.full((50, 3), 1 / 3))
    policy = pol.one_hot(np.argmax(mu, axis=1), 3)
    terms = pol.ope_terms(policy, logged, clip=0.01)
    assert terms["dr"].mean() == pytest.approx(pol.policy_value(policy, mu).mean())


def test_aipw_is_unbiased_with_right_propensities_and_wrong_outcome_models():
    rng = np.random.default_rng(4)
    n, k = 20_000, 3
    x = rng.normal(size=n)
    true = expit(np.column_stack([x, -x, 0.3 * np.ones(n)]))
    e = np.exp(np.column_stack([0.8 * x, np.zeros(n), -0.5 * np.ones(n)]))
    e /= e.sum(axis=1, keepdims=True)
    treated = (rng.random((n, 1)) > e.cumsum(axis=1)).sum(axis=1)
    y = (rng.random(n) < true[np.arange(n), treated]).astype(float)
    policy = pol.one_hot(np.argmax(true, axis=1), k)
    wrong_mu = np.full((n, k), 0.5)
    terms = pol.ope_terms(policy, pol.Logged(treated, y, wrong_mu, e), clip=1e-3)
    target = pol.policy_value(policy, true).mean()
    se = terms["dr"].std() / np.sqrt(n)
    assert abs(terms["dr"].mean() - target) < 4 * se
    assert abs(terms["dm"].mean() - target) > 0.1  # the direct method alone is badly off


def test_overlap_summary_by_hand():
    logged = pol.Logged(treated=np.array([0, 1, 1, -1]), outcome=np.zeros(4),
                        mu=np.zeros((4, 2)),
                        propensity=np.array([[0.9, 0.1], [0.995, 0.005], [0.5, 0.5], [1, 0]]))
    eligible = np.array([[True, True]] * 3 + [[True, False]])
    out = pol.overlap_summary(logged, eligible, ("a", "b"), clip=0.01)
    assert out["n_logged"] == 3
    assert out["share_logged_clipped"] == pytest.approx(1 / 3)
    assert out["min_logged_propensity"] == pytest.approx(0.005)
    assert out["per_treatment"]["b"]["n_eligible"] == 3
    assert out["per_treatment"]["b"]["share_below_clip"] == pytest.approx(1 / 3)


# -------------------------------------------------------------------- the whole stage
@pytest.fixture(scope="module")
def small_propensity_bundle(small_bundle, small_splits):
    """The shared small bundle plus a propensity model fitted on the small train split."""
    from precision_pain.models.propensity import fit_propensity

    model, report = fit_propensity(small_splits["train"], small_splits["valid"],
                                   {"logistic": {"C": 1.0, "max_iter": 2000}}, seed=0)
    return replace(small_bundle, propensity=model,
                   metadata={**small_bundle.metadata, "propensity": report})


@pytest.fixture(scope="module")
def small_evaluation(small_splits, small_propensity_bundle, small_synthetic, params):
    return evaluate(small_splits["test"], small_propensity_bundle, small_synthetic.truth,
                    params.evaluate.model_copy(update={"n_bootstrap": 50}))


def test_evaluate_on_small_cohort(small_evaluation, small_propensity_bundle):
    result = small_evaluation
    assert set(result.per_treatment) == set(small_propensity_bundle.treatments)
    for metrics in result.per_treatment.values():
        auc = metrics["response"]["auc"]
        assert auc["ci_low"] <= auc["estimate"] <= auc["ci_high"]
        assert 0 <= metrics["response"]["brier"]["estimate"] < 0.25
        assert "true_probability" in metrics["response"]
        slope = metrics["response"]["against_truth"]["calibration_slope"]
        assert slope["ci_low"] <= slope["estimate"] <= slope["ci_high"]
    s = result.summary
    for key in ("response_calibration_slope_against_truth",
                "response_calibration_slope_true_probability"):
        assert 0 <= s[key]["share_within_0.8_1.2"] <= 1 and s[key]["min"] <= s[key]["max"]
    policy = s["policy"]
    assert policy["oracle"]["mean_true_net_benefit"] >= policy["model"]["mean_true_net_benefit"]
    assert policy["share_of_oracle_gain_captured"] <= 1
    assert 0 <= policy["regret"]["share_zero"] <= 1 and policy["regret"]["mean"] >= 0
    assert s["trials"]["oracle"]["expected"] <= s["trials"]["model"]["expected"] + 1e-9
    assert s["trials"]["oracle"]["expected"] <= s["trials"]["stepped_care"]["expected"] + 1e-9
    assert abs(s["off_policy"]["model_dr_error"]) < 0.1
    assert set(result.subgroups) == {"ancestry", "sex"}
    assert set(result.subgroups["sex"]) == {"F", "M"}
    assert sum(g["n"] for g in result.subgroups["sex"].values()) == s["n_test_patients"]


def test_evaluation_report_has_notice_and_headline(small_evaluation):
    text = evaluation_report(small_evaluation, RESEARCH_NOTICE, ["../plots/regret.png"])
    assert RESEARCH_NOTICE in text
    assert "Share of the oracle's gain" in text and "![regret](../plots/regret.png)" in text
    assert "DR gain over one size fits all (paired)" in text
    # the off-policy section states what its estimates assume, once, after its tables
    off_policy = text[text.index("## Off-policy estimates"):]
    assert text.count("assume no unmeasured confounding") == 1
    assert "assume no unmeasured confounding" in off_policy.split("\n## ")[0]
    female = next(line for line in text.splitlines() if line.startswith("| sex | F |"))
    gain = small_evaluation.subgroups["sex"]["F"]["off_policy"]["gain"]["net_benefit"]
    assert female.endswith(f"| {gain['one_size_fits_all']['dr']['estimate']:.3f} ("
                           f"{gain['one_size_fits_all']['dr']['ci_low']:.3f} to "
                           f"{gain['one_size_fits_all']['dr']['ci_high']:.3f}) |")


def test_dr_gain_is_the_paired_difference_of_the_two_policies(small_evaluation,
                                                              small_propensity_bundle):
    ope = small_evaluation.policy["off_policy"]
    for v in ("response", "net_benefit"):
        model, single = ope[v]["model"], ope[v]["one_size_fits_all"]
        gain = ope["gain"][v]["one_size_fits_all"]
        # means are linear: the paired point estimate is the difference of the two estimates
        assert gain["dr"]["estimate"] == pytest.approx(
            model["dr"]["estimate"] - single["dr"]["estimate"], abs=1e-12)
        assert gain["true"] == pytest.approx(model["true"] - single["true"], abs=1e-12)
        assert gain["dr"]["ci_low"] <= gain["dr"]["estimate"] <= gain["dr"]["ci_high"]
        care = ope["gain"][v]["usual_care"]
        assert care["dr"]["estimate"] == pytest.approx(
            model["dr"]["estimate"] - ope[v]["usual_care"]["observed_mean"]["estimate"],
            abs=1e-12)
        assert care["true"] == pytest.approx(model["true"] - ope[v]["usual_care"]["true"],
                                             abs=1e-12)
    headline = small_evaluation.summary["off_policy"]
    assert headline["model_dr_gain_over_one_size_fits_all"] == pytest.approx(
        ope["gain"]["net_benefit"]["one_size_fits_all"]["dr"]["estimate"])
    assert headline["one_size_fits_all_treatment"] in small_propensity_bundle.treatments


@pytest.mark.parametrize("low, warned", [(-0.01, True), (0.0, True), (0.004, False)])
def test_report_warns_when_the_gain_over_one_size_fits_all_is_not_shown(small_evaluation,
                                                                          low, warned):
    summary = {**small_evaluation.summary, "off_policy": {
        **small_evaluation.summary["off_policy"],
        "model_dr_gain_over_one_size_fits_all": 0.02,
        "model_dr_gain_over_one_size_fits_all_ci_low": low,
        "model_dr_gain_over_one_size_fits_all_ci_high": 0.05}}
    text = evaluation_report(replace(small_evaluation, summary=summary), RESEARCH_NOTICE)
    assert "Doubly robust gain in net benefit over one-size-fits-all care" in text
    assert "Doubly robust gain in net benefit over usual care" in text
    assert ("do not show the recommendations doing better" in text) is warned
    assert ("The ground truth above measures the gain directly" in text) is warned
    observed_only = {k: v for k, v in summary["off_policy"].items() if "_true_" not in k}
    text = evaluation_report(replace(small_evaluation, summary={
        **summary, "off_policy": observed_only}), RESEARCH_NOTICE)
    assert ("Do not read the ranking as an improvement" in text) is warned


def test_evaluate_without_truth_reports_observed_data_only(small_splits,
                                                           small_propensity_bundle, params):
    result = evaluate(small_splits["test"], small_propensity_bundle, None,
                      params.evaluate.model_copy(update={"n_bootstrap": 10}))
    assert result.summary["has_ground_truth"] is False and "policy" not in result.summary
    assert "model_true_net_benefit" not in result.summary["off_policy"]
    assert "model_dr_gain_over_one_size_fits_all" in result.summary["off_policy"]
    assert "model_true_gain_over_one_size_fits_all" not in result.summary["off_policy"]
    assert "true" not in result.policy["off_policy"]["gain"]["net_benefit"]["usual_care"]
    assert "true_probability" not in result.per_treatment["tramadol"]["response"]
    assert "against_truth" not in result.per_treatment["tramadol"]["response"]
    assert "response_calibration_slope_against_truth" not in result.summary
    assert "regret" not in result.curves


def test_evaluate_does_not_mutate_inputs(small_splits, small_bundle, small_synthetic, params):
    test, truth = small_splits["test"].copy(), small_synthetic.truth.copy()
    evaluate(test, small_bundle, truth, params.evaluate.model_copy(update={"n_bootstrap": 5}))
    pd.testing.assert_frame_equal(test, small_splits["test"])
    pd.testing.assert_frame_equal(truth, small_synthetic.truth)


@pytest.mark.parametrize("non_opioid_first", [True, False])
def test_model_ranks_follow_the_recommender(small_splits, small_bundle, options,
                                            non_opioid_first):
    from precision_pain.predict.recommend import recommend

    test = small_splits["test"].head(200)
    ranks = model_ranks(test, score_test(test, small_bundle), harm_weight=0.5,
                        non_opioid_first=non_opioid_first)
    shipped = recommend(test, small_bundle, replace(options, harm_weight=0.5,
                                                    non_opioid_first=non_opioid_first)).table
    first = shipped[shipped["rank"] == 1].set_index("patient_id")["treatment"]
    ours = np.array(small_bundle.treatments)[np.argmin(ranks, axis=1)]
    assert (first.loc[test["patient_id"].astype(str)].to_numpy() == ours).all()


# --------------------------------------------------------- validation-based model choice
def test_hyperparameter_grid_expands_lists_only():
    from precision_pain.models.train import hyperparameter_grid

    grid = hyperparameter_grid({"C": [0.1, 1.0], "max_iter": 100, "tol": [1e-4, 1e-3]})
    assert [(g["C"], g["tol"]) for g in grid] == [(0.1, 1e-4), (0.1, 1e-3), (1.0, 1e-4),
                                                  (1.0, 1e-3)]
    assert all(g["max_iter"] == 100 for g in grid)
    assert hyperparameter_grid({"C": 1.0}) == [{"C": 1.0}]


def test_shared_choice_per_outcome_by_pooled_validation_brier():
    from precision_pain.models.train import TreatmentModels, choose_shared

    def run(label, brier_resp, brier_ae):  # two treatments, 100 and 300 validation rows
        models = {t: {"response": f"{label}-{t}-r", "adverse_event": f"{label}-{t}-a"}
                  for t in "ab"}
        return {t: TreatmentModels(t, models[t], {"n_valid": n},
                                   {"valid_response_brier": brier_resp[i],
                                    "valid_adverse_event_brier": brier_ae[i]})
                for i, (t, n) in enumerate((("a", 100), ("b", 300)))}

    # pooled response Brier: grid 0 = (0.10 + 3 * 0.30) / 4 = 0.25; grid 1 = (0.3 + 3 * 0.2) / 4
    runs = [run("g0", (0.10, 0.30), (0.05, 0.05)), run("g1", (0.30, 0.20), (0.06, 0.06))]
    chosen = choose_shared(runs, [{"C": 0.1}, {"C": 1.0}], {"C": [0.1, 1.0]})
    assert chosen["a"].models == {"response": "g1-a-r", "adverse_event": "g0-a-a"}
    assert chosen["b"].validation["valid_response_chosen_C"] == 1.0
    assert chosen["b"].validation["valid_adverse_event_chosen_C"] == 0.1
    assert chosen["b"].validation["valid_response_brier"] == 0.20


@pytest.mark.parametrize("low, warned", [(-0.01, True), (0.01, False)])
def test_evaluate_command_logs_when_no_gain_is_shown(caplog, low, warned):
    from precision_pain.cli import _warn_if_no_gain_shown

    key = "model_dr_gain_over_one_size_fits_all"
    off = {key: 0.03, f"{key}_ci_low": low, f"{key}_ci_high": 0.07,
           "one_size_fits_all_treatment": "duloxetine"}
    shown = {**off, f"{key}_ci_low": 0.01}
    with caplog.at_level("WARNING", logger="precision_pain"):
        _warn_if_no_gain_shown({"off_policy": off})
        _warn_if_no_gain_shown({})  # no propensity model: nothing to say
        # cross-fitted over every patient, that gain answers: the test split's is not used
        _warn_if_no_gain_shown({"off_policy": shown, "off_policy_cross_fitted": off})
        _warn_if_no_gain_shown({"off_policy": off, "off_policy_cross_fitted": shown})
    said = [r.getMessage() for r in caplog.records]
    message = ("the observed outcomes ({}) do not show the recommendations beating "
               f"duloxetine for everyone: doubly robust gain 0.030 (95 % interval "
               f"{low:.3f} to 0.070)")
    assert said == ([message.format("test split"), message.format("cross fitted")]
                    if warned else [])


def test_no_one_size_fits_all_gain_without_a_treatment_for_everyone():
    """No treatment eligible for every patient: no one-size-fits-all policy, so no gain over
    it (not a gain over 'no treatment'), and the report still gives the one over usual care."""
    from precision_pain.evaluate.core import headline, summarize_ope
    from precision_pain.evaluate.report_md import _gain_md

    rng = np.random.default_rng(0)
    n = 400
    table = pd.DataFrame({f"ope.observed.{v}": rng.random(n) for v in ("response", "net_benefit")})
    for v in ("response", "net_benefit"):
        for name in ("model", "random"):
            for term in ("dm", "dr", "wy"):
                table[f"ope.{term}.{v}.{name}"] = rng.random(n)
    for name in ("model", "random"):
        table[f"ope.w.{name}"] = rng.random(n)
    weights = rng.poisson(1.0, size=(20, n)).astype(float)
    ope = summarize_ope(table, weights)
    assert "one_size_fits_all" not in ope["net_benefit"]
    assert set(ope["gain"]["net_benefit"]) == {"usual_care"}
    off = headline({}, {"off_policy": ope}, {}, n, "pooled_xgboost")["off_policy"]
    assert "model_dr_gain_over_one_size_fits_all" not in off
    lines = _gain_md(off)
    assert len(lines) == 1 and "over usual care" in lines[0]


def test_evaluate_without_a_treatment_for_everyone(monkeypatch, small_splits,
                                                   small_propensity_bundle, small_synthetic,
                                                   params):
    import precision_pain.evaluate.core as core

    monkeypatch.setattr(core, "_best_single_by_dr", lambda *args: -1)
    result = evaluate(small_splits["test"], small_propensity_bundle, small_synthetic.truth,
                      params.evaluate.model_copy(update={"n_bootstrap": 10}))
    off = result.summary["off_policy"]
    assert "one_size_fits_all_treatment" not in off
    assert "model_dr_gain_over_one_size_fits_all" not in off
    assert "model_dr_gain_over_usual_care" in off
    assert "one_size_fits_all" not in result.policy["off_policy"]["net_benefit"]
    text = evaluation_report(result, RESEARCH_NOTICE)
    assert "over one-size-fits-all care (every" not in text and "over usual care" in text


def test_the_one_size_fits_all_treatment_is_chosen_on_the_training_episodes(
        small_splits, small_propensity_bundle, small_synthetic, params):
    """The single treatment the DR gain is measured against is the universal one with the
    highest DR value on train + validation, then valued on the test split as given; one not
    open to every test patient falls back to the test split's own choice. The headline says
    which."""
    from precision_pain.models.propensity import predict_propensity

    bundle = small_propensity_bundle
    settings = params.evaluate.model_copy(update={"n_bootstrap": 10})
    training = pd.concat([small_splits["train"], small_splits["valid"]], ignore_index=True)
    chosen = choose_one_size_fits_all(training, bundle, settings)
    # the same choice, spelled out: DR net benefit of each universal treatment on training
    scores = score_test(training, bundle)
    e = predict_propensity(bundle.propensity, training, list(scores.treatments))
    y = training["response"].to_numpy(float) - settings.harm_weight * training[
        "adverse_event"].to_numpy(float)
    logged = pol.Logged(scores.treated, y, scores.net_benefit(settings.harm_weight), e)
    k = len(scores.treatments)
    dr = {t: pol.ope_terms(pol.one_hot(np.full(len(y), j), k), logged,
                           settings.propensity_clip)["dr"].mean()
          for j, t in enumerate(scores.treatments) if scores.eligible[:, j].all()}
    assert len(dr) >= 2 and chosen == max(dr, key=dr.get)
    assert choose_one_size_fits_all(training, replace(bundle, propensity=None), settings) is None

    test = small_splits["test"]
    on_test = evaluate(test, bundle, small_synthetic.truth, settings).summary["off_policy"]
    assert on_test["one_size_fits_all_chosen_on"] == "test"
    other = next(t for t in dr if t != on_test["one_size_fits_all_treatment"])
    given = evaluate(test, bundle, small_synthetic.truth, settings, one_size_fits_all=other)
    off = given.summary["off_policy"]
    assert (off["one_size_fits_all_treatment"], off["one_size_fits_all_chosen_on"]) == (
        other, "training")
    assert f"every patient given {other}, the one with the highest DR value on the training " \
        "episodes" in evaluation_report(given, RESEARCH_NOTICE)
    single = given.policy["off_policy"]["net_benefit"]["one_size_fits_all"]["dr"]["estimate"]
    assert off["model_dr_gain_over_one_size_fits_all"] == pytest.approx(
        off["model_dr_net_benefit"] - single)
    assert single != pytest.approx(
        evaluate(test, bundle, small_synthetic.truth, settings).policy["off_policy"][
            "net_benefit"]["one_size_fits_all"]["dr"]["estimate"])
    # a treatment not open to every test patient (here: restricted to one test condition's
    # patients, for whom every other is), or one these models do not rank
    scores = score_test(test, bundle)
    j = bundle.treatments.index(other)
    narrower = replace(scores, eligible=scores.eligible & (np.arange(len(test)) > 0)[:, None]
                       | (np.arange(k) != j)[None, :])
    assert not narrower.eligible[:, j].all() and narrower.eligible[1:].all()
    import precision_pain.evaluate.core as core

    for name, frame in ((other, narrower), ("a_treatment_not_modeled", scores)):
        ranks = core.model_ranks(test, frame, settings.harm_weight)
        _, detail = core.ope_columns(test, frame, ranks, predict_propensity(
            bundle.propensity, test, list(bundle.treatments)), settings, None,
            one_size_fits_all=name)
        assert detail["one_size_fits_all_chosen_on"] == "test", name
        assert detail["one_size_fits_all"] != name


def test_without_a_treatment_for_everyone_the_truth_share_is_not_taken_against_nothing(
        monkeypatch, small_splits, small_propensity_bundle, small_synthetic, params):
    """With no treatment open to every patient there is no one-size-fits-all policy: its true
    value, the regret against it and the share of the oracle's gain are not available,
    rather than measured against 'no treatment' (a value of 0)."""
    import precision_pain.evaluate.core as core

    monkeypatch.setattr(core.pol, "best_single_treatment", lambda *args: -1)
    result = evaluate(small_splits["test"], small_propensity_bundle, small_synthetic.truth,
                      params.evaluate.model_copy(update={"n_bootstrap": 10}))
    policy = result.summary["policy"]
    assert np.isnan(policy["share_of_oracle_gain_captured"])
    assert np.isnan(policy["one_size_fits_all"]["mean_true_net_benefit"])
    assert policy["one_size_fits_all"]["treatment"] is None
    assert np.isfinite(policy["model"]["mean_true_net_benefit"])
    text = evaluation_report(result, RESEARCH_NOTICE)
    assert "(none: no treatment is open to every patient) captured by the model's first " \
        "choice: **n/a %**" in text


def test_bootstrap_draws_without_the_rows_give_nan_quietly():
    """A draw that holds none of a small subgroup's rows: NaN for that draw, no numpy
    RuntimeWarning on the user's console (percentile_ci leaves the NaN out)."""
    import warnings

    from precision_pain.evaluate.metrics import weighted_brier

    weights = np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    terms = {k: np.array([0.2, 0.4, 0.6]) for k in ("dm", "dr", "wy", "w")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = pol.ope_estimates(terms, weights)
        brier = weighted_brier(np.array([0.0, 1.0, 1.0]), np.array([0.2, 0.4, 0.6]), weights)
    assert est["dr"][0] == pytest.approx((0.2 + 0.8) / 3) and np.isnan(est["dr"][1])
    assert np.isnan(est["snipw"][1]) and np.isnan(brier[1])
