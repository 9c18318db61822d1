"""The continuous-outcome mode (prepare.outcome: nrs_change): the outcome's definition, the
ridge baseline, continuous metrics, and train -> evaluate -> predict on a small cohort."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from precision_pain.outcome import OutcomeSpec, pain_reduction_points

# ------------------------------------------------------------------------------ definition


def test_outcome_values_and_harm_scale():
    frame = pd.DataFrame({"pain_baseline": [8.0, 5.0, 6.0], "pain_followup": [4.0, 6.0, 6.0],
                          "response": [1, 0, 0], "adverse_event": [0, 1, 0]})
    nrs = OutcomeSpec("nrs_change", 2.5)
    assert nrs.continuous and nrs.harm_scale == 2.5 and nrs.unit == "NRS points"
    assert nrs.values(frame, "response").tolist() == [4.0, -1.0, 0.0]
    assert nrs.values(frame, "adverse_event").tolist() == [0.0, 1.0, 0.0]
    flag = OutcomeSpec()
    assert not flag.continuous and flag.harm_scale == 1.0
    assert flag.values(frame, "response").tolist() == [1.0, 0.0, 0.0]
    assert pain_reduction_points(frame).tolist() == [4.0, -1.0, 0.0]


def test_outcome_metadata_and_refusals():
    spec = OutcomeSpec("nrs_change", 2.0)
    assert OutcomeSpec.from_metadata({"outcome": spec.to_metadata()}) == spec
    assert OutcomeSpec.from_metadata({}) == OutcomeSpec()  # bundles from before the setting
    with pytest.raises(ValueError, match="valid: responder, nrs_change"):
        OutcomeSpec("pain")
    with pytest.raises(ValueError, match="> 0"):
        OutcomeSpec("nrs_change", 0.0)
    truth = pd.DataFrame({"p_response": [0.4], "expected_nrs_change": [-1.5]})
    assert spec.truth_response(truth).tolist() == [1.5]
    with pytest.raises(ValueError, match="expected_nrs_change"):
        spec.truth_response(truth.drop(columns="expected_nrs_change"))


def test_params_choose_the_outcome(params):
    from precision_pain.config import ParamsError, load_params
    from precision_pain.outcome import outcome_from_params
    from conftest import ROOT

    assert outcome_from_params(params) == OutcomeSpec()  # the default stays the flag
    chosen = load_params(ROOT / "params.yaml", {"prepare.outcome": "nrs_change",
                                                "evaluate.adverse_event_nrs_points": 1.5})
    assert outcome_from_params(chosen) == OutcomeSpec("nrs_change", 1.5)
    with pytest.raises(ParamsError, match="prepare.outcome"):
        load_params(ROOT / "params.yaml", {"prepare.outcome": "pain_change"})


def test_model_types_without_a_regressor_are_refused():
    from precision_pain.models.train import check_outcome_support

    for ok in ("pooled_xgboost", "xgboost", "logistic"):
        check_outcome_support(ok, OutcomeSpec("nrs_change"))
    check_outcome_support("hist_gb", OutcomeSpec())
    with pytest.raises(ValueError, match="hist_gb.*no regressor.*Fix"):
        check_outcome_support("hist_gb", OutcomeSpec("nrs_change"))


# ------------------------------------------------------------------------------ ridge


def _linear_table(n: int = 800, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    y = 1.0 + 2.0 * X["a"] - 0.5 * X["b"] + rng.normal(scale=0.1, size=n)
    X.loc[X.index[:40], "c"] = np.nan
    return X, y.to_numpy()


def test_ridge_recovers_a_linear_model_and_explains_it_exactly(tmp_path):
    from precision_pain.models.estimators import RidgeModel, load_model

    X, y = _linear_table()
    model = RidgeModel(C=1e6).fit(X, y)
    pred = model.predict_proba(X)
    assert np.sqrt(np.mean((pred - y) ** 2)) < 0.12
    phi = model.contributions(X)
    np.testing.assert_allclose(phi.sum(axis=1), pred, atol=1e-9)
    assert np.abs(phi[:, 0]).mean() > 10 * np.abs(phi[:, 2]).mean()  # 'a' matters, 'c' not
    again = load_model(model.save(tmp_path / "response"))
    np.testing.assert_array_equal(again.predict_proba(X), pred)
    np.testing.assert_array_equal(again.contributions(X), phi)
    shrunk = RidgeModel(C=1e-4).fit(X, y)  # strong penalty: towards the mean
    assert np.ptp(shrunk.predict_proba(X)) < 0.1 * np.ptp(pred)


def test_ridge_file_with_wrong_arrays_is_refused(tmp_path):
    from precision_pain.models.estimators import RidgeModel, load_model

    X, y = _linear_table(200)
    path = RidgeModel().fit(X, y).save(tmp_path / "response")
    state = json.loads(path.read_text())
    state["coef"] = state["coef"][:-1]
    path.write_text(json.dumps(state))
    with pytest.raises(ValueError, match="wrong size"):
        load_model(path)
    state = json.loads(RidgeModel().fit(X, y).save(tmp_path / "r2").read_text())
    state["indicators"] = [7]
    (tmp_path / "r2.ridge.json").write_text(json.dumps(state))
    with pytest.raises(ValueError, match="out of range|wrong size"):
        load_model(tmp_path / "r2.ridge.json")


# ------------------------------------------------------------------------------ metrics


def test_continuous_metrics():
    from precision_pain.evaluate.metrics import continuous_metrics, continuous_metrics_ci

    rng = np.random.default_rng(1)
    truth = rng.normal(size=500)
    perfect = continuous_metrics(truth, truth)
    assert perfect["rmse"] == 0 and perfect["r2"] == 1 and perfect["calibration_slope"] == 1
    assert abs(perfect["calibration_intercept"]) < 1e-12
    too_wide = continuous_metrics(truth, 2 * truth + 1)  # differences doubled, shifted up
    assert too_wide["calibration_slope"] == pytest.approx(0.5)
    assert too_wide["calibration_intercept"] == pytest.approx(-1 - truth.mean())
    weights = rng.multinomial(500, np.full(500, 1 / 500), size=30).astype(float)
    ci = continuous_metrics_ci(truth, truth + rng.normal(scale=0.5, size=500), weights)
    assert ci["rmse"]["ci_low"] < ci["rmse"]["estimate"] < ci["rmse"]["ci_high"]
    assert ci["rmse"]["estimate"] == pytest.approx(0.5, abs=0.05)


def test_effect_error_is_pehe_over_two_for_two_treatments():
    from precision_pain.evaluate.core import effect_squared_error

    rng = np.random.default_rng(2)
    mu, mu_hat = rng.normal(size=(300, 2)), rng.normal(size=(300, 2))
    eligible = np.ones((300, 2), dtype=bool)
    pehe = np.sqrt(np.mean(((mu_hat[:, 1] - mu_hat[:, 0]) - (mu[:, 1] - mu[:, 0])) ** 2))
    assert np.sqrt(effect_squared_error(mu_hat, mu, eligible).mean()) == pytest.approx(pehe / 2)
    shifted = mu + rng.normal(size=(300, 1))  # a per-patient shift is no effect error
    assert np.allclose(effect_squared_error(shifted, mu, eligible), 0)
    eligible[:5, 1] = False  # one eligible treatment: nothing to compare
    assert np.allclose(effect_squared_error(mu_hat, mu, eligible)[:5], 0)


# ------------------------------------------------------------------------- the pipeline

# The pipeline's stacked learner (models/stacked.py), small grids: an nrs_change block.
STACKED = {"learner": "stacked", "design": "condition_pairs",
           "candidates": ["pooled", "per_arm", "constant"], "selection": "effect_loss",
           "stack_folds": 3, "max_depth": [2, 3], "n_estimators": [30, 60],
           "default": {"max_depth": 2, "n_estimators": 60}, "learning_rate": 0.1,
           "min_child_weight": 1, "subsample": 0.8, "colsample_bytree": 1.0, "reg_lambda": 1.0}


@pytest.fixture(scope="module")
def nrs_run(small_splits, small_synthetic, params):
    """Pooled and per-treatment bundles trained on the NRS change, and their evaluations."""
    from precision_pain.evaluate.core import evaluate
    from precision_pain.models.train import train_bundle
    from precision_pain.registry import select_treatments

    spec = OutcomeSpec("nrs_change", 2.0)
    treatments = select_treatments(["tramadol", "duloxetine", "physical_therapy", "nsaid"])
    pooled_settings = dict(params.model.hyperparameters["pooled_xgboost"])
    pooled_settings["response"] = {**pooled_settings["response"], "max_depth": [2, 3],
                                   "n_estimators": [100, 200],
                                   "default": {"max_depth": 3, "n_estimators": 200},
                                   "learning_rate": 0.1}
    pooled_settings["adverse_event"] = {**pooled_settings["adverse_event"],
                                        "n_estimators": [50, 100]}
    stacked_settings = {**pooled_settings, "nrs_change": STACKED}
    propensity = {"logistic": {"C": 1.0, "max_iter": 2000},
                  "xgboost": {**params.model.hyperparameters["propensity"]["xgboost"],
                              "n_estimators": 60}}
    bundles = {}
    for name, kind, hyper in (
            ("pooled_xgboost", "pooled_xgboost", pooled_settings),
            ("stacked", "pooled_xgboost", stacked_settings),
            ("xgboost", "xgboost", {"n_estimators": [50, 100], "max_depth": 2,
                                    "learning_rate": 0.1, "early_stopping_rounds": None})):
        model = params.model.model_copy(update={"type": kind, "seed": 0, "hyperparameters": {
            kind: hyper, "propensity": propensity}})
        bundles[name] = train_bundle(small_splits["train"], small_splits["valid"], treatments,
                                     model, response_threshold=0.3, harm_weight=0.5,
                                     propensity_clip=0.01, outcome=spec)
    settings = params.evaluate.model_copy(update={"n_bootstrap": 20})
    evaluations = {k: evaluate(small_splits["test"], b, small_synthetic.truth, settings)
                   for k, b in bundles.items()}
    return bundles, evaluations


def test_bundles_record_the_outcome_and_fit_regressors(nrs_run, small_splits, tmp_path):
    from precision_pain.data.features import build_features
    from precision_pain.models.bundle import load_bundle, save_bundle

    bundles, _ = nrs_run
    test = small_splits["test"]
    for bundle in bundles.values():
        assert bundle.outcome == OutcomeSpec("nrs_change", 2.0)
        X = build_features(test)
        pred = bundle.model("tramadol", "response").predict_proba(X)
        assert pred.min() < 0.5 < pred.max() and pred.max() < 10  # NRS points, not a probability
        again = load_bundle(save_bundle(bundle, tmp_path / bundle.model_type))
        assert again.outcome.continuous
        np.testing.assert_allclose(again.model("tramadol", "response").predict_proba(X), pred,
                                   atol=1e-6)
    assert bundles["pooled_xgboost"].metadata["selection"]["valid_response_mse"] > 0
    assert bundles["stacked"].model("tramadol", "response").kind == "stacked"


def test_the_stacked_model_is_the_effect_learners_and_explained_exactly(nrs_run, small_splits,
                                                                        tmp_path):
    """The pipeline's stacked model predicts what models/effects.py's learner predicts; its
    SHAP values sum to each prediction; it survives its file; a refit keeps every choice."""
    from precision_pain.data.features import build_features
    from precision_pain.models.estimators import load_model
    from precision_pain.models.stacked import StackedModel

    bundle = nrs_run[0]["stacked"]
    stacked = bundle.model("tramadol", "response").shared
    assert isinstance(stacked, StackedModel) and stacked.learner is not None
    X = build_features(small_splits["test"].head(300))
    matrix = stacked.predict_matrix(X)
    np.testing.assert_allclose(matrix, stacked.learner.predict_matrix(X), atol=1e-5)
    for j, treatment in enumerate(stacked.treatments):
        phi = stacked.contributions(X, treatment)
        np.testing.assert_allclose(phi.sum(axis=1), matrix[:, j], atol=1e-4)
    again = load_model(stacked.save(tmp_path / "response"))
    np.testing.assert_allclose(again.predict_matrix(X), matrix, atol=1e-6)
    np.testing.assert_allclose(again.contributions(X, "nsaid"), stacked.contributions(X, "nsaid"),
                               atol=1e-6)
    assert again.weights == stacked.weights
    refit = stacked.refitted(small_splits["test"], OutcomeSpec("nrs_change"))
    assert refit.weights == stacked.weights
    np.testing.assert_array_equal(refit.constant, stacked.constant)
    assert not np.allclose(refit.predict_matrix(X), matrix)  # new data, new boosters
    with pytest.raises(ValueError, match="cannot be refitted"):
        again.refitted(small_splits["test"], OutcomeSpec("nrs_change"))


def test_a_stacked_file_with_the_wrong_boosters_is_refused(nrs_run, tmp_path):
    from precision_pain.models.estimators import load_model

    stacked = nrs_run[0]["stacked"].model("tramadol", "response").shared
    path = stacked.save(tmp_path / "response")
    state = json.loads(path.read_text())
    state["boosters"] = state["boosters"][:-1]
    path.write_text(json.dumps(state))
    with pytest.raises(ValueError, match="one booster per treatment"):
        load_model(path)


def test_the_x_learner_is_refused_in_the_pipeline(small_splits, params):
    from precision_pain.models.train import train_bundle
    from precision_pain.registry import select_treatments

    hyper = dict(params.model.hyperparameters["pooled_xgboost"])
    hyper["nrs_change"] = {**STACKED, "candidates": ["pooled", "x"]}
    model = params.model.model_copy(update={"hyperparameters": {
        **params.model.hyperparameters, "pooled_xgboost": hyper}})
    with pytest.raises(ValueError, match="exact SHAP.*remove x"):
        train_bundle(small_splits["train"], small_splits["valid"],
                     select_treatments(["tramadol", "nsaid"]), model, response_threshold=0.3,
                     harm_weight=0.5, propensity_clip=0.01, outcome=OutcomeSpec("nrs_change"))


def test_evaluation_reports_continuous_metrics_and_pehe(nrs_run):
    from precision_pain.evaluate.report_md import evaluation_report

    _, evaluations = nrs_run
    for evaluation in evaluations.values():
        s = evaluation.summary
        assert s["outcome"] == "nrs_change" and "trials" not in s
        assert 0.5 < s["mean_response_rmse"] < 5 and "mean_response_auc" not in s
        policy = s["policy"]
        assert policy["oracle"]["mean_true_net_benefit"] >= policy["model"]["mean_true_net_benefit"]
        assert 0 < policy["sqrt_pehe"] < 3
        response = next(iter(evaluation.per_treatment.values()))["response"]
        assert {"rmse", "mae", "r2", "calibration_slope"} <= set(response)
        report = evaluation_report(evaluation, "research only")
        assert "NRS points" in report and "sqrt-PEHE" in report and "Trial and error" not in report
        # predict's prediction interval, checked on the test patients at its level (0.9)
        coverage = s["response_interval_coverage"]
        assert coverage["level"] == 0.9 and 0.7 <= coverage["min"] <= coverage["max"] <= 1.0
        assert 0.8 <= coverage["mean"] <= 0.96  # test arms of 124-144 patients
        block = response["prediction_interval"]
        assert block["halfwidth"] > 0.5 and block["coverage"]["ci_low"] <= block["coverage"][
            "estimate"] <= block["coverage"]["ci_high"]
        assert "share inside predict's prediction interval (90%)" in report
        bands = coverage["by_baseline"]
        assert sum(b["n"] for b in bands.values()) == sum(
            m["response"]["n"] for m in evaluation.per_treatment.values()
            if "prediction_interval" in m["response"])
        assert all(0.7 <= b["coverage"] <= 1.0 for b in bands.values() if b["n"] >= 50)
        assert "By baseline pain severity, the share of test patients inside predict's 90%" \
            in report and "severe (7 or more): " in report


def test_truth_net_benefit_uses_the_points_per_adverse_event(nrs_run, small_splits,
                                                            small_synthetic):
    from precision_pain.evaluate.core import score_test, true_matrices

    bundles, _ = nrs_run
    scores = score_test(small_splits["test"], bundles["pooled_xgboost"])
    true = true_matrices(scores, small_synthetic.truth, 0.5 * 2.0, OutcomeSpec("nrs_change"))
    ok = scores.eligible
    np.testing.assert_allclose(true["net_benefit"][ok],
                               (true["response"] - 1.0 * true["adverse_event"])[ok])
    assert np.nanmean(true["response"][ok]) > 0.3  # expected reductions in points


def test_predict_ranks_by_expected_reduction_with_shap_in_points(nrs_run, small_splits, options):
    from dataclasses import replace

    from precision_pain.predict.recommend import recommend

    bundles, _ = nrs_run
    patients = small_splits["test"].drop(columns=["pain_followup", "response", "adverse_event"]
                                         ).head(60).reset_index(drop=True)
    for bundle in bundles.values():
        out = recommend(patients, bundle, replace(options, harm_weight=0.5))
        table = out.table
        assert table["p_response"].isna().all() and table["expected_nrs_change"].notna().all()
        net = -table["expected_nrs_change"] - 0.5 * 2.0 * table["p_adverse_event"]
        np.testing.assert_allclose(table["net_benefit"], net, atol=1e-5)
        first = table[table["rank"] == 1]
        assert first["explanation"].str.contains("NRS points").all()
        assert first["contrast"].str.contains("expected NRS reduction in points").all()
        shap = out.shap[(out.shap["outcome"] == "response") & (out.shap["rank"] == 1)]
        total = shap.drop(columns=["patient_id", "treatment", "outcome", "rank"]).sum(axis=1)
        np.testing.assert_allclose(total.to_numpy(), -first["expected_nrs_change"].to_numpy(),
                                   atol=1e-4)


def test_conformal_half_widths_are_the_finite_sample_order_statistics():
    from precision_pain.models.profile import conformal_table
    from precision_pain.predict.confidence import conformal_halfwidth

    observed = np.arange(1.0, 10.0)  # absolute residuals 1..9 (n = 9)
    table = conformal_table(np.zeros(9), -observed)
    assert table["n"] == 9 and len(table["levels"]) == len(table["halfwidth"]) == 50
    assert conformal_halfwidth(table, 0.9) == 9.0  # ceil(10 x 0.9) = 9th smallest
    assert conformal_halfwidth(table, 0.5) == 5.0  # ceil(10 x 0.5) = 5th
    assert conformal_halfwidth(table, 0.85) == 9.0  # ceil(8.5) = 9th
    assert conformal_halfwidth(table, 0.8) == 8.0
    assert conformal_halfwidth(table, 0.95) == float("inf")  # 10th of 9: unbounded
    assert conformal_halfwidth(table, 0.805) == 9.0  # rounds up to the tabulated 0.81
    assert np.isnan(conformal_halfwidth(None, 0.9))


def test_banded_half_widths_follow_each_baseline_severity_band():
    """One table per band of baseline pain (Mondrian): a patient gets their band's order
    statistic; a band too small for the level, or a bundle without bands, gets the table
    over every band."""
    from precision_pain.models.profile import conformal_table, severity_band
    from precision_pain.predict.confidence import conformal_halfwidth, conformal_halfwidths

    assert severity_band(np.array([0, 4.9, 5, 6.9, 7, 10])).tolist() == [0, 0, 1, 1, 2, 2]
    baseline = np.r_[np.full(19, 3.0), np.full(19, 6.0), np.full(4, 9.0)]
    residual = np.r_[np.arange(1, 20) / 10, np.arange(1, 20) / 2, [4.0, 5.0, 6.0, 7.0]]
    table = conformal_table(np.zeros(42), residual, baseline)
    patients = np.array([2.0, 5.5, 8.0, 4.99])
    got = conformal_halfwidths(table, 0.9, patients)
    pooled = conformal_halfwidth(table, 0.9)
    # n = 19 per band: the ceil(20 x 0.9) = 18th smallest; the severe band (n = 4) is too
    # small for 0.9, so it falls back to the table over all 42
    np.testing.assert_allclose(got, [1.8, 9.0, pooled, 1.8])
    assert pooled == np.sort(residual)[int(np.ceil(43 * 0.9)) - 1]
    assert conformal_halfwidths(table, 0.5, np.array([8.0]))[0] == 6.0  # ceil(5 x 0.5): 3rd of 4
    unbanded = {k: v for k, v in table.items() if k != "by_baseline"}
    np.testing.assert_allclose(conformal_halfwidths(unbanded, 0.9, patients), pooled)
    assert np.isnan(conformal_halfwidths(None, 0.9, patients)).all()


def test_predict_gives_a_prediction_interval_that_covers_new_patients(nrs_run, small_splits,
                                                                     options):
    """expected_nrs_change_low/high: the split-conformal interval of the patient's change in
    pain; on the test patients (never seen in training), the change they had under the
    treatment they received falls inside it about as often as the level says."""
    from dataclasses import replace

    from precision_pain.predict.recommend import recommend

    test = small_splits["test"]
    bundles, _ = nrs_run
    for name in ("pooled_xgboost", "xgboost"):
        bundle = bundles[name]
        patients = test[test["treatment"].isin(bundle.treatments)].reset_index(drop=True)
        level = 0.8 if name == "xgboost" else 0.9
        table = recommend(patients.drop(columns=["pain_followup", "response", "adverse_event"]),
                          bundle, replace(options, confidence=replace(
                              options.confidence, nrs_interval_level=level))).table
        low, high = table["expected_nrs_change_low"], table["expected_nrs_change_high"]
        baseline = table["patient_id"].map(patients.set_index("patient_id")["pain_baseline"])
        assert (low >= -baseline - 1e-9).all() and (high <= 10 - baseline + 1e-9).all()
        # around the prediction (a regressor's prediction may leave the NRS's range; the
        # interval, for a real patient's change, does not)
        point = table["expected_nrs_change"].clip(-baseline, 10 - baseline)
        assert low.notna().all() and (low <= point + 1e-9).all() and (high >= point - 1e-9).all()
        got = table.merge(patients[["patient_id", "treatment", "pain_baseline",
                                    "pain_followup"]], on=["patient_id", "treatment"])
        change = got["pain_followup"] - got["pain_baseline"]
        covered = ((got["expected_nrs_change_low"] <= change)
                   & (change <= got["expected_nrs_change_high"])).mean()
        assert len(got) == len(patients) > 200
        assert level - 0.06 <= covered <= level + 0.06, (name, covered)
        width = (high - low)[table["expected_nrs_change"].between(-6, -4)]
        assert width.gt(0.5).all()  # an interval, not a point


def test_a_heavier_harm_weight_costs_points(nrs_run, small_splits, options):
    """Net benefit falls by harm_weight * adverse_event_nrs_points * P(adverse event)."""
    from dataclasses import replace

    from precision_pain.predict.recommend import recommend

    bundle = nrs_run[0]["pooled_xgboost"]
    patients = small_splits["test"].drop(columns=["pain_followup"]).head(30)
    light = recommend(patients, bundle, replace(options, harm_weight=0.0)).table
    heavy = recommend(patients, bundle, replace(options, harm_weight=3.0)).table
    key = ["patient_id", "treatment"]
    both = light.merge(heavy, on=key, suffixes=("_0", "_3"))
    np.testing.assert_allclose(both["net_benefit_0"] - both["net_benefit_3"],
                               3.0 * 2.0 * both["p_adverse_event_0"], atol=1e-5)


def test_the_deployed_refit_refits_the_stacked_model(nrs_run, small_splits, params):
    """refit_on_all (the deployed bundle) refits every booster on every split, choices kept."""
    from precision_pain.data.features import build_features
    from precision_pain.models.train import refit_on_all

    bundle = nrs_run[0]["stacked"]
    hyper = {**params.model.hyperparameters["pooled_xgboost"], "nrs_change": STACKED}
    model = params.model.model_copy(update={"hyperparameters": {"pooled_xgboost": hyper}})
    deployed = refit_on_all(bundle, dict(small_splits), model)
    before = bundle.model("nsaid", "response").shared
    after = deployed.model("nsaid", "response").shared
    assert after.weights == before.weights and deployed.outcome.continuous
    assert deployed.metadata["fitted_on"]["splits"] == ["train", "valid", "test"]
    X = build_features(small_splits["test"].head(200))
    assert not np.allclose(after.predict_matrix(X), before.predict_matrix(X))


def test_the_notebooks_ranked_list_shows_the_expected_change(nrs_run, small_splits, options):
    from precision_pain.notebook_utils import ranked_list
    from precision_pain.predict.recommend import recommend

    bundle = nrs_run[0]["pooled_xgboost"]
    patient = small_splits["test"].drop(columns=["pain_followup"]).head(1)
    shown = ranked_list(recommend(patient, bundle, options))
    assert "expected_nrs_change" in shown.columns and "p_response" not in shown.columns
    assert shown["expected_nrs_change"].notna().all()


def test_every_kind_of_bundle_warms_up_before_serving(nrs_run, small_splits, options):
    """ModelBundle.warm_up (run when a served model loads) handles pooled, stacked and
    per-treatment regressors alike, and predictions follow."""
    from precision_pain.predict.recommend import recommend

    bundles, _ = nrs_run
    for name, bundle in bundles.items():
        bundle.warm_up()
        table = recommend(small_splits["test"].head(10), bundle, options).table
        assert table["expected_nrs_change"].notna().any(), name

