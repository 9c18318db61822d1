"""The pooled learner's refit on train + validation and its pain-reduction companion
(models/pooled.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from precision_pain.data.features import FEATURE_NAMES, build_features
from precision_pain.models.pooled import design
from precision_pain.models.pooled import Candidate, fit_candidates
from precision_pain.models.train import refit_on_all, train_bundle, training_summary
from precision_pain.registry import select_treatments

TREATMENTS = ["tramadol", "duloxetine", "physical_therapy"]


def _pooled(params, refit: bool):
    settings = {
        "response": {"max_depth": [2, 3], "n_estimators": [20, 40],
                     "default": {"max_depth": 3, "n_estimators": 40}, "learning_rate": 0.1,
                     "min_child_weight": 5},
        "adverse_event": {"n_estimators": [10, 30], "max_depth": 2, "learning_rate": 0.1},
        "replace_z": 2.0, "refit_on_validation": refit}
    return params.model.model_copy(update={"type": "pooled_xgboost", "seed": 3, "hyperparameters": {
        "pooled_xgboost": settings, "propensity": {"logistic": {"C": 1.0, "max_iter": 2000}}}})


def _with(model, **settings):
    """``model`` with these pooled_xgboost settings changed."""
    hyper = {**model.hyperparameters["pooled_xgboost"], **settings}
    return model.model_copy(update={"hyperparameters": {**model.hyperparameters,
                                                        "pooled_xgboost": hyper}})


def test_refit_on_all_keeps_every_choice_and_adds_the_test_split(bundles, small_splits, params):
    _, evaluated, _ = bundles
    model = _pooled(params, True)
    splits = {name: small_splits[name] for name in ("train", "valid", "test")}
    final = refit_on_all(evaluated, splits, model)
    modeled = [f[f["treatment"].isin(TREATMENTS)] for f in splits.values()]
    assert final.metadata["fitted_on"] == {"splits": ["train", "valid", "test"],
                                           "n_episodes": sum(map(len, modeled))}
    assert evaluated.metadata["fitted_on"] == {"splits": ["train", "valid"],
                                               "n_episodes": sum(map(len, modeled[:2]))}
    assert final.metadata["selection"] == {**evaluated.metadata["selection"], "refit_on_all": 1.0}
    assert final.propensity is evaluated.propensity
    # the deployed bundle's ranges cover every patient it saw; the calibration tables stay
    every = pd.concat(list(splits.values()))
    for t in TREATMENTS:
        age = build_features(every[every["treatment"] == t])["age"]
        assert final.metadata["feature_ranges"][t]["min"][list(FEATURE_NAMES).index("age")] == \
            float(age.min())
    assert final.metadata["feature_ranges"] != evaluated.metadata["feature_ranges"]
    assert final.metadata["response_calibration"] == evaluated.metadata["response_calibration"]
    X = build_features(small_splits["test"])
    for outcome, seed in (("response", 3), ("adverse_event", 4)):
        got = _matrix(final, X, outcome)
        assert not np.allclose(got, _matrix(evaluated, X, outcome)), outcome
        # exactly the evaluated model's settings, seed and trees, on the three splits' rows
        pooled = evaluated.model(TREATMENTS[0], outcome).pooled
        settings = model.hyperparameters["pooled_xgboost"][outcome]
        fixed = {k: v for k, v in settings.items() if k not in ("n_estimators", "default")}
        if outcome == "response":
            fixed["max_depth"] = int(evaluated.metadata["selection"][
                "valid_response_chosen_max_depth"])
        direct = fit_candidates([Candidate(outcome, pooled.n_trees, seed, fixed)],
                                pd.concat(modeled), TREATMENTS)[0]
        np.testing.assert_allclose(got, np.column_stack(
            [direct.predict_proba(X, t) for t in TREATMENTS]), rtol=1e-6)
    again = refit_on_all(evaluated, splits, model)
    np.testing.assert_array_equal(_matrix(again, X, "response"), _matrix(final, X, "response"))


def test_refit_on_all_needs_a_pooled_bundle(small_splits, params):
    per_treatment = params.model.model_copy(update={"type": "logistic", "hyperparameters": {
        "logistic": {"C": 1.0, "max_iter": 2000}}})
    bundle = train_bundle(small_splits["train"], small_splits["valid"],
                          select_treatments(TREATMENTS), per_treatment, response_threshold=0.3,
                          harm_weight=0.5, propensity_clip=0.01)
    assert bundle.metadata["fitted_on"]["splits"] == ["train"]
    with pytest.raises(ValueError, match="pooled model type"):
        refit_on_all(bundle, dict(small_splits), per_treatment)


@pytest.fixture(scope="module")
def bundles(small_splits, params):
    """The pooled learner trained on the small cohort without, and twice with, the refit."""
    def train(refit: bool):
        return train_bundle(small_splits["train"], small_splits["valid"],
                            select_treatments(TREATMENTS), _pooled(params, refit),
                            response_threshold=0.3, harm_weight=0.5, propensity_clip=0.01)
    return train(False), train(True), train(True)


def _matrix(bundle, X, outcome):
    return np.column_stack([bundle.model(t, outcome).predict_proba(X) for t in TREATMENTS])


def test_refit_keeps_every_choice_and_changes_only_the_data(bundles, small_splits):
    plain, refitted, again = bundles
    X = build_features(small_splits["test"])
    chosen = plain.metadata["selection"]
    assert refitted.metadata["selection"]["valid_dr_net_benefit"] == chosen["valid_dr_net_benefit"]
    assert refitted.metadata["selection"]["refit_on_validation"] == 1.0
    assert "refit_on_validation" not in chosen
    for outcome in ("response", "adverse_event"):
        a, b = _matrix(plain, X, outcome), _matrix(refitted, X, outcome)
        assert not np.allclose(a, b), outcome  # more data, other trees
        np.testing.assert_array_equal(b, _matrix(again, X, outcome))  # same params, same numbers
        trees = [plain.model(t, outcome).pooled.n_trees for t in TREATMENTS]
        assert trees == [refitted.model(t, outcome).pooled.n_trees for t in TREATMENTS]


def test_refit_reports_the_validation_figures_of_the_train_only_fit(bundles, small_splits):
    plain, refitted, _ = bundles
    valid = small_splits["valid"]
    before = training_summary(plain, valid, 0.5, 0.01, 1.0)
    after = training_summary(refitted, valid, 0.5, 0.01, 1.0)
    # never the refitted models' in-sample value on the validation split they were fitted on
    assert after["valid_dr_net_benefit"] == before["valid_dr_net_benefit"]
    assert after["valid_dr_standard_error"] == pytest.approx(before["valid_dr_standard_error"])
    assert "train-only" in after["valid_dr_of"] and "valid_dr_of" not in before
    # what was chosen is reported too (metrics/training.json, `dvc exp show`)
    assert after["valid_response_chosen_max_depth"] in (2.0, 3.0)
    assert after["valid_response_chosen_n_estimators"] in (20.0, 40.0)
    assert after["valid_adverse_event_chosen_n_estimators"] in (10.0, 30.0)


def test_refit_keeps_the_held_out_calibration_tables(bundles, small_splits):
    """The Venn-Abers tables need validation scores of models that never saw the validation
    split: the refitted bundle's are those of its train-only fit (the bundle without the
    refit, same choices, seeds and trees), not its in-sample scores."""
    from precision_pain.models.profile import venn_abers_table

    plain, refitted, _ = bundles
    assert refitted.metadata["response_calibration"] == plain.metadata["response_calibration"]
    # ... while the feature ranges are those of every patient the models were fitted on
    both = pd.concat([small_splits["train"], small_splits["valid"]])
    age = list(FEATURE_NAMES).index("age")
    for t, fitted_on, bundle in ((t, f, b) for t in TREATMENTS for f, b in (
            (small_splits["train"], plain), (both, refitted))):
        ages = build_features(fitted_on[fitted_on["treatment"] == t])["age"]
        ranges = bundle.metadata["feature_ranges"][t]
        assert (ranges["min"][age], ranges["max"][age]) == (float(ages.min()), float(ages.max()))
    assert refitted.metadata["feature_ranges"] != plain.metadata["feature_ranges"]
    valid = small_splits["valid"]
    for t in TREATMENTS:
        va = valid[valid["treatment"] == t]
        in_sample = venn_abers_table(refitted.model(t, "response").predict_proba(
            build_features(va)), va["response"].to_numpy())
        assert refitted.metadata["response_calibration"][t] != in_sample


def test_cross_fitted_stack_calibrates_the_refitted_models_on_out_of_fold_scores(
        small_splits, params, cross_fitted):
    """With the stack cross-fitted over train + validation, the refitted models' Venn-Abers
    tables come from the out-of-fold scores of every train and validation episode (each by
    models that did not see its fold): more calibration patients than the validation split
    holds, none scored by a model that saw it."""
    from precision_pain.models.profile import venn_abers_table

    model = _with(_pooled(params, True), pain_companion=True, pain_companion_alpha=0.5,
                  pain_companion_folds=3)
    bundle = train_bundle(small_splits["train"], small_splits["valid"],
                          select_treatments(TREATMENTS), model, response_threshold=0.3,
                          harm_weight=0.5, propensity_clip=0.01)
    assert bundle.metadata["response_calibration_source"] == "out_of_fold"
    both = pd.concat([small_splits["train"], small_splits["valid"]], ignore_index=True)
    for t in TREATMENTS:
        episodes = both[both["treatment"] == t]
        table = bundle.metadata["response_calibration"][t]
        assert table["n"] == len(episodes)
        in_sample = venn_abers_table(bundle.model(t, "response").predict_proba(
            build_features(episodes)), episodes["response"].to_numpy())
        assert table != in_sample
    # without the refit, the models never saw the validation split: its scores calibrate them
    plain, _ = cross_fitted
    assert plain.metadata["response_calibration_source"] == "validation"
    valid = small_splits["valid"]
    for t in TREATMENTS:
        assert plain.metadata["response_calibration"][t]["n"] == int((valid["treatment"] == t)
                                                                      .sum())


@pytest.fixture(scope="module")
def stacked(small_splits, params):
    """The pooled learner with its pain-reduction companion, refitted. The gate is opened
    wide (alpha 0.5): these tests are about the stack itself; the gate has its own."""
    model = _pooled(params, True)
    settings = {**model.hyperparameters["pooled_xgboost"], "pain_companion": True,
                "pain_companion_alpha": 0.5}
    model = model.model_copy(update={"hyperparameters": {**model.hyperparameters,
                                                         "pooled_xgboost": settings}})
    return train_bundle(small_splits["train"], small_splits["valid"],
                        select_treatments(TREATMENTS), model, response_threshold=0.3,
                        harm_weight=0.5, propensity_clip=0.01)


def test_companion_is_stacked_with_weights_fitted_on_validation(stacked, bundles, small_splits):
    from scipy.special import expit

    selection = stacked.metadata["selection"]
    a, b, c = (selection[k] for k in ("valid_stack_intercept", "valid_stack_classifier_weight",
                                      "valid_stack_pain_reduction_weight"))
    model = stacked.model("tramadol", "response").pooled
    assert model.stack_ == pytest.approx((a, b, c))
    # the follow-up score carries the simulator's signal beyond the flag: a positive weight
    assert c > 0
    X = build_features(small_splits["test"])
    by_hand = expit(a + b * model.raw(X, "tramadol")
                    + c * model.companion_.inplace_predict(design(X, "tramadol", model.treatments),
                                                           validate_features=False))
    np.testing.assert_allclose(model.predict_proba(X, "tramadol"), by_hand, rtol=1e-5)
    # the adverse-event model has no companion
    assert stacked.model("tramadol", "adverse_event").pooled.stack_ is None
    # and without the companion the classifier is what the plain learner ships
    plain = bundles[1].model("tramadol", "response").pooled
    assert plain.stack_ is None and plain.companion_ is None


def test_stacked_shap_is_exact_and_survives_save_and_load(stacked, small_splits, tmp_path):
    from precision_pain.models.bundle import load_bundle, save_bundle

    X = build_features(small_splits["test"].head(200))
    view = stacked.model("duloxetine", "response")
    phi = view.contributions(X)
    logit = np.log(view.predict_proba(X)) - np.log1p(-view.predict_proba(X))
    np.testing.assert_allclose(phi.sum(axis=1), logit, atol=2e-4)
    loaded = load_bundle(save_bundle(stacked, tmp_path / "bundle"))
    again = loaded.model("duloxetine", "response")
    np.testing.assert_array_equal(again.predict_proba(X), view.predict_proba(X))
    np.testing.assert_array_equal(again.contributions(X), phi)


def test_a_tampered_companion_is_refused(stacked, tmp_path):
    import xgboost as xgb

    from precision_pain.models.pooled import PooledModel

    path = stacked.model("duloxetine", "response").pooled.save(tmp_path / "response")
    booster = xgb.Booster(model_file=str(path))
    booster.set_attr(pooled_stack="[1.0, 2.0]")
    booster.save_model(str(path))
    with pytest.raises(ValueError, match="companion model does not fit"):
        PooledModel.load(path)
    booster.set_attr(pooled_stack="[1.0, 2.0, 3.0]", pooled_pain_companion_ubj="not base64!")
    booster.save_model(str(path))
    with pytest.raises(ValueError, match="companion model cannot be read"):
        PooledModel.load(path)


@pytest.mark.parametrize("folds", [0, 3])
def test_companion_is_left_out_where_the_follow_up_score_says_nothing_beyond_the_flag(
        small_splits, params, folds):
    """Follow-up scores redrawn from the flag alone (uniform within the responder or the
    non-responder range, as benchmarks/alt_cohort.py does): the regressor can only add noise,
    and the within-flag gate keeps the classifier alone, on the validation split (0 folds)
    or on the out-of-fold predictions over train + validation."""
    rng = np.random.default_rng(0)

    def flag_only(frame):
        relief = np.where(frame["response"], rng.uniform(0.32, 0.9, len(frame)),
                          rng.uniform(-0.2, 0.27, len(frame)))
        return frame.assign(pain_followup=frame["pain_baseline"] * (1 - relief))

    model = _pooled(params, False)
    settings = {**model.hyperparameters["pooled_xgboost"], "pain_companion": True,
                "pain_companion_folds": folds}
    model = model.model_copy(update={"hyperparameters": {**model.hyperparameters,
                                                         "pooled_xgboost": settings}})
    bundle = train_bundle(flag_only(small_splits["train"]), flag_only(small_splits["valid"]),
                          select_treatments(TREATMENTS), model, response_threshold=0.3,
                          harm_weight=0.5, propensity_clip=0.01)
    assert bundle.model("tramadol", "response").pooled.stack_ is None
    assert "valid_stack_pain_reduction_weight" not in bundle.metadata["selection"]


def test_within_flag_p_value_sees_relief_beyond_the_flag_and_nothing_else():
    from precision_pain.models.pooled import within_flag_p_value

    rng = np.random.default_rng(1)
    mean = rng.normal(0.2, 0.15, 3000)  # the patients' expected relief
    relief = mean + rng.normal(0, 0.3, 3000)
    flag = relief >= 0.3
    assert within_flag_p_value(relief, mean, flag) < 1e-6  # a continuous outcome
    p_values = [within_flag_p_value(
        np.where(flag, rng.uniform(0.32, 0.9, 3000), rng.uniform(-0.2, 0.27, 3000)), mean, flag)
        for _ in range(50)]
    # drawn from the flag alone: p-values uniform, about 5 % below 0.05
    assert np.mean(np.array(p_values) < 0.05) <= 0.16 and 0.25 < np.median(p_values) < 0.75
    assert within_flag_p_value(relief, -mean, flag) > 0.99  # one-sided
    assert np.isnan(within_flag_p_value(relief[:2], mean[:2], flag[:2]))


def test_folds_hold_whole_patients_evenly_and_follow_the_seed():
    from precision_pain.models.pooled import fold_of_patients

    ids = pd.Series([f"P{i // 3:04d}" for i in range(3000)])  # 1,000 patients, 3 episodes each
    fold = fold_of_patients(ids, 5, seed=7)
    assert (pd.Series(fold).groupby(ids).nunique() == 1).all()  # a patient in one fold
    assert np.bincount(fold).tolist() == [600] * 5
    np.testing.assert_array_equal(fold, fold_of_patients(ids, 5, seed=7))
    assert (fold != fold_of_patients(ids, 5, seed=8)).any()


@pytest.fixture(scope="module")
def cross_fitted(small_splits, params):
    """The pooled learner with its companion stacked on predictions cross-fitted over
    train + validation (``pain_companion_folds``); the gate opened wide, as above."""
    model = _with(_pooled(params, False), pain_companion=True, pain_companion_alpha=0.5,
                  pain_companion_folds=3)
    bundle = train_bundle(small_splits["train"], small_splits["valid"],
                          select_treatments(TREATMENTS), model, response_threshold=0.3,
                          harm_weight=0.5, propensity_clip=0.01)
    return bundle, model.hyperparameters["pooled_xgboost"]


def test_cross_fitted_stack_uses_only_predictions_of_models_that_did_not_see_the_patient(
        cross_fitted, small_splits):
    from precision_pain.evaluate.metrics import logistic_coefficients
    from precision_pain.models.pooled import (chosen_candidate, companion_candidate,
                                              cross_fit, fold_of_patients,
                                              observed_episodes)

    bundle, settings = cross_fitted
    selection = bundle.metadata["selection"]
    model = bundle.model("tramadol", "response").pooled
    episodes = pd.concat([small_splits["train"], small_splits["valid"]], ignore_index=True)
    candidates = [chosen_candidate(selection, settings["response"], 3),
                  companion_candidate(settings["response"], 3 + 2)]
    got = cross_fit(episodes, candidates, TREATMENTS, 3, seed=3 + 3)
    # every validation and training episode of the modeled treatments has a prediction
    kept = observed_episodes(episodes, TREATMENTS).reset_index(drop=True)
    assert len(got.y) == len(kept) and np.isfinite(got.margin).all()
    # the stack is the logistic fit on them ...
    weights = logistic_coefficients(
        np.column_stack([np.ones(len(got.y)), got.margin, got.reduction]), got.y)
    assert model.stack_ == pytest.approx(weights)
    assert weights[2] > 0
    # ... and fold 0's predictions are those of boosters fitted on the other two folds
    out = fold_of_patients(kept["patient_id"], 3, seed=3 + 3) == 0
    classifier, companion = fit_candidates(candidates, kept[~out], TREATMENTS)
    X, received = build_features(kept[out]), kept.loc[out, "treatment"].astype(str).to_numpy()
    np.testing.assert_allclose(got.margin[out], classifier.raw(X, received), rtol=1e-6)
    np.testing.assert_allclose(got.reduction[out], companion.raw(X, received), rtol=1e-6)
    # not the validation-only weights
    assert selection["valid_stack_pain_reduction_weight"] == pytest.approx(weights[2])


@pytest.mark.parametrize("which", ["plain", "stacked"])
def test_ranked_contributions_are_each_treatments_view_in_one_grouped_pass(
        which, bundles, stacked, small_splits):
    """ModelBundle.contributions (what predict explains the ranked treatments with): a pooled
    model explains a patient's ranked treatments in one grouped pass, with the values each
    treatment's view gives, the stacked companion included."""
    bundle = stacked if which == "stacked" else bundles[0]
    X = build_features(small_splits["test"].head(300))
    X.iloc[::9, X.columns.get_loc("pcs")] = np.nan  # never missing in training: filled
    X.iloc[::7, X.columns.get_loc("cyp2c9_activity_score")] = np.nan  # missing there too
    model_X = bundle.model_input(X)
    assert model_X["pcs"].notna().all() and model_X["cyp2c9_activity_score"].isna().sum() > 0
    rng = np.random.default_rng(5)
    names = np.array([rng.permutation(TREATMENTS)[:2] for _ in range(len(X))], dtype=object)
    for outcome in ("response", "adverse_event"):
        got = bundle.contributions(X, outcome, names)
        assert got.shape == (len(X), 2, X.shape[1] + 1) and got.dtype == np.float32
        for k in range(2):
            for t in TREATMENTS:
                rows = np.flatnonzero(names[:, k] == t)
                np.testing.assert_allclose(
                    got[rows, k], bundle.model(t, outcome).contributions(model_X.iloc[rows]),
                    rtol=1e-6, atol=1e-6)


def test_ranked_contributions_of_per_treatment_models_go_one_treatment_at_a_time(
        small_bundle, small_splits):
    X = build_features(small_splits["test"].head(120))
    treatments = list(small_bundle.treatments)
    names = np.array([[treatments[i % 3], treatments[(i + 1) % 3]] for i in range(len(X))],
                     dtype=object)
    got = small_bundle.contributions(X, "response", names)
    for k in range(2):
        for t in treatments:
            rows = np.flatnonzero(names[:, k] == t)
            np.testing.assert_array_equal(
                got[rows, k], small_bundle.model(t, "response").contributions(X.iloc[rows]))


def test_the_interval_benchmark_measures_a_bundle_and_restores_the_learner(small_bundle,
                                                                           small_splits,
                                                                           small_synthetic,
                                                                           params):
    """benchmarks/response_interval.py: its figures for one bundle, and its switch to the
    validation split's tables undone on exit."""
    from benchmark_modules import load_benchmark

    from precision_pain.models.pooled import PooledFit

    bench = load_benchmark("response_interval")
    figures = bench.interval_figures(small_bundle, small_splits["test"], small_synthetic.truth,
                                     params)
    tables = small_bundle.metadata["response_calibration"]
    assert figures["calibration patients"] == sum(t["n"] for t in tables.values())
    for key in ("% outside by > tolerance", "% wider than max"):
        assert 0.0 <= figures[key] <= 100.0
    for key in ("median width", "decile gap, merged", "decile gap, model",
                "MAE vs truth, merged", "MAE vs truth, model"):
        assert 0.0 < figures[key] < 0.5, key
    original = PooledFit.calibration_set
    with bench.validation_tables():
        assert PooledFit.calibration_set is not original
    assert PooledFit.calibration_set is original
